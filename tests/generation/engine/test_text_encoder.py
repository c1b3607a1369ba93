"""The CLIP text tower equals open_clip's text transformer and skips padding exactly."""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip.transformer import TextTransformer
from torch.testing import assert_close

from generation.engine.checkpoint import load_module, save_module
from generation.engine.config import TextEncoderConfig
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.tokenizer import default_tokenizer

CFG = TextEncoderConfig(width=64, heads=2, layers=2, embed_dim=32)
CAPTIONS = ["a dog", "a red sports car parked on the street at night, rain", "x"]


def _open_clip_tower() -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(
        context_length=77, vocab_size=49408, width=64, heads=2, layers=2, output_dim=32
    ).eval()


def test_text_encoder_matches_open_clip_text_transformer_run_on_all_77_tokens() -> None:
    reference = _open_clip_tower()
    ours = ClipTextEncoder(CFG).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # same key names: a plain copy
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        expected = reference(ids)
        expected = expected / expected.norm(dim=-1, keepdim=True)
        got = ours.encode(ids)
    assert got.shape == (3, 32) and got.dtype == torch.float32
    assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert_close(got.norm(dim=-1), torch.ones(3))


def test_text_encoder_result_does_not_depend_on_the_rest_of_the_batch() -> None:
    ours = ClipTextEncoder(CFG).eval()
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        batch = ours.encode(ids)
        alone = ours.encode(ids[:1])
    assert_close(batch[:1], alone, rtol=1e-5, atol=1e-6)


def test_text_encoder_uses_exact_gelu_unless_quick_gelu_is_asked_for() -> None:
    assert isinstance(ClipTextEncoder(CFG).transformer.resblocks[0].mlp.gelu, torch.nn.GELU)
    quick = ClipTextEncoder(TextEncoderConfig(width=64, heads=2, layers=1, quick_gelu=True))
    assert type(quick.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_text_encoder_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    ours = ClipTextEncoder(CFG).eval()
    save_module(ours, tmp_path / "text.safetensors")
    with torch.device("meta"):
        loaded = ClipTextEncoder(CFG)
    load_module(
        loaded, tmp_path / "text.safetensors", device=torch.device("cpu"), dtype=torch.float32
    )
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        assert torch.equal(loaded.encode(ids), ours.encode(ids))
