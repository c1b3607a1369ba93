"""Template schemas and strict rendering: every bad value is an error naming its variable."""

import pytest

from governance.captions.schema import (
    CaptionRenderError,
    TemplateSchemaError,
    render,
    schema_parse,
)

COLOURS = [
    {"value": "red", "labels": {"en": "red", "ja": "赤"}},
    {"value": "blue", "labels": {"en": "blue", "ja": "青"}},
]
VARIABLES = [
    {"name": "size", "type": "choice", "choices": ["small", "large"]},
    {"name": "colour", "type": "choice", "key": True, "choices": COLOURS},
    {"name": "product", "type": "text", "max_length": 12, "charset": "words", "key": True},
    {"name": "count", "type": "number", "minimum": 1, "maximum": 5},
    {
        "name": "position",
        "type": "choice",
        "required": False,
        "default": "in the centre",
        "choices": ["in the centre", "on the left"],
    },
]
PATTERN = "{count} {size} {colour} {product} {position}"
GOOD = {"size": "large", "colour": "red", "product": "teapot", "count": 2}


@pytest.fixture
def schema():
    return schema_parse(PATTERN, VARIABLES)


def _errors(schema, values, language="en"):
    with pytest.raises(CaptionRenderError) as caught:
        render(schema, values, language)
    return caught.value.errors


def test_a_complete_set_of_values_renders_the_caption_and_records_each_source(schema):
    rendered = render(schema, GOOD)
    assert rendered.caption == "2 large red teapot in the centre"
    assert rendered.values_used["position"] == {
        "value": "in the centre",
        "source": "default",
        "label": "in the centre",
    }
    assert rendered.values_used["product"] == {"value": "teapot", "source": "given"}
    assert rendered.spans["product"] == (12, 18)


def test_a_missing_required_variable_is_an_error_naming_it(schema):
    assert _errors(schema, {k: v for k, v in GOOD.items() if k != "product"}) == {
        "product": "is required"
    }


def test_an_unknown_variable_is_an_error_naming_it(schema):
    assert _errors(schema, {**GOOD, "mood": "happy"}) == {
        "mood": "is not a variable of this template"
    }


def test_every_bad_variable_is_reported_at_once(schema):
    errors = _errors(schema, {"size": "huge", "colour": 3, "product": "x" * 13, "count": 9})
    assert set(errors) == {"size", "colour", "product", "count"}
    assert "'huge' is not one of: small, large" in errors["size"]
    assert errors["colour"] == "must be one of the listed choices, got int"
    assert errors["product"] == "is 13 characters; at most 12 allowed"
    assert errors["count"] == "must be between 1 and 5, got 9"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("tea\u200bpot", "has characters outside ASCII letters"),
        ("teapot 2", "has characters outside ASCII letters"),
        (["teapot"], "must be text, got list"),
    ],
)
def test_text_values_are_checked_for_type_emptiness_and_characters(schema, value, message):
    assert message in _errors(schema, {**GOOD, "product": value})["product"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a number, got bool"),
        (2.5, "must be a whole number"),
        ("two", "'two' is not a number"),
        (float("nan"), "must be a finite number"),
        (0, "must be between 1 and 5"),
    ],
)
def test_number_values_are_checked_for_type_precision_and_range(schema, value, message):
    assert message in _errors(schema, {**GOOD, "count": value})["count"]


def test_a_number_given_as_digits_renders_like_the_number(schema):
    assert render(schema, {**GOOD, "count": "3"}).caption.startswith("3 ")


def test_a_japanese_label_renders_the_english_value_the_model_understands(schema):
    rendered = render(schema, {**GOOD, "colour": "赤"}, language="ja")
    assert rendered.caption == "2 large red teapot in the centre"
    assert rendered.values_used["colour"]["label"] == "赤"


def test_a_label_of_another_language_is_not_accepted(schema):
    assert "'赤' is not one of" in _errors(schema, {**GOOD, "colour": "赤"}, "en")["colour"]


def test_a_default_on_a_required_variable_is_a_suggestion_not_a_silent_value():
    schema = schema_parse(
        "a {colour} star",
        [{"name": "colour", "type": "choice", "default": "red", "choices": ["red"]}],
    )
    assert _errors(schema, {}) == {"colour": "is required"}


def test_an_empty_optional_value_leaves_no_doubled_space():
    schema = schema_parse(
        "a {adjective} star",
        [
            {
                "name": "adjective",
                "type": "text",
                "max_length": 10,
                "required": False,
                "default": "",
            }
        ],
    )
    assert render(schema, {}).caption == "a star"


@pytest.mark.parametrize(
    ("pattern", "variables", "field", "message"),
    [
        ("a {colour} star", [], "pattern", "{colour} is not a declared variable"),
        ("a star", VARIABLES[:1], "pattern", "has no {variable} placeholder"),
        ("a {size} {colour!r}", VARIABLES[:2], "pattern", "must be a plain variable name"),
        ("a {size:>9}", VARIABLES[:1], "pattern", "must be a plain variable name"),
        ("a {size", VARIABLES[:1], "pattern", "unbalanced braces"),
        ("a {size}", VARIABLES[:2], "variables.colour", "declared but not used"),
        (
            "a {x}",
            [{"name": "x", "type": "text", "max_length": 5, "required": False}],
            "variables.x.default",
            "an optional variable needs a default",
        ),
        (
            "a {x}",
            [{"name": "x", "type": "text", "max_length": 5, "colour": "red"}],
            "variables.x",
            "unknown keys for a text variable: colour",
        ),
        ("a {x}", [{"name": "x", "type": "text"}], "variables.x.max_length", "needs a whole"),
        (
            "a {x}",
            [{"name": "x", "type": "number", "minimum": 5, "maximum": 1}],
            "variables.x.maximum",
            "must not be below the minimum",
        ),
        (
            "a {x}",
            [{"name": "x", "type": "choice", "choices": ["red", "red"]}],
            "variables.x.choices[1].value",
            "listed twice",
        ),
        (
            "a {x}",
            [{"name": "x", "type": "choice", "choices": ["red"], "default": "green"}],
            "variables.x.default",
            "'green' is not one of: red",
        ),
        ("a {x}", [{"name": "x", "type": "date"}], "variables.x.type", "must be one of"),
        (
            "a {x}",
            [{"name": "x", "type": "number", "minimum": 0.5, "maximum": 3}],
            "variables.x.minimum",
            "more than the 0 decimals",
        ),
    ],
)
def test_malformed_declarations_are_refused_naming_the_field(pattern, variables, field, message):
    with pytest.raises(TemplateSchemaError) as caught:
        schema_parse(pattern, variables)
    assert message in caught.value.errors[field]
