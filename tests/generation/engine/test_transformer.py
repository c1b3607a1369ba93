"""The next-scale transformer matches the reference forward and loads official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from generation.engine.checkpoint import (
    derived_transformer_buffers,
    load_module,
    official_key_shapes,
    save_module,
)
from generation.engine.config import VarClipConfig
from generation.engine.pipeline import build_transformer
from generation.engine.transformer import NextScaleTransformer, init_weights
from generation.engine.vqvae import VQVAE

from .conftest import PARITY_DIR

TOL = {"rtol": 1e-4, "atol": 1e-4}
OFFICIAL = json.loads((PARITY_DIR / "official_keys.json").read_text())


def test_training_forward_matches_reference_logits(
    ref_transformer: NextScaleTransformer, var_io: dict, vqvae_io: dict
) -> None:
    x = vqvae_io["x_BLCv_wo_first_l"]
    with torch.no_grad():
        cond = ref_transformer(var_io["cond_BD"], x)
        uncond = ref_transformer(var_io["cond_BD"], x, null_mask_B=torch.tensor([True, True]))
    assert cond.dtype == torch.float32 and cond.shape == (2, 680, 256)
    assert_close(cond, var_io["logits_cond_BLV"], **TOL)
    assert_close(uncond, var_io["logits_uncond_BLV"], **TOL)


def test_null_mask_replaces_only_the_masked_rows(
    ref_transformer: NextScaleTransformer, var_io: dict, vqvae_io: dict
) -> None:
    x = vqvae_io["x_BLCv_wo_first_l"]
    with torch.no_grad():
        mixed = ref_transformer(var_io["cond_BD"], x, null_mask_B=torch.tensor([False, True]))
    assert_close(mixed[0], var_io["logits_cond_BLV"][0], **TOL)
    assert_close(mixed[1], var_io["logits_uncond_BLV"][1], **TOL)


def test_derived_buffers_equal_the_stored_ones_including_minus_inf(
    ref_transformer: NextScaleTransformer,
) -> None:
    stored = load_file(str(PARITY_DIR / "var.safetensors"))
    for key, value in derived_transformer_buffers(ref_transformer).items():
        assert torch.equal(value, stored[key]), key
    assert torch.isinf(stored["attn_bias_for_masking"]).any()


def test_kv_cached_steps_match_the_full_forward(
    ref_transformer: NextScaleTransformer, var_io: dict, vqvae_io: dict
) -> None:
    model, x = ref_transformer, vqvae_io["x_BLCv_wo_first_l"]
    cond = var_io["cond_BD"]
    with torch.no_grad():
        state, x_BlC = model.start_inference(cond)
        full_c = model(cond, x)
        full_u = model(cond, x, null_mask_B=torch.ones(2, dtype=torch.bool))
        for si, (b, e) in enumerate(model.begin_ends):
            if si > 0:
                x_BlC = (model.word_embed(x[:, b - 1 : e - 1]) + model.lvl_pos(b, e)).repeat(
                    2, 1, 1
                )
            logits = model.step(state, si, x_BlC)
            assert_close(logits[:2], full_c[:, b:e], **TOL)
            assert_close(logits[2:], full_u[:, b:e], **TOL)


@pytest.mark.parametrize(
    ("entry", "conditioning"),
    [("varclip_d16", "text"), ("var_d16_class_conditional", "class")],
)
def test_official_transformer_key_set_and_shapes_match(entry: str, conditioning: str) -> None:
    official = OFFICIAL[entry]
    with torch.device("meta"):
        model = build_transformer(VarClipConfig.from_preset("d16", conditioning=conditioning))  # type: ignore[arg-type]
    expected = {k["name"]: tuple(k["shape"]) for k in official["keys"]}
    assert official_key_shapes(model) == expected
    assert sum(p.numel() for p in model.parameters()) == official["n_params"]


def test_tiny_transformer_shapes_dtype_and_save_load_round_trip(tmp_path: Path) -> None:
    cfg = VarClipConfig.from_preset("tiny")
    torch.manual_seed(0)
    model = build_transformer(cfg).eval()
    init_weights(model)
    cond = torch.randn(3, cfg.transformer.cond_dim)
    x = torch.randn(3, model.L - 1, cfg.vqvae.z_channels)
    with torch.no_grad():
        logits = model(cond, x)
    assert logits.shape == (3, model.L, cfg.vqvae.vocab_size) and logits.dtype == torch.float32
    save_module(model, tmp_path / "t.safetensors")
    with torch.device("meta"):
        loaded = build_transformer(cfg)
    load_module(loaded, tmp_path / "t.safetensors", device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded(cond, x), logits)


def test_class_conditional_transformer_uses_the_null_class_row() -> None:
    cfg = VarClipConfig.from_preset("tiny", conditioning="class")
    torch.manual_seed(0)
    model = build_transformer(cfg).eval()
    labels = torch.tensor([3, 7])
    x = torch.randn(2, model.L - 1, cfg.vqvae.z_channels)
    with torch.no_grad():
        null = model(labels, x, null_mask_B=torch.tensor([True, True]))
        direct = model(torch.full((2,), cfg.transformer.num_classes), x)
    assert torch.equal(null, direct)


def test_reference_init_recipe_makes_blocks_near_identity() -> None:
    cfg = VarClipConfig.from_preset("tiny")
    model = build_transformer(cfg)
    init_weights(model)
    gamma_rows = model.block_list[0].ada_lin[-1].weight[: 2 * cfg.transformer.width]
    assert gamma_rows.abs().max() < 1e-2
    assert torch.all(model.block_list[0].attn.v_bias == 0)


def test_training_forward_has_gradients_for_every_parameter() -> None:
    cfg = VarClipConfig.from_preset("tiny")
    torch.manual_seed(0)
    model = build_transformer(cfg).train()
    vq = VQVAE(cfg.vqvae)
    indices = [torch.randint(0, cfg.vqvae.vocab_size, (2, pn * pn)) for pn in cfg.vqvae.patch_nums]
    x = vq.indices_to_teacher_input(indices).detach()
    logits = model(torch.randn(2, cfg.transformer.cond_dim), x, torch.tensor([True, False]))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.cat(indices, 1).flatten())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
