"""Training recipes for the bundled VAR-CLIP demo (Zhang et al., 2024): model sizes, data set size
and per-stage steps, as named presets ("demo" for models/demo, "smoke" for tests)."""

from __future__ import annotations

import dataclasses
from typing import Any

from generation.engine.config import (
    TextEncoderConfig,
    TransformerConfig,
    VarClipConfig,
    VQVAEConfig,
    to_plain_dict,
)
from generation.engine.training.clip_stage import ClipSettings
from generation.engine.training.var_stage import VarSettings
from generation.engine.training.vqvae_stage import VQVAESettings


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything `train all` needs besides the output folder."""

    name: str
    model: VarClipConfig
    data_seed: int = 0
    train_images: int = 10000
    clip: ClipSettings = dataclasses.field(default_factory=ClipSettings)
    clip_steps: int = 1500
    vqvae: VQVAESettings = dataclasses.field(default_factory=lambda: VQVAESettings(batch_size=16))
    vqvae_steps: int = 1500
    var: VarSettings = dataclasses.field(
        default_factory=lambda: VarSettings(batch_size=32, lr=2e-3, bf16=True)
    )
    var_steps: int = 1700
    seed: int = 0
    checkpoint_every: int = 100
    eval_seen: int = 200
    eval_heldout: int = 200
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, recorded in the model card."""
        out = to_plain_dict(self)
        out["model"] = self.model.to_dict()
        return out


def demo_model() -> VarClipConfig:
    """64x64 px, 16x16 latent (f = 4), 5 scales, one GroupNorm group; sizes chosen to train in
    minutes on 2 cores. Why these choices: the tokenizer measurements in docs/training.md."""
    return VarClipConfig(
        vqvae=VQVAEConfig(
            vocab_size=512,
            z_channels=16,
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            patch_nums=(1, 2, 4, 8, 16),
            using_sa=False,
            using_mid_sa=True,
            norm_groups=1,
        ),
        transformer=TransformerConfig(
            depth=4, width=192, num_heads=3, cond_dim=64, drop_path_rate=0.0
        ),
        # Width 32 keeps the 49,408-row token embedding at 6 MB of the 30 MB budget.
        text_encoder=TextEncoderConfig(width=32, heads=4, layers=3, embed_dim=64),
    )


def smoke_model() -> VarClipConfig:
    """The smallest model the engine accepts at 64 px: for tests of the training code."""
    return VarClipConfig(
        vqvae=VQVAEConfig(
            vocab_size=32,
            z_channels=4,
            ch=32,
            ch_mult=(1, 1, 1, 1),
            num_res_blocks=1,
            patch_nums=(1, 2, 4, 8),
            using_sa=False,
            using_mid_sa=False,
            norm_groups=1,
        ),
        transformer=TransformerConfig(depth=1, width=32, num_heads=2, cond_dim=16),
        text_encoder=TextEncoderConfig(width=16, heads=2, layers=1, embed_dim=16),
    )


PRESETS: dict[str, Recipe] = {
    # Stage 0 with the convolutional vision tower: open_clip's ViT (300 steps) left the text
    # tower blind to shape and position (zero-shot 18 % and 21 %, chance 20 %); the conv tower
    # read position at 100 % and shape at 56 % after 600 steps.
    # Stage 1 under bf16 autocast: 1.6x faster steps here, and its reconstructions read shape
    # at 86.5 % against 78.5 % for the same 1,500 steps in float32 (docs/training.md).
    "demo": Recipe(
        name="demo",
        model=demo_model(),
        clip=ClipSettings(vision="conv", vision_width=32),
        vqvae=VQVAESettings(batch_size=16, bf16=True),
    ),
    "smoke": Recipe(
        name="smoke",
        model=smoke_model(),
        train_images=64,
        clip=ClipSettings(vision="conv", vision_width=8, batch_size=8, group_size=2, warmup=2),
        clip_steps=3,
        vqvae=VQVAESettings(batch_size=4, warmup=2, restart_every=2),
        vqvae_steps=3,
        var=VarSettings(batch_size=8, warmup=2, bf16=False),
        var_steps=4,
        checkpoint_every=2,
        eval_seen=4,
        eval_heldout=2,
        threads=1,
    ),
}


def recipe(name: str, **overrides: Any) -> Recipe:
    """Preset `name` with top-level fields replaced (e.g. steps for a quick run)."""
    if name not in PRESETS:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
