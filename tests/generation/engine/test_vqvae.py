"""The multi-scale VQVAE and its quantizer match the reference and train as specified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from generation.engine.checkpoint import load_module, official_key_shapes, save_module
from generation.engine.config import VarClipConfig, VQVAEConfig
from generation.engine.fast_conv import FastConv3x3, winograd_weight
from generation.engine.quantizer import phi_index_per_scale
from generation.engine.vqvae import VQVAE, MapPool, ResnetBlock, group_norm, group_norm_into

from .conftest import PARITY_DIR

TOL = {"rtol": 1e-4, "atol": 1e-4}


def test_phi_table_matches_the_reference_including_the_float64_tie() -> None:
    assert phi_index_per_scale(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_index_per_scale(14, 4) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]


def test_encoder_features_match_reference(ref_vqvae: VQVAE, vqvae_io: dict) -> None:
    with torch.no_grad():
        f = ref_vqvae.encode_features(vqvae_io["img_B3HW"])
    assert_close(f, vqvae_io["f_BChw"], **TOL)


def test_quantizer_indices_and_fhats_match_reference(ref_vqvae: VQVAE, vqvae_io: dict) -> None:
    f = vqvae_io["f_BChw"]
    indices = ref_vqvae.quantize.f_to_indices(f)
    for si, idx in enumerate(indices):
        assert torch.equal(idx, vqvae_io[f"idx_s{si}"]), f"scale {si}"
    for si, fhat in enumerate(ref_vqvae.quantize.f_to_fhats(f)):
        assert_close(fhat, vqvae_io[f"fhat_cum_s{si}"], **TOL)


def test_fhat_teacher_input_and_image_from_reference_indices_match(
    ref_vqvae: VQVAE, vqvae_io: dict
) -> None:
    indices = [vqvae_io[f"idx_s{si}"] for si in range(10)]
    with torch.no_grad():
        assert_close(ref_vqvae.quantize.indices_to_fhat(indices), vqvae_io["fhat_BChw"], **TOL)
        assert_close(
            ref_vqvae.indices_to_teacher_input(indices), vqvae_io["x_BLCv_wo_first_l"], **TOL
        )
        assert_close(ref_vqvae.indices_to_image(indices), vqvae_io["img_rec_B3HW"], **TOL)


def test_official_vqvae_key_set_and_shapes_match_released_file() -> None:
    official = json.loads((PARITY_DIR / "official_keys.json").read_text())["vqvae_ch160_v4096_z32"]
    with torch.device("meta"):
        model = VQVAE(VarClipConfig.from_preset("d16").vqvae)
    expected = {k["name"]: tuple(k["shape"]) for k in official["keys"]}
    assert official_key_shapes(model) == expected
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == official["n_params"]


def test_tiny_vqvae_shapes_dtype_and_save_load_round_trip(tmp_path: Path) -> None:
    cfg = VarClipConfig.from_preset("tiny").vqvae
    torch.manual_seed(0)
    model = VQVAE(cfg).eval()
    img = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
    with torch.no_grad():
        f = model.encode_features(img)
        indices = model.img_to_indices(img)
        rec = model.indices_to_image(indices)
    assert f.shape == (2, cfg.z_channels, 4, 4) and f.dtype == torch.float32
    assert [i.shape for i in indices] == [(2, pn * pn) for pn in cfg.patch_nums]
    assert rec.shape == img.shape and rec.abs().max() <= 1
    save_module(model, tmp_path / "vqvae.safetensors")
    with torch.device("meta"):
        loaded = VQVAE(cfg)
    load_module(
        loaded, tmp_path / "vqvae.safetensors", device=torch.device("cpu"), dtype=torch.float32
    )
    with torch.no_grad():
        assert torch.equal(loaded.indices_to_image(indices), rec)


def test_quantizer_training_pass_is_straight_through_with_commitment_loss() -> None:
    cfg = VQVAEConfig(vocab_size=16, z_channels=4, ch=32, ch_mult=(1, 1), patch_nums=(1, 2, 4))
    torch.manual_seed(0)
    model = VQVAE(cfg)
    img = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_(True)
    rec, loss, usage = model(img)
    assert rec.shape == img.shape and loss.ndim == 0 and loss > 0
    (rec.mean() + loss).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0  # gradients pass the quantizer
    assert model.quantize.embedding.weight.grad is not None
    assert model.quantize.quant_resi.qresi_ls[0].weight.grad is not None
    assert usage.counts_SV.shape == (3, 16)
    assert usage.counts_SV.sum(dim=1).tolist() == [2.0, 8.0, 32.0]
    assert torch.all(usage.perplexity_S >= 1) and torch.all(usage.used_fraction_S <= 1)


def test_quantizer_picks_float32_codes_under_bf16_autocast() -> None:
    # Training with VQVAESettings.bf16 runs the encoder and decoder under autocast; the
    # nearest-code search must still be float32, or training and inference disagree on codes.
    cfg = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), patch_nums=(1, 2, 4))
    torch.manual_seed(0)
    quantizer = VQVAE(cfg).quantize
    f_BChw = torch.randn(4, 8, 4, 4)
    fhat_fp32, loss_fp32, usage_fp32 = quantizer(f_BChw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fhat_amp, loss_amp, usage_amp = quantizer(f_BChw)
    assert fhat_amp.dtype == torch.float32
    assert torch.equal(usage_amp.counts_SV, usage_fp32.counts_SV)
    assert torch.equal(fhat_amp, fhat_fp32) and torch.equal(loss_amp, loss_fp32)


def test_an_image_decodes_to_the_same_values_alone_or_in_a_batch() -> None:
    # Convolution kernels sum in a batch-dependent order (oneDNN on a Zen 4 EPYC changed 861 of
    # conv_in's 1,024 outputs for one image between batch 1 and 3), so at inference the decoder
    # and f_hat work image by image.
    cfg = VarClipConfig.from_preset("tiny").vqvae
    torch.manual_seed(0)
    model = VQVAE(cfg, with_encoder=False).eval()
    fhat = torch.randn(3, cfg.z_channels, 4, 4)
    indices = [torch.randint(cfg.vocab_size, (3, pn * pn)) for pn in cfg.patch_nums]
    with torch.inference_mode():
        batch = model.decode_features(fhat)
        from_tokens = model.indices_to_image(indices)
        for i in range(3):
            assert torch.equal(batch[i : i + 1], model.decode_features(fhat[i : i + 1].clone()))
            alone = model.indices_to_image([idx[i : i + 1] for idx in indices])
            assert torch.equal(from_tokens[i : i + 1], alone)
    assert batch.shape == from_tokens.shape == (3, 3, 32, 32)


def test_decoder_in_bfloat16_channels_last_stays_close_to_float32() -> None:
    cfg = VarClipConfig.from_preset("tiny").vqvae
    torch.manual_seed(0)
    model = VQVAE(cfg, with_encoder=False).eval()
    fhat = torch.randn(1, cfg.z_channels, 4, 4)
    with torch.no_grad():
        ref = model.decode_features(fhat)
        model.prepare_decoder(torch.bfloat16, channels_last=True)
        low = model.decode_features(fhat)
    assert low.dtype == torch.float32 and (low - ref).abs().max() < 0.1


def test_vqvae_stage_with_bf16_runs_its_convolutions_in_bf16_and_keeps_float32_weights() -> None:
    from generation.engine.synthetic import make_dataset
    from generation.engine.training.recipe import smoke_model
    from generation.engine.training.vqvae_stage import VQVAESettings, VQVAEStage

    torch.manual_seed(0)
    vqvae = VQVAE(smoke_model().vqvae, with_encoder=True)
    seen: list[torch.dtype] = []
    vqvae.decoder.conv_out.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    settings = VQVAESettings(batch_size=4, warmup=1, restart_every=2, bf16=True)
    stage = VQVAEStage(vqvae, make_dataset(0, 8).images_NHW3, settings, 2, 0, torch.device("cpu"))
    logs = [stage.train_step(k, torch.Generator().manual_seed(k)) for k in range(2)]
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(torch.isfinite(torch.tensor(log["loss"])) for log in logs)
    assert all(p.dtype == torch.float32 for p in vqvae.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm_into_a_map_or_over_its_input_equals_the_module(
    dtype: torch.dtype, channels_last: bool
) -> None:
    g = torch.Generator().manual_seed(5)
    norm = group_norm(12, 4).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(12, generator=g))
        norm.bias.copy_(torch.randn(12, generator=g))
    # Two images with different statistics: GroupNorm's are per image.
    x = torch.randn(2, 12, 9, 7, generator=g) * torch.tensor([3.0, 0.5]).view(2, 1, 1, 1) + 1
    x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        exp = norm(x)
        into = torch.full_like(x, float("nan"))
        got_into = group_norm_into(norm, x, into)
        over = x.clone(memory_format=torch.preserve_format)
        got_over = group_norm_into(norm, over, over)
    if dtype == torch.float32:  # written where asked, from per-channel statistics
        assert got_into is into and got_over is over
        for got in (into, over):
            assert got.stride() == x.stride() and got.dtype == dtype
            assert (got - exp).abs().max() <= 1e-5 * exp.abs().max()
    else:  # the module's own output; the given maps are left alone
        assert torch.equal(got_into, exp) and torch.equal(got_over, exp)
        assert into.isnan().all() and torch.equal(over, x)


@pytest.mark.parametrize("channels_last", [True, False])
def test_resnet_block_at_inference_computes_what_it_computes_in_training(
    channels_last: bool,
) -> None:
    # The inference path writes over its intermediates (and, with a fast conv2, over the first
    # GroupNorm's output); the training path keeps them all. Same numbers either way, whatever
    # the input's layout (the fast conv writes channels_last maps only).
    torch.manual_seed(0)
    for c_in, c_out in ((8, 8), (8, 12)):
        block = ResnetBlock(c_in, c_out, groups=4).eval()
        block.conv2 = FastConv3x3.wrap(block.conv2)
        block.conv2.winograd_u = winograd_weight(block.conv2.weight.detach())
        x = torch.randn(2, c_in, 8, 8)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.enable_grad():
            exp = block(x).detach()  # direct convolutions, nothing in place
        with torch.no_grad():
            assert_close(block(x), exp, rtol=1e-4, atol=1e-5)
            # Maps from a pool hold stale values: every one must be written over in full.
            pool = MapPool()
            for c in {c_in, c_out}:
                stale = torch.empty(2, c, 8, 8, memory_format=torch.channels_last)
                pool.give(stale.fill_(float("nan")))
            assert_close(block(x, pool), exp, rtol=1e-4, atol=1e-5)


def test_map_pool_hands_back_a_map_of_the_same_shape_dtype_and_layout_only() -> None:
    pool = MapPool()
    last = torch.empty(1, 4, 6, 6, memory_format=torch.channels_last)
    first = torch.empty(1, 4, 6, 6)
    pool.give(last, first, first[:, :2])  # a view is not taken in: its storage is shared
    assert pool.take(first.shape, torch.empty(1, 4, 6, 6)) is first
    assert pool.take(last.shape, last) is last
    fresh = pool.take(last.shape, last)  # none left: a new one, in the layout asked for
    assert fresh is not last and fresh.is_contiguous(memory_format=torch.channels_last)
    assert pool.take((1, 2, 6, 6), first).shape == (1, 2, 6, 6)
    pool.give(last)
    assert pool.take(last.shape, last.double()) is not last  # another dtype
