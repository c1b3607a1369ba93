"""Caption lint with the engine's own CLIP tokenizer: what the model will actually read.

VAR-CLIP (Zhang et al., 2024) encodes captions with CLIP's 77-token context: everything past it is
cut, the first ~20 tokens dominate the embedding, and its checkpoint saw short captions.

Positions: the tokenizer's id sequence starts with the start-of-text token at position 0, so
position 1 is the caption's first token. A caption of N BPE tokens takes N + 2 positions (start
and end tokens); more than 77 and the tail is cut. A key variable whose first token sits at a
position above 20 gets a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import regex

if TYPE_CHECKING:
    from generation.engine.tokenizer import ClipTokenizer

CONTEXT_LENGTH = 77
KEY_POSITION_LIMIT = 20
# A caption more than this many times the model's typical training caption gets a warning.
LONG_CAPTION_FACTOR = 2.0
# Share of non-ASCII letters among Latin letters above which a caption reads as non-English.
NON_ASCII_SHARE = 0.2

Severity = Literal["error", "warning", "info"]


@dataclasses.dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    variable: str | None = None
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class LintPolicy:
    """What a caption is checked against besides the tokenizer."""

    banned_terms: tuple[str, ...] = ()
    required_terms: tuple[str, ...] = ()
    typical_caption_tokens: int | None = None
    model_version: str | None = None  # whose model card gave typical_caption_tokens


@dataclasses.dataclass(frozen=True)
class CaptionLint:
    """The findings for one caption, with its token count and where each variable starts."""

    caption: str
    token_count: int  # including the start and end tokens
    positions: Mapping[str, int]  # variable -> position of its first token
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "token_count": self.token_count,
            "positions": dict(self.positions),
            "findings": [f.to_dict() for f in self.findings],
        }


@functools.lru_cache(maxsize=1)
def tokenizer() -> ClipTokenizer:
    """The engine's shared CLIP tokenizer (imported here so the web process loads it lazily)."""
    from generation.engine.tokenizer import default_tokenizer

    return default_tokenizer()


def token_count(caption: str) -> int:
    """Untruncated token count of a caption including the start and end tokens."""
    return tokenizer().count(caption)


# --- normalisation for term matching ------------------------------------------------------

_WHITESPACE = regex.compile(r"\s+")
# Single letters or digits separated by one or two non-alphanumerics: "b a n n e d", "b-a-n".
_SPACED_RUN = regex.compile(
    r"(?<![\p{L}\p{N}])[\p{L}\p{N}](?:[^\p{L}\p{N}]{1,2}[\p{L}\p{N}])+(?![\p{L}\p{N}])"
)
_NOT_ALNUM = regex.compile(r"[^\p{L}\p{N}]+")


def normalise(text: str) -> str:
    """The form terms are matched in: HTML entities resolved as the tokenizer does, NFKC,
    format characters (zero-width and the like) and combining marks removed, case folded,
    whitespace collapsed."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WHITESPACE.sub(" ", text).strip()


def spaced_runs(normalised: str) -> list[tuple[str, str]]:
    """Each run of spaced-out single characters as (as written, joined): ("b a n", "ban")."""
    return [
        (match.group(0), _NOT_ALNUM.sub("", match.group(0)))
        for match in _SPACED_RUN.finditer(normalised)
    ]


@functools.lru_cache(maxsize=4096)
def _term_pattern(term: str) -> regex.Pattern[str]:
    words = [regex.escape(word) for word in normalise(term).split(" ") if word]
    return regex.compile(r"(?<![\p{L}\p{N}])" + r"\s+".join(words) + r"(?![\p{L}\p{N}])")


def find_term(term: str, normalised: str, runs: Sequence[tuple[str, str]]) -> str | None:
    """Return how the term appears in the caption (whole words, or spelled out), else None."""
    match = _term_pattern(term).search(normalised)
    if match:
        return match.group(0)
    compact = _NOT_ALNUM.sub("", normalise(term))
    # Inside a spaced-out run there are no word boundaries to respect: "a b a n n e d" hides it.
    for written, joined in runs:
        if len(compact) >= 2 and compact in joined:
            return written
    return None


# --- locating variables in the token sequence ---------------------------------------------


def token_positions(caption: str, spans: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Position of each variable's first token (1 = first after the start token).

    Maps the variable's character span through the tokenizer's own cleaning onto the words it
    pre-tokenises; a variable that produces no token is left out.
    """
    from generation.engine.tokenizer import clean_caption

    words = tokenizer().words(caption)
    cleaned = clean_caption(caption)
    starts: list[tuple[int, int, int]] = []  # (start, end, first_position) in cleaned text
    cursor = 0
    for word in words:
        at = cleaned.find(word.text, cursor)
        if at < 0:  # cannot happen for text the tokenizer produced; stay safe, never guess
            break
        starts.append((at, at + len(word.text), word.first_position))
        cursor = at + len(word.text)
    positions: dict[str, int] = {}
    for name, (start, end) in spans.items():
        if not clean_caption(caption[start:end]):
            continue
        prefix = clean_caption(caption[:start])
        offset = len(prefix) if cleaned.startswith(prefix) else min(len(prefix), len(cleaned))
        while offset < len(cleaned) and cleaned[offset] == " ":
            offset += 1
        # Between words there is only whitespace, so the first word ending past the offset holds
        # the variable's first character (possibly merged with literal text before it).
        for _, word_end, first_position in starts:
            if word_end > offset:
                positions[name] = first_position
                break
    return positions


# --- the rules ----------------------------------------------------------------------------


def lint_caption(
    caption: str,
    policy: LintPolicy,
    *,
    spans: Mapping[str, tuple[int, int]] | None = None,
    key_variables: Iterable[str] = (),
) -> CaptionLint:
    """Check one caption against the tokenizer and the policy; never raises on odd text."""
    spans = spans or {}
    tok = tokenizer()
    count = tok.count(caption)
    positions = token_positions(caption, spans)
    findings: list[Finding] = []
    if count > CONTEXT_LENGTH:
        findings.append(_truncation(caption, count, positions))
    for name in key_variables:
        position = positions.get(name)
        if position is not None and position > KEY_POSITION_LIMIT:
            findings.append(
                Finding(
                    rule="key_position",
                    severity="warning",
                    variable=name,
                    position=position,
                    message=(
                        f"key variable {name!r} starts at token {position}, after the first "
                        f"{KEY_POSITION_LIMIT} that dominate CLIP's embedding; move it earlier"
                    ),
                )
            )
    findings.extend(_length(count, policy))
    normalised = normalise(caption)
    runs = spaced_runs(normalised)
    for term in policy.banned_terms:
        found = find_term(term, normalised, runs)
        if found is not None:
            shown = "" if found == normalise(term) else f" (written {found!r})"
            findings.append(
                Finding(
                    rule="banned_term",
                    severity="error",
                    message=f"banned term {term!r} is in the caption{shown}",
                )
            )
    for term in policy.required_terms:
        if not _term_pattern(term).search(normalised):
            findings.append(
                Finding(
                    rule="required_term",
                    severity="error",
                    message=f"required term {term!r} is missing",
                )
            )
    findings.extend(_language(unicodedata.normalize("NFKC", caption)))
    return CaptionLint(
        caption=caption, token_count=count, positions=positions, findings=tuple(findings)
    )


def _truncation(caption: str, count: int, positions: Mapping[str, int]) -> Finding:
    # Positions 1..75 survive; position 76 becomes the end token.
    last_kept = CONTEXT_LENGTH - 2
    cut_word = next(
        (w for w in tokenizer().words(caption) if w.first_position + w.num_tokens - 1 > last_kept),
        None,
    )
    where = f"; everything from {cut_word.text!r} on is lost" if cut_word else ""
    cut_variables = sorted(name for name, pos in positions.items() if pos > last_kept)
    lost = f" (variables cut: {', '.join(cut_variables)})" if cut_variables else ""
    return Finding(
        rule="token_limit",
        severity="error",
        position=cut_word.first_position if cut_word else None,
        message=(
            f"caption is {count} tokens including start and end; CLIP reads "
            f"{CONTEXT_LENGTH}{where}{lost}"
        ),
    )


def _length(count: int, policy: LintPolicy) -> list[Finding]:
    # Without a stated typical length there is nothing to compare against; the version report
    # says so once instead of on every caption.
    typical = policy.typical_caption_tokens
    tokens = count - 2
    if typical is None or tokens <= LONG_CAPTION_FACTOR * typical:
        return []
    source = f"model card of {policy.model_version}" if policy.model_version else "model card"
    return [
        Finding(
            rule="caption_length",
            severity="warning",
            message=(
                f"caption is {tokens} tokens, over {LONG_CAPTION_FACTOR:g}x the "
                f"{typical}-token captions the model was trained on ({source})"
            ),
        )
    ]


_LETTER = regex.compile(r"\p{L}")
_LATIN = regex.compile(r"\p{Script=Latin}")
_SCRIPT_SAMPLE = regex.compile(r"[^\P{L}\p{Script=Latin}]+")


def _language(text: str) -> list[Finding]:
    letters = _LETTER.findall(text)
    if not letters:
        return []
    foreign = _SCRIPT_SAMPLE.search(text)
    latin = [ch for ch in letters if _LATIN.match(ch)]
    accented = [ch for ch in latin if not ch.isascii()]
    if foreign is None and len(accented) <= NON_ASCII_SHARE * len(letters):
        return []
    sample = foreign.group(0) if foreign else "".join(accented[:8])
    return [
        Finding(
            rule="non_english",
            severity="warning",
            message=(
                f"caption has non-English text ({sample!r}); CLIP's BPE splits it into many "
                "byte tokens and the model was trained on English captions: offer it as a "
                "choice with an English value and a translated label instead"
            ),
        )
    ]
