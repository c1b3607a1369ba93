"""The caption lint, checked with the engine's own CLIP tokenizer (no database needed)."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.captions.lint import (
    LintPolicy,
    lint_caption,
    normalise,
    token_count,
    token_positions,
)
from governance.captions.schema import CaptionRenderError, render, schema_parse

POLICY = LintPolicy(banned_terms=("cheap", "free shipping"), typical_caption_tokens=10)


def rules(lint):
    return [(f.rule, f.severity) for f in lint.findings]


def lint_key(prefix_words, key="teapot", **kwargs):
    """A caption of `prefix_words` single-token words followed by the key term."""
    caption = "a " * prefix_words + key
    start = len(caption) - len(key)
    return lint_caption(
        caption, LintPolicy(), spans={"product": (start, len(caption))}, key_variables=["product"]
    )


def test_positions_count_from_one_after_the_start_token():
    assert token_positions("teapot on a table", {"product": (0, 6)}) == {"product": 1}
    assert token_positions("a red teapot", {"product": (6, 12)}) == {"product": 3}


def test_a_key_term_whose_first_token_is_at_position_20_passes():
    lint = lint_key(19)
    assert lint.positions == {"product": 20}
    assert lint.findings == ()


def test_a_key_term_whose_first_token_is_at_position_21_warns_and_says_where():
    lint = lint_key(20)
    assert rules(lint) == [("key_position", "warning")]
    assert lint.findings[0].position == 21
    assert "starts at token 21" in lint.findings[0].message


def test_a_key_term_glued_to_literal_text_is_located_at_the_word_it_joins():
    # "super" + "sized" pre-tokenise as one word; the key starts where that word starts.
    caption = "a b supersized"
    assert token_positions(caption, {"size": (9, 14)}) == {"size": 3}


def test_positions_follow_the_tokenizer_through_html_entities_and_spacing():
    caption = "a &amp;   big\tred teapot"
    start = caption.index("teapot")
    # "&" "big" "red" each one token after "a": the key is the fifth token.
    assert token_positions(caption, {"product": (start, start + 6)}) == {"product": 5}


def test_77_tokens_with_start_and_end_pass_and_78_are_an_error():
    fits = "a " * 75
    assert token_count(fits) == 77
    assert "token_limit" not in [f.rule for f in lint_caption(fits, LintPolicy()).findings]
    over = lint_caption("a " * 75 + "teapot", LintPolicy())
    assert over.token_count == 78
    (error,) = over.errors
    assert error.rule == "token_limit"
    assert "caption is 78 tokens" in error.message
    assert "everything from 'teapot' on is lost" in error.message


def test_a_truncation_error_names_the_variables_that_are_cut():
    caption = "a " * 80 + "teapot"
    start = caption.index("teapot")
    lint = lint_caption(caption, LintPolicy(), spans={"product": (start, start + 6)})
    assert "(variables cut: product)" in lint.errors[0].message


def test_a_caption_over_twice_the_model_cards_typical_length_warns():
    policy = LintPolicy(typical_caption_tokens=10, model_version="demo:3")
    assert lint_caption("a " * 20, policy).findings == ()
    (warning,) = lint_caption("a " * 21, policy).findings
    assert warning.rule == "caption_length"
    assert "21 tokens, over 2x the 10-token captions" in warning.message
    assert "model card of demo:3" in warning.message


@pytest.mark.parametrize(
    "caption",
    [
        "a cheap teapot",
        "a CHEAP teapot",
        "a Cheap, teapot",
        "a ｃｈｅａｐ teapot",  # full-width letters
        "a ch\u200beap teapot",  # zero-width space
        "a che\u00adap teapot",  # soft hyphen
        "a c h e a p teapot",  # letters spaced out
        "a c-h-e-a-p teapot",
        "a c.h.e.a.p teapot",
        "a c_h_e_a_p teapot",
        "a ĉhéap teapot",  # combining accents
        "a &#99;heap teapot",  # an entity the tokenizer unescapes
        "free\u00a0 shipping included",  # no-break space between the words of a term
    ],
)
def test_banned_terms_are_found_through_unicode_and_spacing_tricks(caption):
    lint = lint_caption(caption, POLICY)
    assert ("banned_term", "error") in rules(lint)


@pytest.mark.parametrize(
    "caption", ["a cheapskate teapot", "a teapot, cheaply made", "freeshipping"]
)
def test_banned_terms_match_whole_words_only(caption):
    assert "banned_term" not in [f.rule for f in lint_caption(caption, POLICY).findings]


def test_a_missing_required_term_is_an_error_and_a_present_one_passes():
    policy = LintPolicy(required_terms=("studio photo",))
    assert rules(lint_caption("a red teapot", policy)) == [("required_term", "error")]
    assert lint_caption("a Studio  Photo of a red teapot", policy).findings == ()


@pytest.mark.parametrize(
    ("caption", "sample"),
    [("赤い ティーポット", "赤い"), ("a red чайник", "чайник"), ("crème brûlée flambée", "èûéé")],
)
def test_non_english_text_warns(caption, sample):
    (finding,) = lint_caption(caption, LintPolicy()).findings
    assert finding.rule == "non_english"
    assert repr(sample) in finding.message


def test_an_occasional_accent_is_still_english():
    assert lint_caption("a café table with a red teapot", LintPolicy()).findings == ()


def test_normalisation_folds_width_case_format_characters_and_spacing():
    assert normalise("  ＦＲＥＥ\u200b\u00a0 Ｓｈｉｐｐｉｎｇ ") == "free shipping"


def test_linting_one_caption_takes_well_under_ten_milliseconds():
    caption = "a large red circle in the centre, blue background"
    spans = {"colour": (8, 11), "shape": (12, 18)}
    lint_caption(caption, POLICY, spans=spans, key_variables=spans)  # warm the caches
    started = time.perf_counter()
    for _ in range(100):
        lint_caption(caption, POLICY, spans=spans, key_variables=spans)
    assert (time.perf_counter() - started) / 100 < 0.010


FREE_TEXT = schema_parse(
    "a {colour} teapot, {note}",
    [
        {"name": "colour", "type": "choice", "key": True, "choices": ["red", "blue"]},
        {"name": "note", "type": "text", "max_length": 300, "charset": "unicode", "key": True},
    ],
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    note=st.one_of(st.text(max_size=300), st.text(min_size=60, max_size=300)),
    colour=st.sampled_from(["red", "blue"]),
)
def test_render_and_lint_never_crash_and_never_pass_an_overlong_caption(note, colour):
    try:
        rendered = render(FREE_TEXT, {"colour": colour, "note": note})
    except CaptionRenderError as exc:
        assert set(exc.errors) == {"note"}
        return
    lint = lint_caption(
        rendered.caption, POLICY, spans=rendered.spans, key_variables=["colour", "note"]
    )
    if token_count(rendered.caption) > 77:
        assert "token_limit" in [f.rule for f in lint.errors]
    else:
        assert "token_limit" not in [f.rule for f in lint.findings]
    assert lint.positions.get("colour") == 2
