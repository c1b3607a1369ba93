"""Byte-level BPE tokenizer of CLIP (Radford et al., 2021) as VAR-CLIP (Zhang et al., 2024) ran it:
HTML-unescape twice, collapse whitespace, lower-case, no ftfy; 77 ids with SOT/EOT and zero padding.

Letters: N captions, T context length (77).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import html
import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import regex

from generation.engine.errors import EngineTypeError

if TYPE_CHECKING:  # the web process lints captions without loading torch
    import torch

CONTEXT_LENGTH = 77
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
# The merges file lists 262,144 merges; CLIP uses the first 48,894 of them
# (vocabulary 49,408 = 256 bytes + 256 word-final bytes + 48,894 merges + SOT + EOT).
NUM_MERGES = 49408 - 2 * 256 - 2


def bpe_vocab_path() -> Path:
    """The BPE merges file shipped inside the open_clip package (nothing is downloaded)."""
    # find_spec locates the package without importing it (importing open_clip imports torch).
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("open_clip_torch is not installed; it ships the CLIP BPE file")
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


@functools.lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """Map every byte to a printable character; printable Latin-1 bytes map to themselves."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    spare = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(spare)
            spare += 1
    return table


def clean_caption(text: str) -> str:
    """The reference cleaning: unescape HTML twice, collapse whitespace, lower-case (no ftfy)."""
    text = html.unescape(html.unescape(text)).strip()
    collapsed: str = regex.sub(r"\s+", " ", text)
    return collapsed.strip().lower()


@dataclasses.dataclass(frozen=True)
class Word:
    """One pre-tokenised word and where its BPE tokens sit in the 77-id sequence (SOT is 0)."""

    text: str
    first_position: int
    num_tokens: int


@dataclasses.dataclass(frozen=True)
class Encoding:
    """Token ids (N, 77) plus, per caption, whether it was cut and its untruncated length."""

    ids: torch.Tensor
    truncated: list[bool]
    token_counts: list[int]


class ClipTokenizer:
    """Reference-compatible CLIP BPE tokenizer."""

    def __init__(self, merges_path: Path | None = None, context_length: int = CONTEXT_LENGTH):
        path = merges_path or bpe_vocab_path()
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        alphabet = list(_byte_alphabet().values())
        vocab = alphabet + [ch + "</w>" for ch in alphabet] + ["".join(m) for m in merges]
        vocab += [SOT_TOKEN, EOT_TOKEN]
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.merge_rank: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self.context_length = context_length
        self.sot_id = self.encoder[SOT_TOKEN]
        self.eot_id = self.encoder[EOT_TOKEN]
        self.vocab_size = len(vocab)
        # The reference pattern also matches the special-token strings, so a caption that spells
        # out "<end_of_text>" gets the EOT id there; kept for compatibility with its training.
        self._pattern = regex.compile(
            rf"{SOT_TOKEN}|{EOT_TOKEN}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self._bpe = functools.lru_cache(maxsize=65536)(self._bpe_uncached)

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        if word in (SOT_TOKEN, EOT_TOKEN):
            return (word,)
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            # Merge the adjacent pair that was learned earliest, everywhere it occurs.
            pairs = set(itertools.pairwise(parts))
            best = min(pairs, key=lambda pair: self.merge_rank.get(pair, NUM_MERGES))
            if best not in self.merge_rank:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def _words(self, caption: str) -> list[tuple[str, tuple[str, ...]]]:
        _check_caption_type(caption)
        alphabet = _byte_alphabet()
        out = []
        for word in self._pattern.findall(clean_caption(caption)):
            mapped = "".join(alphabet[b] for b in word.encode("utf-8"))
            out.append((word, self._bpe(mapped)))
        return out

    def tokens(self, caption: str) -> list[str]:
        """BPE token strings of one caption, without SOT/EOT ('</w>' marks a word end)."""
        return [tok for _, toks in self._words(caption) for tok in toks]

    def token_ids(self, caption: str) -> list[int]:
        """BPE token ids of one caption, without SOT/EOT and without truncation."""
        return [self.encoder[tok] for tok in self.tokens(caption)]

    def words(self, caption: str) -> list[Word]:
        """Each word with the position of its first token in the id sequence (SOT sits at 0)."""
        out, position = [], 1
        for text, toks in self._words(caption):
            out.append(Word(text=text, first_position=position, num_tokens=len(toks)))
            position += len(toks)
        return out

    def count(self, caption: str) -> int:
        """Untruncated number of tokens including SOT and EOT."""
        return len(self.tokens(caption)) + 2

    def encode(self, captions: Sequence[str]) -> Encoding:
        """Ids (N, 77) int64: SOT, tokens, EOT, zeros; long captions keep 76 tokens + EOT."""
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise EngineTypeError("captions must be a sequence of str")
        T = self.context_length
        import torch

        ids_NT = torch.zeros(len(captions), T, dtype=torch.long)
        truncated, counts = [], []
        for n, caption in enumerate(captions):
            seq = [self.sot_id, *self.token_ids(caption), self.eot_id]
            counts.append(len(seq))
            truncated.append(len(seq) > T)
            if len(seq) > T:
                seq = [*seq[: T - 1], self.eot_id]
            ids_NT[n, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return Encoding(ids=ids_NT, truncated=truncated, token_counts=counts)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a list of ids (special tokens and padding dropped)."""
        inverse = {ch: b for b, ch in _byte_alphabet().items()}
        skip = {0, self.sot_id, self.eot_id}
        raw = bytearray()
        for i in ids:
            if i in skip:
                continue
            token = self.decoder[i]
            raw += bytes(inverse[ch] for ch in token.removesuffix("</w>"))
            if token.endswith("</w>"):
                raw += b" "
        return raw.decode("utf-8", errors="replace").strip()


def _check_caption_type(caption: object) -> None:
    if not isinstance(caption, str):
        raise EngineTypeError(f"caption must be a str, got {type(caption).__name__}")


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """One shared tokenizer instance (building the merge table takes ~0.3 s)."""
    return ClipTokenizer()
