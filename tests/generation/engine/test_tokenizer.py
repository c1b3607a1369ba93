"""The CLIP tokenizer reproduces the reference VAR-CLIP tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from generation.engine.errors import EngineInputError
from generation.engine.tokenizer import ClipTokenizer, default_tokenizer

from .conftest import PARITY_DIR

CAPTIONS = json.loads((PARITY_DIR / "tokenizer.json").read_text())["captions"]


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return default_tokenizer()


def test_tokenizer_reproduces_reference_ids_for_all_fixture_captions(tok: ClipTokenizer) -> None:
    enc = tok.encode([c["caption"] for c in CAPTIONS])
    assert enc.ids.dtype == torch.long and enc.ids.shape == (len(CAPTIONS), 77)
    for row, c in zip(enc.ids.tolist(), CAPTIONS, strict=True):
        assert row == c["ref_ids"], c["note"]
    assert enc.truncated == [c["ref_truncated"] for c in CAPTIONS]
    assert enc.token_counts == [c["ref_n_tokens_untruncated"] for c in CAPTIONS]


def test_long_caption_is_truncated_to_76_tokens_and_eot(tok: ClipTokenizer) -> None:
    caption = " ".join(["dog"] * 100)
    enc = tok.encode([caption])
    assert enc.truncated == [True] and enc.token_counts == [102]
    assert enc.ids[0, -1].item() == tok.eot_id and enc.ids[0, 0].item() == tok.sot_id
    assert tok.count(caption) == 102


def test_words_report_where_each_first_token_lands(tok: ClipTokenizer) -> None:
    words = tok.words("A goldfish swims")
    assert [w.text for w in words] == ["a", "goldfish", "swims"]
    assert words[0].first_position == 1
    assert words[1].first_position == 2
    assert words[2].first_position == 2 + words[1].num_tokens
    assert len(tok.tokens("A goldfish swims")) == sum(w.num_tokens for w in words)
    assert tok.token_ids("a dog") == tok.encode(["a dog"]).ids[0, 1:3].tolist()


def test_tokenizer_decodes_what_it_encodes(tok: ClipTokenizer) -> None:
    assert (
        tok.decode(tok.encode(["A Café on the corner!"]).ids[0].tolist())
        == "a café on the corner !"
    )


def test_non_string_caption_is_a_type_error(tok: ClipTokenizer) -> None:
    with pytest.raises(TypeError) as info:
        tok.encode([3])  # type: ignore[list-item]
    assert isinstance(info.value, EngineInputError)
    with pytest.raises(TypeError):
        tok.encode("a bare string")
