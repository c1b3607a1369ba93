"""Cheaper 3x3 convolutions for the VQVAE decoder at inference (float32, CPU or GPU).

The decoder of d16 spends 394 GFLOP per 256 px image in 3x3 convolutions, which oneDNN already
runs at the machine's matmul peak; only fewer multiplications make it faster:

- `winograd_conv3x3`: Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016,
  arXiv 1509.09308): each 4x4 output tile costs 36 products per channel pair instead of 144.
  The tiles' transforms are matrix products too (the input's in two separable passes), and the
  image is processed in bands of tile rows so that they stay in cache. Same convolution, other
  rounding: 1e-5 to 4e-5 of the output's range against 2e-6 to 5e-6 for the direct convolution
  (both against float64).
  Maps are channels_last, so that cutting tiles out and putting outputs back move whole
  channel vectors.
- `upsample_conv3x3`: a 3x3 convolution after nearest-neighbour x2 upsampling reads each input
  pixel up to four times with summed weights. Folding those sums into four 2x2 kernels run at
  the low resolution computes the same output with 4·4 = 16 instead of 4·9 = 36 products per
  input pixel and channel pair (only the weight sums round differently).

Both are used only where they pay (`prefer_fast`); the direct convolution stays the reference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

# Winograd F(4, 3) on the points 0, ±1, ±2 and ∞.
_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)
TILE = 4  # output pixels per tile side
# Tiles per band: 4 tile rows at 256 px. On channels_last maps (AVX-512 Xeon, 2026-11-27, one
# conv into a reused output, median of 6): 160 channels at 256² 54.7 ms against 62.6, 63.9 and
# 66.0 for bands of 128, 512 and 64 tiles; at 128² 13.2-13.8 against 15.0-17.5; 320 at 64² even.
# Whole d16 decodes right after sampling, alternating 256 and 512 in one process, were even.
BAND_TILES = 256
# Where the fast paths are used (2 AMD EPYC cores, float32): at 160 channels Winograd ran 1.48x
# the direct convolution on a 256² map and 1.6x on 128²; at 320 channels 1.9x on 64². Narrow
# layers (the demo model's 32-64 channels) make its products too thin to pay; maps below 64²
# are cheap, and their wide layers' transformed weights would cost memory (0.6 GB at d16's
# 16² level) for little time. At 32² (Zen 3 EPYC, 2026-11-28) Winograd and the fold would
# take the level's convolutions from 164 to about 80 ms of a 2.3 s d16 decode, for 0.13 GB
# more resident memory (peak RSS after three images 2.83 against 2.69 GB): not taken.
MIN_CHANNELS = 128
MIN_PIXELS = 64 * 64


@functools.cache
def _transforms(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The input transform Bᵀ (6, 6), applied along a tile's rows and then along its columns,
    and the output transform Aᵀ⊗Aᵀ (16, 36), acting on flattened 6x6 tiles at once.

    Why the input's is separable and the output's is not (Zen 3 AMD EPYC, 2026-11-28, profiles
    of whole d16 decodes): the (36, 36) product took 465 ms per decode (3.5 ms for a band of
    256 tiles at 160 channels, a product MKL runs at about 30 GFLOP/s), the two passes 212 ms;
    for the output, two passes took 219 ms against 165-247 ms for the (16, 36) product."""
    bt = torch.tensor(_BT, dtype=torch.float32, device=device)
    at = torch.tensor(_AT, dtype=torch.float64)
    return bt, torch.kron(at, at).to(device, torch.float32)


def winograd_weight(weight_KC33: torch.Tensor) -> torch.Tensor:
    """G·w·Gᵀ for every channel pair, as (36, K, C) float32 (one float64 product with G⊗G)."""
    K, C = weight_KC33.shape[:2]
    g = torch.tensor(_G, dtype=torch.float64, device=weight_KC33.device)
    u_36X = torch.kron(g, g) @ weight_KC33.double().reshape(K * C, 9).T  # X = K·C pairs
    return u_36X.float().view(36, K, C)


def prefer_fast(pixels: int, weight_KC33: torch.Tensor) -> bool:
    """Whether a fast path pays for a 3x3 float32 weight on a map of `pixels` output pixels."""
    K, C = weight_KC33.shape[:2]
    return weight_KC33.dtype == torch.float32 and min(K, C) >= MIN_CHANNELS and pixels >= MIN_PIXELS


def channels_last(x_BCHW: torch.Tensor) -> torch.Tensor:
    """`x` with channels innermost in memory (no copy when it already is)."""
    return x_BCHW.contiguous(memory_format=torch.channels_last)


def winograd_conv3x3(
    x_BCHW: torch.Tensor,
    u_36KC: torch.Tensor,
    bias_K: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride=1, padding=1) by Winograd F(4x4, 3x3), given
    u = winograd_weight(weight); channels_last in and out (other inputs are converted first).
    `out`, if given, is a channels_last (B, K, H, W) tensor not overlapping `x` that receives
    the result (it is returned).

    Channels innermost make every gather and scatter between the image and its tiles a copy of
    whole C- or K-vectors (with channels outermost they were single floats, and those copies took
    as long as the products). Works band by band (about BAND_TILES tiles) with three scratch
    buffers for all bands: one padded band of input rows, and two used in turn for
    tiles -> tiles transformed along their rows -> and along their columns -> products ->
    output tiles."""
    B, C, H, W = x_BCHW.shape
    K = u_36KC.shape[1]
    x_BHWC = channels_last(x_BCHW).permute(0, 2, 3, 1)  # a contiguous view
    bt, t_out = _transforms(x_BCHW.device)
    bt_by_row = bt.expand(6, 6, 6)  # the same Bᵀ for each of a tile's 6 transformed rows
    u_PCK = u_36KC.transpose(1, 2)  # P = the 36 positions in a 6x6 tile
    th, tw = -(-H // TILE), -(-W // TILE)
    whole_tiles = TILE * th == H and TILE * tw == W
    if out is not None and (
        out.shape != (B, K, H, W) or not out.is_contiguous(memory_format=torch.channels_last)
    ):
        raise ValueError(f"out must be a channels_last {(B, K, H, W)} tensor")
    if out is not None and whole_tiles:
        out_BHWK = out.permute(0, 2, 3, 1)
    else:
        out_BHWK = x_BCHW.new_empty(B, TILE * th, TILE * tw, K)
    band_rows = max(1, min(th, BAND_TILES // tw))
    # Input rows 4·t0−1 .. 4·t1 of a band, columns −1 .. 4·tw, zero outside the image: the
    # columns outside are never written, rows outside are zeroed where a band has them.
    padded = x_BCHW.new_zeros(B, TILE * band_rows + 2, TILE * tw + 2, C)
    size = 36 * B * band_rows * tw * max(C, K)
    buf_a, buf_b = x_BCHW.new_empty(size), x_BCHW.new_empty(size)
    for t0 in range(0, th, band_rows):
        t1 = min(th, t0 + band_rows)
        first, last = TILE * t0 - 1, TILE * t1 + 1
        lo, hi = max(first, 0), min(last, H)
        padded[:, : lo - first].zero_()
        padded[:, lo - first : hi - first, 1 : W + 1].copy_(x_BHWC[:, lo:hi])
        padded[:, hi - first : last - first].zero_()
        rows = padded[:, : last - first]
        tiles = rows.unfold(1, 6, TILE).unfold(2, 6, TILE)  # (B, n, tw, C, 6, 6), a view
        T = B * (t1 - t0) * tw  # tiles in this band
        d_PX = buf_a[: 36 * T * C].view(36, T * C)
        d_PX.view(6, 6, *tiles.shape[:4]).copy_(tiles.permute(4, 5, 0, 1, 2, 3))
        # Bᵀ·d·B as two passes: over the row index i of d[i, j, X], then over j.
        rows_PX = torch.mm(bt, d_PX.view(6, 6 * T * C), out=buf_b[: 36 * T * C].view(6, -1))
        v_PX = buf_a[: 36 * T * C].view(36, T * C)
        torch.bmm(bt_by_row, rows_PX.view(6, 6, T * C), out=v_PX.view(6, 6, T * C))
        m_PTK = buf_b[: 36 * T * K].view(36, T, K)
        torch.bmm(v_PX.view(36, T, C), u_PCK, out=m_PTK)  # channel mixing
        y = torch.mm(t_out, m_PTK.view(36, T * K), out=buf_a[: 16 * T * K].view(16, T * K))
        if bias_K is not None:
            y.view(16 * T, K).add_(bias_K)
        band = out_BHWK[:, TILE * t0 : TILE * t1].view(B, t1 - t0, TILE, tw, TILE, K)
        band.copy_(y.view(TILE, TILE, B, t1 - t0, tw, K).permute(2, 3, 0, 4, 1, 5))
    result = out_BHWK.permute(0, 3, 1, 2)
    if out is None:
        return result if whole_tiles else channels_last(result[:, :, :H, :W])
    return out if whole_tiles else out.copy_(result[:, :, :H, :W])


def upsample_weight(weight_KC33: torch.Tensor) -> torch.Tensor:
    """The four 2x2 phase kernels (4K, C, 2, 2) of a 3x3 kernel applied after nearest x2.

    Output row 2i reads input rows i−1 (tap 0) and i (taps 1 and 2); row 2i+1 reads rows i
    (taps 0 and 1) and i+1 (tap 2); the same for columns. R[a] sums the taps of phase a."""
    r = weight_KC33.new_tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])  # (2, 2, 3)
    return torch.cat([r[a] @ weight_KC33 @ r[b].T for a in (0, 1) for b in (0, 1)])


def upsample_conv3x3(
    x_BCHW: torch.Tensor, phases_4KC22: torch.Tensor, bias_K: torch.Tensor | None
) -> torch.Tensor:
    """conv3x3(nearest-upsample-x2(x), padding 1) computed at the low resolution, given
    phases = upsample_weight(weight); channels_last in and out (others are converted first)."""
    B, _, H, W = x_BCHW.shape
    K = phases_4KC22.shape[0] // 4
    bias = None if bias_K is None else bias_K.repeat(4)
    # The 2x2 window at (i, j) of the once-padded input covers rows i−1, i and columns j−1, j.
    padded = channels_last(F.pad(channels_last(x_BCHW), (1, 1, 1, 1)))
    y = channels_last(F.conv2d(padded, phases_4KC22, bias))  # (B, 4K, H+1, W+1)
    y_BHWPK = y.permute(0, 2, 3, 1).view(B, H + 1, W + 1, 4, K)
    out = x_BCHW.new_empty(B, H, 2, W, 2, K)  # output row 2i+a, column 2j+b, channels last
    for p, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[:, :, a, :, b] = y_BHWPK[:, a : a + H, b : b + W, p]
    return out.view(B, 2 * H, 2 * W, K).permute(0, 3, 1, 2)


class FastConv3x3(nn.Conv2d):
    """A stride-1, padding-1 3x3 `nn.Conv2d` (the same parameters and state dict) that runs by
    Winograd at inference once `winograd_u` holds its transformed weight (4x the weight's
    size; the decoder sets it where `prefer_fast` says it pays)."""

    winograd_u: torch.Tensor | None = None

    @classmethod
    def wrap(cls, conv: nn.Conv2d) -> FastConv3x3:
        """The same convolution, sharing `conv`'s weight and bias (no copy)."""
        with torch.device("meta"):
            fast = cls(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        fast.weight = conv.weight
        fast.bias = conv.bias
        return fast

    def forward(self, x_BCHW: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution; by Winograd into `out` (see winograd_conv3x3) where it runs, else
        the direct convolution into a fresh tensor (`out` unused)."""
        u = self.winograd_u
        if u is None or torch.is_grad_enabled() or x_BCHW.dtype != u.dtype:
            return super().forward(x_BCHW)
        return winograd_conv3x3(x_BCHW, u, self.bias, out)


def is_plain_conv3x3(module: nn.Module) -> bool:
    """A dense 3x3 convolution with stride 1 and padding 1 (what FastConv3x3 replaces)."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )
