"""Caption template schemas: the pattern, its typed variables, and strict rendering.

Plain Python (no database, no tokenizer): the services validate with it, the lint renders with it.

A pattern is text with ``{name}`` placeholders (``{{`` and ``}}`` for literal braces). Each
placeholder is a declared variable and each declared variable appears in the pattern. Variables
are ``text`` (max length, allowed characters), ``choice`` (English values the model reads, display
labels per language) or ``number`` (range, decimal places). A required variable must be given;
an optional one falls back to its default, which it must declare. Anything missing, unknown or
ill-typed is an error naming the variable: nothing renders silently empty.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

VariableType = Literal["text", "choice", "number"]
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
MAX_PATTERN_LENGTH = 1000
MAX_TEXT_LENGTH = 300
MAX_CHOICES = 200

# Characters a text variable may hold. "unicode" allows everything but control characters and
# unassigned code points; the lint's normalisation is what stands between it and banned terms.
CHARSETS: dict[str, str] = {
    "words": "ASCII letters, spaces, hyphens and apostrophes",
    "text": "printable ASCII (letters, digits, spaces, punctuation)",
    "unicode": "any character except control characters",
}
_WORDS = frozenset(string.ascii_letters + " -'")
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))

COMMON_KEYS = {"name", "type", "required", "default", "key", "description", "label"}
TYPE_KEYS: dict[str, set[str]] = {
    "text": {"max_length", "charset"},
    "choice": {"choices"},
    "number": {"minimum", "maximum", "decimals"},
}


class TemplateSchemaError(ValueError):
    """A pattern or variable declaration is malformed; ``errors`` maps each field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


class CaptionRenderError(ValueError):
    """Values do not fit the template; ``errors`` maps each offending variable to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Choice:
    value: str  # what the caption receives (English, what the model was trained on)
    labels: Mapping[str, str]  # what staff see, per language code

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get("en") or self.value


@dataclasses.dataclass(frozen=True)
class Variable:
    name: str
    type: VariableType
    required: bool = True
    default: Any = None
    key: bool = False  # a key term: its first token should sit within CLIP's first ~20
    description: str = ""
    label: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_length: int = 0
    charset: str = "words"
    choices: tuple[Choice, ...] = ()
    minimum: Decimal = Decimal(0)
    maximum: Decimal = Decimal(0)
    decimals: int = 0

    def parse(self, raw: Any, language: str = "en") -> str:
        """Return the text this value puts into the caption, or raise ValueError saying why."""
        if self.type == "text":
            return self._parse_text(raw)
        if self.type == "choice":
            return self._parse_choice(raw, language)
        return self._parse_number(raw)

    def _parse_text(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"must be text, got {_type_name(raw)}")
        value = " ".join(raw.split())
        if self.required and not value:
            raise ValueError("must not be empty")
        if len(value) > self.max_length:
            raise ValueError(f"is {len(value)} characters; at most {self.max_length} allowed")
        bad = sorted({ch for ch in value if not charset_allows(self.charset, ch)})
        if bad:
            shown = ", ".join(repr(ch) for ch in bad[:5])
            raise ValueError(f"has characters outside {CHARSETS[self.charset]}: {shown}")
        return value

    def _parse_choice(self, raw: Any, language: str) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"must be one of the listed choices, got {_type_name(raw)}")
        for choice in self.choices:
            if raw == choice.value:
                return choice.value
        # Staff may name a choice by the label they were shown; the caption gets its value.
        for choice in self.choices:
            if choice.labels.get(language) == raw:
                return choice.value
        allowed = ", ".join(choice.value for choice in self.choices)
        raise ValueError(f"{raw!r} is not one of: {allowed}")

    def _parse_number(self, raw: Any) -> str:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"must be a number, got {_type_name(raw)}")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError("must be a finite number")
        if isinstance(raw, str) and not NUMBER_TEXT.fullmatch(raw.strip()):
            raise ValueError(f"{raw!r} is not a number")
        number = Decimal(str(raw).strip())
        exponent = number.normalize().as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if places > self.decimals:
            allowed = "a whole number" if self.decimals == 0 else f"{self.decimals} decimals"
            raise ValueError(f"must be {allowed}, got {raw!r}")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}, got {raw!r}")
        return format_number(number)


@dataclasses.dataclass(frozen=True)
class TemplateSchema:
    pattern: str
    # Literal text and variable names, in pattern order; variable names are wrapped in Slot.
    parts: tuple[str | Slot, ...]
    variables: Mapping[str, Variable]


@dataclasses.dataclass(frozen=True)
class Slot:
    name: str


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered caption, where each variable's text sits in it, and what was used."""

    caption: str
    spans: Mapping[str, tuple[int, int]]  # variable -> [start, end) in caption (first use)
    values_used: Mapping[str, dict[str, Any]]


def charset_allows(charset: str, ch: str) -> bool:
    if charset == "words":
        return ch in _WORDS
    if charset == "text":
        return ch in _PRINTABLE_ASCII
    return unicodedata.category(ch) not in ("Cc", "Cs", "Cn")


def format_number(number: Decimal) -> str:
    """Plain positional notation without trailing zeros: 3, 2.5, -0.75 (never 1E+2)."""
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _type_name(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# --- parsing a declaration ----------------------------------------------------------------


def schema_parse(pattern: Any, variables: Any) -> TemplateSchema:
    """Return the parsed schema, or raise TemplateSchemaError naming every bad field."""
    errors: dict[str, str] = {}
    parts = _parse_pattern(pattern, errors)
    declared: dict[str, Variable] = {}
    if not isinstance(variables, list):
        errors["variables"] = "must be a list of variable declarations"
        variables = []
    for index, raw in enumerate(variables):
        where = f"variables[{index}]"
        variable = _parse_variable(raw, where, errors)
        if variable is None:
            continue
        if variable.name in declared:
            errors[f"{where}.name"] = f"{variable.name!r} is declared twice"
            continue
        declared[variable.name] = variable
    used = [part.name for part in parts if isinstance(part, Slot)]
    for name in dict.fromkeys(used):
        if name not in declared:
            errors.setdefault("pattern", f"{{{name}}} is not a declared variable")
    for name in declared:
        if name not in used:
            errors.setdefault(f"variables.{name}", "is declared but not used in the pattern")
    if errors:
        raise TemplateSchemaError(errors)
    return TemplateSchema(pattern=pattern, parts=tuple(parts), variables=declared)


def _parse_pattern(pattern: Any, errors: dict[str, str]) -> list[str | Slot]:
    if not isinstance(pattern, str) or not pattern.strip():
        errors["pattern"] = "must be non-empty text"
        return []
    if len(pattern) > MAX_PATTERN_LENGTH:
        errors["pattern"] = f"is longer than {MAX_PATTERN_LENGTH} characters"
        return []
    parts: list[str | Slot] = []
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        errors["pattern"] = f"has unbalanced braces ({exc}); write {{{{ or }}}} for a literal brace"
        return []
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if spec or conversion or not NAME.fullmatch(field):
            errors["pattern"] = (
                f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} must be a plain variable name like {{colour}}"
            )
            continue
        parts.append(Slot(field))
    if not errors.get("pattern") and not any(isinstance(part, Slot) for part in parts):
        errors["pattern"] = "has no {variable} placeholder"
    return parts


def _parse_variable(raw: Any, where: str, errors: dict[str, str]) -> Variable | None:
    if not isinstance(raw, dict):
        errors[where] = "must be an object"
        return None
    name, kind = raw.get("name"), raw.get("type")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        errors[f"{where}.name"] = "must be lower-case letters, digits or _, starting with a letter"
        return None
    where = f"variables.{name}"
    if kind not in TYPE_KEYS:
        errors[f"{where}.type"] = f"must be one of {', '.join(TYPE_KEYS)}"
        return None
    unknown = sorted(set(raw) - COMMON_KEYS - TYPE_KEYS[kind])
    if unknown:
        errors[where] = f"unknown keys for a {kind} variable: {', '.join(unknown)}"
        return None
    fields: dict[str, Any] = {"name": name, "type": kind}
    for flag in ("required", "key"):
        value = raw.get(flag, flag == "required")
        if not isinstance(value, bool):
            errors[f"{where}.{flag}"] = "must be true or false"
            return None
        fields[flag] = value
    description = raw.get("description", "")
    if not isinstance(description, str):
        errors[f"{where}.description"] = "must be text"
        return None
    fields["description"] = description
    label = _parse_labels(raw.get("label", {}), f"{where}.label", errors)
    if label is None:
        return None
    fields["label"] = label
    typed = {"text": _text_fields, "choice": _choice_fields, "number": _number_fields}[kind](
        raw, where, errors
    )
    if typed is None:
        return None
    variable = Variable(**fields, **typed)
    if "default" in raw and raw["default"] is not None:
        try:
            default_text = variable.parse(raw["default"])
        except ValueError as exc:
            errors[f"{where}.default"] = str(exc)
            return None
        # Choices keep their value; numbers and text keep the normalised form that renders.
        variable = dataclasses.replace(variable, default=default_text)
    elif not variable.required:
        errors[f"{where}.default"] = (
            "an optional variable needs a default (it may be empty text for a text variable)"
        )
        return None
    return variable


def _parse_labels(raw: Any, where: str, errors: dict[str, str]) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        errors[where] = "must map language codes to text"
        return None
    for language, text in raw.items():
        if not isinstance(language, str) or not LANGUAGE.fullmatch(language):
            errors[where] = f"{language!r} is not a language code like 'en' or 'ja'"
            return None
        if not isinstance(text, str) or not text.strip():
            errors[where] = f"the {language} label must be non-empty text"
            return None
    return dict(raw)


def _text_fields(raw: dict[str, Any], where: str, errors: dict[str, str]) -> dict[str, Any] | None:
    max_length = raw.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        errors[f"{where}.max_length"] = "a text variable needs a whole-number max_length"
        return None
    if not 1 <= max_length <= MAX_TEXT_LENGTH:
        errors[f"{where}.max_length"] = f"must be between 1 and {MAX_TEXT_LENGTH}"
        return None
    charset = raw.get("charset", "words")
    if charset not in CHARSETS:
        errors[f"{where}.charset"] = f"must be one of {', '.join(CHARSETS)}"
        return None
    return {"max_length": max_length, "charset": charset}


def _choice_fields(
    raw: dict[str, Any], where: str, errors: dict[str, str]
) -> dict[str, Any] | None:
    items = raw.get("choices")
    if not isinstance(items, list) or not items:
        errors[f"{where}.choices"] = "a choice variable needs a non-empty list of choices"
        return None
    if len(items) > MAX_CHOICES:
        errors[f"{where}.choices"] = f"at most {MAX_CHOICES} choices"
        return None
    choices: list[Choice] = []
    for index, item in enumerate(items):
        at = f"{where}.choices[{index}]"
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, dict) or set(item) - {"value", "labels"}:
            errors[at] = 'must be text or {"value": ..., "labels": {"en": ..., "ja": ...}}'
            return None
        value = item.get("value")
        if not isinstance(value, str) or value != " ".join(value.split()) or not value:
            errors[f"{at}.value"] = "must be non-empty text without leading or doubled spaces"
            return None
        if any(choice.value == value for choice in choices):
            errors[f"{at}.value"] = f"{value!r} is listed twice"
            return None
        labels = _parse_labels(item.get("labels", {}), f"{at}.labels", errors)
        if labels is None:
            return None
        choices.append(Choice(value=value, labels=labels))
    return {"choices": tuple(choices)}


def _number_fields(
    raw: dict[str, Any], where: str, errors: dict[str, str]
) -> dict[str, Any] | None:
    bounds: dict[str, Decimal] = {}
    for bound in ("minimum", "maximum"):
        value = raw.get(bound)
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[f"{where}.{bound}"] = "a number variable needs a numeric minimum and maximum"
            return None
        try:
            bounds[bound] = Decimal(str(value))
        except InvalidOperation:
            errors[f"{where}.{bound}"] = "must be a finite number"
            return None
        if not bounds[bound].is_finite():
            errors[f"{where}.{bound}"] = "must be a finite number"
            return None
    if bounds["minimum"] > bounds["maximum"]:
        errors[f"{where}.maximum"] = "must not be below the minimum"
        return None
    decimals = raw.get("decimals", 0)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
        errors[f"{where}.decimals"] = "must be a whole number from 0 to 6"
        return None
    for bound, value in bounds.items():
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > decimals:
            errors[f"{where}.{bound}"] = f"has more than the {decimals} decimals values may have"
            return None
    return {**bounds, "decimals": decimals}


# --- rendering ---------------------------------------------------------------------------


def render(schema: TemplateSchema, values: Any, language: str = "en") -> Rendered:
    """Render the caption, or raise CaptionRenderError naming every missing, unknown or
    ill-typed variable. Whitespace runs collapse to one space, as the tokenizer would."""
    if not isinstance(values, Mapping):
        raise CaptionRenderError({"values": "must map variable names to values"})
    errors: dict[str, str] = {}
    for name in values:
        if name not in schema.variables:
            errors[str(name)] = "is not a variable of this template"
    texts: dict[str, str] = {}
    used: dict[str, dict[str, Any]] = {}
    for name, variable in schema.variables.items():
        raw = values.get(name)
        if raw is None:
            if variable.required:
                errors[name] = "is required"
                continue
            texts[name], source = variable.default, "default"
        else:
            try:
                texts[name], source = variable.parse(raw, language), "given"
            except ValueError as exc:
                errors[name] = str(exc)
                continue
        used[name] = {"value": texts[name], "source": source}
        if variable.type == "choice":
            chosen = next(c for c in variable.choices if c.value == texts[name])
            used[name]["label"] = chosen.label(language)
    if errors:
        raise CaptionRenderError(errors)
    caption = ""
    spans: dict[str, tuple[int, int]] = {}
    for part in schema.parts:
        text = part if isinstance(part, str) else texts[part.name]
        text = re.sub(r"\s+", " ", text)
        if caption.endswith(" ") and text.startswith(" "):
            text = text[1:]
        if isinstance(part, Slot) and part.name not in spans:
            spans[part.name] = (len(caption), len(caption) + len(text))
        caption += text
    lead = len(caption) - len(caption.lstrip(" "))
    caption = caption.strip(" ")
    spans = {
        name: (max(start - lead, 0), min(max(end - lead, 0), len(caption)))
        for name, (start, end) in spans.items()
    }
    return Rendered(caption=caption, spans=spans, values_used=used)
