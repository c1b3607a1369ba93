"""VarClipConfig presets and the strict JSON round trip."""

from __future__ import annotations

import json

import pytest

from generation.engine.config import TransformerConfig, VarClipConfig, VQVAEConfig
from generation.engine.errors import EngineInputError


@pytest.mark.parametrize("name", ["tiny", "d16", "d20", "d24", "d30", "d12"])
def test_every_preset_survives_a_json_round_trip(name: str) -> None:
    cfg = VarClipConfig.from_preset(name)
    assert VarClipConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_d16_preset_has_the_released_sizes() -> None:
    cfg = VarClipConfig.from_preset("d16")
    assert (cfg.transformer.width, cfg.transformer.num_heads, cfg.transformer.depth) == (
        1024,
        16,
        16,
    )
    assert cfg.vqvae.image_size == 256 and cfg.vqvae.num_tokens == 680
    assert cfg.text_encoder is not None and cfg.text_encoder.embed_dim == 768


def test_tiny_preset_makes_small_images() -> None:
    assert VarClipConfig.from_preset("tiny").vqvae.image_size == 32


def test_class_conditional_preset_has_no_text_encoder() -> None:
    cfg = VarClipConfig.from_preset("d16", conditioning="class")
    assert cfg.text_encoder is None and cfg.transformer.conditioning == "class"


def test_from_dict_names_unknown_keys() -> None:
    data = VarClipConfig.from_preset("tiny").to_dict()
    data["transformer"]["depht"] = 3
    data["colour"] = "red"
    with pytest.raises(EngineInputError, match="colour") as info:
        VarClipConfig.from_dict(data)
    assert "depht" not in str(info.value)  # top level is checked first
    del data["colour"]
    with pytest.raises(EngineInputError, match="depht"):
        VarClipConfig.from_dict(data)


def test_from_dict_refuses_mistyped_values() -> None:
    data = VarClipConfig.from_preset("tiny").to_dict()
    data["transformer"]["depth"] = "2"
    with pytest.raises(TypeError, match=r"transformer\.depth"):
        VarClipConfig.from_dict(data)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(EngineInputError, match="unknown preset"):
        VarClipConfig.from_preset("huge")


def test_inconsistent_text_width_is_refused() -> None:
    with pytest.raises(EngineInputError, match="cond_dim"):
        VarClipConfig(transformer=TransformerConfig(cond_dim=512))


def test_groupnorm_incompatible_width_is_refused() -> None:
    with pytest.raises(EngineInputError, match=r"multiples of norm_groups \(32\)"):
        VQVAEConfig(ch=40)
    with pytest.raises(EngineInputError, match=r"multiples of norm_groups \(16\)"):
        VQVAEConfig(ch=40, ch_mult=(1, 2), norm_groups=16)
    with pytest.raises(EngineInputError, match="norm_groups must be at least 1"):
        VQVAEConfig(norm_groups=0)


def test_norm_groups_reach_every_groupnorm_and_default_to_the_official_32() -> None:
    import torch

    from generation.engine.vqvae import VQVAE

    assert VQVAEConfig().norm_groups == 32
    old_file = VarClipConfig.from_preset("d16").to_dict()
    del old_file["vqvae"]["norm_groups"]  # config.json written before the field existed
    assert VarClipConfig.from_dict(old_file).vqvae.norm_groups == 32
    cfg = VQVAEConfig(ch=40, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4), norm_groups=8)
    norms = [m for m in VQVAE(cfg).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {8}
