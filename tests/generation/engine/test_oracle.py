"""Tests for the pixel-logic oracle, validated on ground-truth data-set images first."""

import numpy as np
from PIL import Image, ImageFilter

from generation.engine.oracle import read_image, score
from generation.engine.synthetic import PALETTE, Attributes, make_dataset, render


def test_oracle_reads_ground_truth_images_at_least_98_percent_right() -> None:
    seen = make_dataset(seed=11, count=1200, split="train")
    held = make_dataset(seed=11, count=300, split="heldout")
    for ds in (seen, held):
        result = score(ds.images_NHW3, ds.attributes)
        for field, accuracy in result.items():
            assert accuracy >= 0.98, (ds.split, field, accuracy)


def test_oracle_tolerates_mild_blur_and_noise() -> None:
    ds = make_dataset(seed=5, count=300)
    rng = np.random.default_rng(0)
    blurred = np.stack(
        [
            np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(0.7)))
            for i in ds.images_NHW3
        ]
    ).astype(np.float32)
    noisy = np.clip(blurred + rng.normal(0, 8, blurred.shape), 0, 255).astype(np.uint8)
    assert score(noisy, ds.attributes)["all"] >= 0.95


def test_plain_background_reads_as_no_shape() -> None:
    img = np.broadcast_to(np.array(PALETTE["blue"], np.uint8), (64, 64, 3)).copy()
    reading = read_image(img)
    assert reading.background == "blue"
    assert reading.shape == "none"


def test_single_reading_names_every_field() -> None:
    target = Attributes("triangle", "cyan", "large", "right", "purple")
    reading = read_image(render(target))
    assert reading.matches(target) == {
        "background": True, "colour": True, "shape": True, "size": True, "position": True,
    }  # fmt: skip
