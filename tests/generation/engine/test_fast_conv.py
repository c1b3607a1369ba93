"""The decoder's fast convolutions: Winograd F(m×m, 3×3) (4x4 and 2x2 output tiles) and the
upsampling conv folded to the low resolution compute the same convolutions as F.conv2d (within
float32 rounding), and the decoder uses them only where asked and where they pay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from generation.engine import fast_conv
from generation.engine.checkpoint import MappedPages
from generation.engine.config import VQVAEConfig
from generation.engine.fast_conv import (
    FastConv3x3,
    tile_of,
    upsample_conv3x3,
    upsample_weight,
    winograd_conv3x3,
    winograd_matrices,
    winograd_tile,
    winograd_weight,
)
from generation.engine.pipeline import TextToImagePipeline
from generation.engine.vqvae import VQVAE, Upsample

SHAPES = [  # (B, C, K, H, W): sizes that are and are not multiples of the 4-pixel tile
    (1, 5, 7, 9, 11),
    (2, 16, 8, 13, 6),
    (1, 8, 8, 4, 4),
    (3, 4, 12, 1, 2),
    (1, 32, 24, 40, 36),  # more than one band of tile rows
]


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)


# Lavin & Gray's F(4x4, 3x3) matrices (arXiv 1509.09308, section 4.2), as published.
LAVIN_BT = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
LAVIN_G = [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
]
LAVIN_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


def test_the_constructed_f4x4_matrices_are_lavin_and_grays() -> None:
    bt, g, at = winograd_matrices(4)
    assert torch.equal(bt, torch.tensor(LAVIN_BT, dtype=torch.float64))
    assert torch.allclose(g, torch.tensor(LAVIN_G, dtype=torch.float64), rtol=0, atol=1e-16)
    assert torch.equal(at, torch.tensor(LAVIN_AT, dtype=torch.float64))


@pytest.mark.parametrize("tile", [2, 4])
def test_the_constructed_matrices_compute_a_correlation(tile: int) -> None:
    # Aᵀ[(G·g) ⊙ (Bᵀ·d)] = the correlation of d with g, for any d and g (float64).
    bt, g_mat, at = winograd_matrices(tile)
    gen = torch.Generator().manual_seed(tile)
    d, g = (
        torch.randn(tile + 2, 50, generator=gen, dtype=torch.float64),
        torch.randn(3, 50, generator=gen, dtype=torch.float64),
    )
    exp = torch.stack([(d[i : i + 3] * g).sum(0) for i in range(tile)])
    torch.testing.assert_close(at @ ((g_mat @ g) * (bt @ d)), exp, rtol=1e-12, atol=1e-12)
    assert bt.shape == (tile + 2, tile + 2) and g_mat.shape == (tile + 2, 3)


def test_unsupported_tiles_and_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="tiles are"):
        winograd_matrices(3)
    with pytest.raises(ValueError, match="not a transformed"):
        tile_of(torch.empty(9, 4, 4))  # a 3x3 kernel's 9 taps, not (tile + 2)² positions
    assert tile_of(winograd_weight(torch.randn(4, 4, 3, 3), 2)) == 2


def test_tiles_are_4x4_unless_too_few() -> None:
    # d16's maps: 16² would give 16 tiles of 4x4, too few rows for the products; 2x2 give 64.
    assert winograd_tile(16 * 16) == 2
    assert [winograd_tile(s * s) for s in (32, 64, 256)] == [4, 4, 4]


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_computes_the_3x3_convolution(
    shape: tuple[int, ...], with_bias: bool, tile: int
) -> None:
    B, C, K, H, W = shape
    g = torch.Generator().manual_seed(sum(shape))
    x, w = torch.randn(B, C, H, W, generator=g), torch.randn(K, C, 3, 3, generator=g)
    b = torch.randn(K, generator=g) if with_bias else None
    u = winograd_weight(w, tile)
    assert u.shape == ((tile + 2) ** 2, K, C)
    got = winograd_conv3x3(x, u, b)
    exp = reference(x, w, b)
    assert got.shape == exp.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    # Float32 Winograd rounds differently from the direct sum: within ~1e-5 of the range with
    # 4x4 tiles, closer with 2x2 (smaller transform coefficients).
    bound = {4: 1e-5, 2: 2e-6}[tile]
    assert (got.double() - exp).abs().max() <= bound * exp.abs().max()
    # A channels_last input gives the same values, bit for bit.
    assert torch.equal(winograd_conv3x3(x.contiguous(memory_format=torch.channels_last),
                                        u, b), got)  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_winograd_writes_into_a_given_output(shape: tuple[int, ...]) -> None:
    B, C, K, H, W = shape
    g = torch.Generator().manual_seed(3 + sum(shape))
    x, w = torch.randn(B, C, H, W, generator=g), torch.randn(K, C, 3, 3, generator=g)
    u, b = winograd_weight(w), torch.randn(K, generator=g)
    out = torch.full((B, K, H, W), float("nan")).contiguous(memory_format=torch.channels_last)
    assert winograd_conv3x3(x, u, b, out) is out
    assert torch.equal(out, winograd_conv3x3(x, u, b))
    with pytest.raises(ValueError, match="channels_last"):
        winograd_conv3x3(x, u, b, torch.empty(B, K, H, W))  # channels first
    with pytest.raises(ValueError, match="channels_last"):
        winograd_conv3x3(x, u, b, out[:, :, 1:].contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("shape", SHAPES)
def test_the_folded_upsampling_conv_equals_upsample_then_conv(shape: tuple[int, ...]) -> None:
    B, C, K, H, W = shape
    g = torch.Generator().manual_seed(7 + sum(shape))
    x, w = torch.randn(B, C, H, W, generator=g), torch.randn(K, C, 3, 3, generator=g)
    b = torch.randn(K, generator=g)
    got = upsample_conv3x3(x, upsample_weight(w), b)
    exp = reference(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b)
    assert got.shape == (B, K, 2 * H, 2 * W)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got.double() - exp).abs().max() <= 1e-5 * exp.abs().max()


def test_a_fast_conv_shares_the_parameters_and_runs_winograd_once_given_its_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv = nn.Conv2d(8, 8, 3, 1, 1)
    fast = FastConv3x3.wrap(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    assert list(fast.state_dict()) == list(conv.state_dict())
    calls: list[int] = []
    real = fast_conv.winograd_conv3x3
    monkeypatch.setattr(fast_conv, "winograd_conv3x3", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(1, 8, 16, 16)
    with torch.inference_mode():
        fast(x)  # no transformed weight: the direct convolution
    assert calls == []
    fast.winograd_u = winograd_weight(conv.weight.detach())
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), conv(x), rtol=1e-4, atol=1e-5)
        out = torch.empty_like(x, memory_format=torch.channels_last)
        assert fast(x, out=out) is out
    assert calls == [1, 1]
    fast(x)  # with autograd on (training) the direct convolution runs
    assert calls == [1, 1]


def test_a_fast_conv_chooses_its_tile_or_the_direct_convolution_by_map_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fast_conv, "MIN_CHANNELS", 1)
    conv = nn.Conv2d(6, 5, 3, 1, 1)
    fast = FastConv3x3.wrap(conv)
    x = torch.randn(2, 6, 16, 16)
    with torch.inference_mode():
        exp = conv(x)
        assert fast.prepare(8 * 8, enabled=True) is False  # under MIN_PIXELS: direct
        assert fast.winograd_u is None
        assert fast.prepare(64 * 64, enabled=False) is False  # not asked for
        assert fast.winograd_u is None
        for pixels, tile in ((16 * 16, 2), (32 * 32, 4), (64 * 64, 4)):
            assert fast.prepare(pixels, enabled=True)
            assert fast.winograd_u is not None and tile_of(fast.winograd_u) == tile
            torch.testing.assert_close(fast(x), exp, rtol=1e-4, atol=1e-5)
        monkeypatch.setattr(fast_conv, "MIN_CHANNELS", 8)  # narrower than that: direct
        assert fast.prepare(64 * 64, enabled=True) is False and fast.winograd_u is None


def small_vqvae(fast: bool) -> VQVAE:
    cfg = VQVAEConfig(
        vocab_size=16, z_channels=4, ch=16, ch_mult=(1, 2), num_res_blocks=1,
        patch_nums=(1, 2, 4), using_sa=False, using_mid_sa=True, norm_groups=4,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VQVAE(cfg, with_encoder=False).eval()
    model.prepare_decoder(torch.float32, channels_last=False, fast_convs=fast)
    return model


def test_the_fast_decoder_decodes_what_the_plain_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thresholds down so that this small decoder takes every fast path (its 4² maps get 2x2
    # tiles, its 8² ones 4x4).
    monkeypatch.setattr(fast_conv, "MIN_CHANNELS", 1)
    monkeypatch.setattr(fast_conv, "MIN_PIXELS", 1)
    monkeypatch.setattr(fast_conv, "FOLD_MIN_PIXELS", 1)
    monkeypatch.setattr(fast_conv, "MIN_TILES", 4)
    plain, fast = small_vqvae(False), small_vqvae(True)
    convs = [m for m in fast.decoder.modules() if isinstance(m, FastConv3x3)]
    upsamples = [m for m in fast.decoder.modules() if isinstance(m, Upsample)]
    assert len(convs) >= 5 and all(m.winograd_u is not None for m in convs)
    assert {tile_of(m.winograd_u) for m in convs if m.winograd_u is not None} == {2, 4}
    assert upsamples and all(m.phases is not None for m in upsamples)
    assert not any(isinstance(m, FastConv3x3) for m in plain.decoder.modules())
    fhat = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = plain.decode_features(fhat), fast.decode_features(fhat)
    assert (a - b).abs().max() < 1e-4
    # The fast paths take channels_last maps, so the fast decoder runs channels_last throughout.
    assert fast.decode_channels_last and not plain.decode_channels_last
    # Turning them off again drops the transformed weights and gives the plain decoder back.
    fast.prepare_decoder(torch.float32, channels_last=False, fast_convs=False)
    assert all(m.winograd_u is None for m in convs) and upsamples[0].phases is None
    with torch.inference_mode():
        assert torch.equal(fast.decode_features(fhat), a)
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_fast_paths_are_chosen_by_width_and_map_size() -> None:
    # At the default thresholds this decoder is too narrow for any of them.
    model = small_vqvae(True)
    assert model.fast_convs
    convs = [m for m in model.decoder.modules() if isinstance(m, FastConv3x3)]
    assert convs and all(m.winograd_u is None for m in convs)
    sizes = {type(m).__name__: p for m, p in model.decoder.map_sizes(16)}
    assert sizes["Upsample"] == 32 * 32  # output pixels of the one upsampler (16 -> 32)


def test_from_pretrained_uses_fast_convs_for_a_float32_cpu_decoder_only(
    tiny_checkpoint_dir: Path,
) -> None:
    assert TextToImagePipeline.from_pretrained(tiny_checkpoint_dir).vqvae.fast_convs
    off = TextToImagePipeline.from_pretrained(tiny_checkpoint_dir, fast_convs=False)
    assert not off.vqvae.fast_convs
    bf16 = TextToImagePipeline.from_pretrained(tiny_checkpoint_dir, decoder_dtype=torch.bfloat16)
    assert not bf16.vqvae.fast_convs


def test_from_pretrained_hands_back_the_weights_the_fast_convs_replace(
    tiny_checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thresholds down so that the tiny decoder's convs and upsamplers all run fast.
    for name in ("MIN_CHANNELS", "MIN_PIXELS", "FOLD_MIN_PIXELS"):
        monkeypatch.setattr(fast_conv, name, 1)
    released: list[int] = []
    release = MappedPages.release_tensors

    def counting(self: MappedPages, tensors: list[torch.Tensor]) -> int:
        released.append(release(self, list(tensors)))
        return released[-1]

    monkeypatch.setattr(MappedPages, "release_tensors", counting)
    pipe = TextToImagePipeline.from_pretrained(tiny_checkpoint_dir)
    replaced = pipe.vqvae.replaced_weights()
    fast = [m for m in pipe.vqvae.decoder.modules() if isinstance(m, FastConv3x3)]
    ups = [m for m in pipe.vqvae.decoder.modules() if isinstance(m, Upsample)]
    assert len(replaced) == len(fast) + len(ups) > 0
    # All of them were mapped from the file, and their pages went back at load.
    assert released == [len(replaced)]
    # Read again (saving does), they come back from the file intact.
    on_disk = load_file(str(tiny_checkpoint_dir / "vqvae.safetensors"))
    for key, value in pipe.vqvae.state_dict().items():
        if key.startswith("decoder."):
            assert torch.equal(value, on_disk[key]), key
    # Turning the fast paths off reads them again for the direct convolutions.
    pipe.vqvae.prepare_decoder(torch.float32, channels_last=False, fast_convs=False)
    assert pipe.vqvae.replaced_weights() == []
