"""Stage 0's CLIP: both vision towers build, embed images and captions, and train a step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.engine.config import TextEncoderConfig
from generation.engine.tokenizer import default_tokenizer
from generation.engine.training.clip_stage import (
    ClipSettings,
    ConvVisionTower,
    build_clip,
    clip_loss,
    encode_text,
    image_input,
)

TEXT = TextEncoderConfig(width=16, heads=2, layers=1, embed_dim=8)


@pytest.mark.parametrize(
    "settings",
    [
        ClipSettings(vision="vit", vision_width=32, vision_layers=1, vision_head_width=16),
        ClipSettings(vision="conv", vision_width=8),
    ],
    ids=["vit", "conv"],
)
def test_both_vision_towers_embed_images_and_learn_from_a_contrastive_step(
    settings: ClipSettings,
) -> None:
    torch.manual_seed(0)
    clip = build_clip(TEXT, settings, 64)
    assert isinstance(clip.visual, ConvVisionTower) == (settings.vision == "conv")
    images = image_input(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    ids = default_tokenizer().encode(["a red circle", "a blue square", "a star", "a cross"]).ids
    assert clip.encode_image(images, normalize=True).shape == (4, 8)
    assert encode_text(clip, ids).shape == (4, 8)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=1e-2)
    before = clip_loss(clip, images, ids)
    for _ in range(5):
        loss = clip_loss(clip, images, ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert clip_loss(clip, images, ids) < before


def test_conv_tower_keeps_position_apart() -> None:
    # The same blob on the left and on the right must not embed alike (flattening keeps where).
    torch.manual_seed(0)
    tower = ConvVisionTower(8, 8, 64).eval()
    left, right = torch.full((1, 3, 64, 64), -1.0), torch.full((1, 3, 64, 64), -1.0)
    left[..., 24:40, 4:20] = 1.0
    right[..., 24:40, 44:60] = 1.0
    with torch.no_grad():
        assert not torch.allclose(tower(left), tower(right), atol=1e-3)


def test_bad_vision_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="vision must be 'vit' or 'conv'"):
        build_clip(TEXT, ClipSettings(vision="resnet"), 64)
    with pytest.raises(ValueError, match="divisible by 8"):
        ConvVisionTower(8, 8, 60)
