"""Tests for the synthetic shapes data set: determinism, coverage and the held-out split."""

import numpy as np

from generation.engine.synthetic import (
    COLOURS,
    GENERATOR_VERSION,
    HELD_OUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    all_attributes,
    make_dataset,
)


def test_same_seed_renders_identical_images_and_captions() -> None:
    a = make_dataset(seed=3, count=40)
    b = make_dataset(seed=3, count=40)
    assert np.array_equal(a.images_NHW3, b.images_NHW3)
    assert a.captions == b.captions


def test_different_seeds_give_different_data() -> None:
    assert make_dataset(seed=1, count=20).captions != make_dataset(seed=2, count=20).captions


def test_images_are_64px_rgb_uint8() -> None:
    ds = make_dataset(seed=0, count=8)
    assert ds.images_NHW3.shape == (8, 64, 64, 3)
    assert ds.images_NHW3.dtype == np.uint8


def test_issue_minimums_are_met() -> None:
    assert {"circle", "square", "triangle", "star", "cross"} <= set(SHAPES)
    assert len(COLOURS) >= 8 and len(SIZES) == 2 and len(POSITIONS) == 5
    assert GENERATOR_VERSION


def test_training_split_never_contains_a_held_out_pair() -> None:
    ds = make_dataset(seed=0, count=3000, split="train")
    assert not any((a.shape, a.colour) in HELD_OUT_PAIRS for a in ds.attributes)


def test_held_out_split_contains_only_held_out_pairs() -> None:
    assert all(a.held_out for a in all_attributes("heldout"))
    assert len(all_attributes("heldout")) + len(all_attributes("train")) == len(
        all_attributes("all")
    )


def test_background_never_equals_shape_colour() -> None:
    assert all(a.background != a.colour for a in all_attributes("all"))


def test_captions_name_every_attribute_in_several_phrasings() -> None:
    ds = make_dataset(seed=0, count=200)
    for caption, a in zip(ds.captions, ds.attributes, strict=True):
        for word in (a.shape, a.colour, a.size, a.background):
            assert word in caption
    assert len({c.split()[0] for c in ds.captions}) >= 3


def test_first_images_cover_distinct_combinations() -> None:
    ds = make_dataset(seed=0, count=500)
    assert len(set(ds.attributes)) == 500
