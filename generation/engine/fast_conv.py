"""Cheaper 3x3 convolutions for the VQVAE decoder at inference (float32, CPU or GPU).

The decoder of d16 spends 394 GFLOP per 256 px image in 3x3 convolutions, which oneDNN already
runs at the machine's matmul peak; only fewer multiplications make it faster:

- `winograd_conv3x3`: Winograd's minimal filtering F(m×m, 3×3) (Lavin & Gray, 2016,
  arXiv 1509.09308) with 4x4 output tiles (36 products per tile and channel pair instead of
  144), or 2x2 tiles on small maps (16 instead of 36), where 4x4 tiles would leave the
  channel-mixing products too few rows. The tiles' transforms are matrix products too (the
  input's in two separable passes), and the image is processed in bands of tile rows so that
  they stay in cache. Same convolution, other rounding: 1e-5 to 4e-5 of the output's range
  for 4x4 tiles, below 1e-6 for 2x2, against 2e-6 to 5e-6 for the direct convolution (all
  against float64).
  Maps are channels_last, so that cutting tiles out and putting outputs back move whole
  channel vectors.
- `upsample_conv3x3`: a 3x3 convolution after nearest-neighbour x2 upsampling reads each input
  pixel up to four times with summed weights. Folding those sums into four 2x2 kernels run at
  the low resolution computes the same output with 4·4 = 16 instead of 4·9 = 36 products per
  input pixel and channel pair (only the weight sums round differently).

Both are used only where they pay (`prefer_fast`, `prefer_fold`); the direct convolution stays
the reference.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

# The finite interpolation points of F(m, 3) for each output tile side m (∞ is always added).
# With them the construction below gives Lavin & Gray's F(4, 3) matrices exactly.
_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}


def _poly_times_root(coeffs: list[Fraction], root: Fraction) -> list[Fraction]:
    """Coefficients (lowest power first) of p(x)·(x − root)."""
    out = [Fraction(0)] * (len(coeffs) + 1)
    for i, c in enumerate(coeffs):
        out[i] -= root * c
        out[i + 1] += c
    return out


@functools.cache
def winograd_matrices(tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bᵀ (n, n), G (n, 3) and Aᵀ (tile, n) of F(tile×tile, 3×3), n = tile + 2, as float64,
    built in exact rational arithmetic by Toom-Cook on the points p of `_POINTS` and ∞:

    - Bᵀ's row for p holds the coefficients of ∏(x − q) over the other finite points q, and
      its last row those of the product over all of them;
    - G's row for p is (1, p, p²) / ∏(p − q) over the other finite points, its last (0, 0, 1);
    - Aᵀ's column for p is (1, p, …, p^(tile−1)), its last (0, …, 0, 1).

    Then Aᵀ[(G·g) ⊙ (Bᵀ·d)] is the correlation of d (n values) with g (3 taps)."""
    if tile not in _POINTS:
        raise ValueError(f"Winograd tiles are {sorted(_POINTS)} pixels wide, got {tile}")
    points = [Fraction(p) for p in _POINTS[tile]]
    n = tile + 2
    bt, g = [], []
    at = [[Fraction(0)] * n for _ in range(tile)]
    for i, p in enumerate(points):
        poly, scale = [Fraction(1)], Fraction(1)
        for q in points[:i] + points[i + 1 :]:
            poly, scale = _poly_times_root(poly, q), scale * (p - q)
        bt.append([*poly, Fraction(0)])
        g.append([p**k / scale for k in range(3)])
        for k in range(tile):
            at[k][i] = p**k
    poly = [Fraction(1)]
    for q in points:
        poly = _poly_times_root(poly, q)
    bt.append(poly)
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    at[tile - 1][n - 1] = Fraction(1)

    def matrix(rows: list[list[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)

    return matrix(bt), matrix(g), matrix(at)


# Tiles per band: 4 tile rows at 256 px. On channels_last maps (AVX-512 Xeon, 2026-11-27, one
# conv into a reused output, median of 6): 160 channels at 256² 54.7 ms against 62.6, 63.9 and
# 66.0 for bands of 128, 512 and 64 tiles; at 128² 13.2-13.8 against 15.0-17.5; 320 at 64² even.
# Whole d16 decodes right after sampling, alternating 256 and 512 in one process, were even.
BAND_TILES = 256
# Where the fast paths are used (2 AMD EPYC cores, float32). Narrow layers (the demo model's
# 32-64 channels) make the products too thin to pay. Winograd: at 160 channels it ran 1.48x the
# direct convolution on a 256² map and 1.6x on 128², at 320 channels 1.9x on 64² (4x4 tiles);
# on the Zen 3 EPYC of 2026-11-28 at 320 channels on 32² 9.8 against 15.1 ms (4x4 tiles), and
# at 640 on 16² 9.4-11.3 against 22.6 ms (2x2 tiles; 4x4 tiles, 16 of them, 9.7-10.1). The
# wide layers below 64² keep 0.35 GB of transformed weights at d16 for about 0.13 s per decode
# (from_pretrained hands back the dense weights they replace).
MIN_CHANNELS = 128
MIN_PIXELS = 16 * 16
# 4x4 tiles unless they would give fewer rows than this to the channel-mixing products.
MIN_TILES = 64
# The folded upsampling: 1.7-1.8x the direct convolution where it is used; at 32² (d16's 16² ->
# 32² upsampler, 640 channels: 26 MB of phase kernels) about 0.03 s per decode. Below, folding
# a 3x3 kernel takes longer than the convolution it saves.
FOLD_MIN_PIXELS = 32 * 32


def winograd_tile(pixels: int) -> int:
    """The output tile side for a map of `pixels` pixels per image: 4, or 2 where 4x4 tiles
    would number fewer than MIN_TILES (d16's 16² maps: 16 tiles of 4x4, 64 of 2x2)."""
    return 4 if pixels >= MIN_TILES * 16 else 2


def tile_of(u_PKC: torch.Tensor) -> int:
    """The output tile side of a transformed weight, from its (tile + 2)² positions."""
    n = math.isqrt(u_PKC.shape[0])
    if n * n != u_PKC.shape[0] or n - 2 not in _POINTS:
        raise ValueError(f"not a transformed 3x3 weight: {u_PKC.shape[0]} positions")
    return n - 2


@functools.cache
def _transforms(device: torch.device, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The input transform Bᵀ (n, n), applied along a tile's rows and then along its columns,
    and the output transform Aᵀ⊗Aᵀ (tile², n²), acting on flattened n×n tiles at once.

    Why the input's is separable and the output's is not (Zen 3 AMD EPYC, 2026-11-28, profiles
    of whole d16 decodes, 4x4 tiles): the (36, 36) product took 465 ms per decode (3.5 ms for a
    band of 256 tiles at 160 channels, a product MKL runs at about 30 GFLOP/s), the two passes
    212 ms; for the output, two passes took 219 ms against 165-247 ms for the (16, 36) product."""
    bt, _, at = winograd_matrices(tile)
    return bt.to(device, torch.float32), torch.kron(at, at).to(device, torch.float32)


def winograd_weight(weight_KC33: torch.Tensor, tile: int = 4) -> torch.Tensor:
    """G·w·Gᵀ for every channel pair, as (n², K, C) float32, n = tile + 2 (one float64 product
    with G⊗G, then rounded once)."""
    K, C = weight_KC33.shape[:2]
    g = winograd_matrices(tile)[1].to(weight_KC33.device)
    u_PX = torch.kron(g, g) @ weight_KC33.double().reshape(K * C, 9).T  # X = K·C pairs
    return u_PX.float().view(-1, K, C)


def prefer_fast(pixels: int, weight_KC33: torch.Tensor) -> bool:
    """Whether Winograd pays for a 3x3 float32 weight on a map of `pixels` output pixels."""
    K, C = weight_KC33.shape[:2]
    return weight_KC33.dtype == torch.float32 and min(K, C) >= MIN_CHANNELS and pixels >= MIN_PIXELS


def prefer_fold(pixels: int, weight_KC33: torch.Tensor) -> bool:
    """Whether folding an upsampling conv pays on a map of `pixels` output pixels."""
    return prefer_fast(pixels, weight_KC33) and pixels >= FOLD_MIN_PIXELS


def channels_last(x_BCHW: torch.Tensor) -> torch.Tensor:
    """`x` with channels innermost in memory (no copy when it already is)."""
    return x_BCHW.contiguous(memory_format=torch.channels_last)


def winograd_conv3x3(
    x_BCHW: torch.Tensor,
    u_PKC: torch.Tensor,
    bias_K: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride=1, padding=1) by Winograd F(m×m, 3×3), given
    u = winograd_weight(weight, m) (m, the tile side, follows from u's (m + 2)² positions);
    channels_last in and out (other inputs are converted first). `out`, if given, is a
    channels_last (B, K, H, W) tensor not overlapping `x` that receives the result (it is
    returned).

    Channels innermost make every gather and scatter between the image and its tiles a copy of
    whole C- or K-vectors (with channels outermost they were single floats, and those copies took
    as long as the products). Works band by band (about BAND_TILES tiles) with three scratch
    buffers for all bands: one padded band of input rows, and two used in turn for
    tiles -> tiles transformed along their rows -> and along their columns -> products ->
    output tiles."""
    B, C, H, W = x_BCHW.shape
    K = u_PKC.shape[1]
    m = tile_of(u_PKC)
    n, P = m + 2, u_PKC.shape[0]  # an input tile is n x n: its P positions
    x_BHWC = channels_last(x_BCHW).permute(0, 2, 3, 1)  # a contiguous view
    bt, t_out = _transforms(x_BCHW.device, m)
    bt_by_row = bt.expand(n, n, n)  # the same Bᵀ for each of a tile's n transformed rows
    u_PCK = u_PKC.transpose(1, 2)
    th, tw = -(-H // m), -(-W // m)
    whole_tiles = m * th == H and m * tw == W
    if out is not None and (
        out.shape != (B, K, H, W) or not out.is_contiguous(memory_format=torch.channels_last)
    ):
        raise ValueError(f"out must be a channels_last {(B, K, H, W)} tensor")
    if out is not None and whole_tiles:
        out_BHWK = out.permute(0, 2, 3, 1)
    else:
        out_BHWK = x_BCHW.new_empty(B, m * th, m * tw, K)
    band_rows = max(1, min(th, BAND_TILES // tw))
    # Input rows m·t0−1 .. m·t1 of a band, columns −1 .. m·tw, zero outside the image: the
    # columns outside are never written, rows outside are zeroed where a band has them.
    padded = x_BCHW.new_zeros(B, m * band_rows + 2, m * tw + 2, C)
    size = P * B * band_rows * tw * max(C, K)
    buf_a, buf_b = x_BCHW.new_empty(size), x_BCHW.new_empty(size)
    for t0 in range(0, th, band_rows):
        t1 = min(th, t0 + band_rows)
        first, last = m * t0 - 1, m * t1 + 1
        lo, hi = max(first, 0), min(last, H)
        padded[:, : lo - first].zero_()
        padded[:, lo - first : hi - first, 1 : W + 1].copy_(x_BHWC[:, lo:hi])
        padded[:, hi - first : last - first].zero_()
        rows = padded[:, : last - first]
        tiles = rows.unfold(1, n, m).unfold(2, n, m)  # (B, rows, tw, C, n, n), a view
        T = B * (t1 - t0) * tw  # tiles in this band
        d_PX = buf_a[: P * T * C].view(P, T * C)
        d_PX.view(n, n, *tiles.shape[:4]).copy_(tiles.permute(4, 5, 0, 1, 2, 3))
        # Bᵀ·d·B as two passes: over the row index i of d[i, j, X], then over j.
        rows_PX = torch.mm(bt, d_PX.view(n, n * T * C), out=buf_b[: P * T * C].view(n, -1))
        v_PX = buf_a[: P * T * C].view(P, T * C)
        torch.bmm(bt_by_row, rows_PX.view(n, n, T * C), out=v_PX.view(n, n, T * C))
        m_PTK = buf_b[: P * T * K].view(P, T, K)
        torch.bmm(v_PX.view(P, T, C), u_PCK, out=m_PTK)  # channel mixing
        y = torch.mm(t_out, m_PTK.view(P, T * K), out=buf_a[: m * m * T * K].view(m * m, -1))
        if bias_K is not None:
            y.view(m * m * T, K).add_(bias_K)
        band = out_BHWK[:, m * t0 : m * t1].view(B, t1 - t0, m, tw, m, K)
        band.copy_(y.view(m, m, B, t1 - t0, tw, K).permute(2, 3, 0, 4, 1, 5))
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
    Winograd at inference once `winograd_u` holds its transformed weight ((tile + 2)²/9 times
    the weight's size; `prepare` sets it where `prefer_fast` says it pays)."""

    winograd_u: torch.Tensor | None = None

    @classmethod
    def wrap(cls, conv: nn.Conv2d) -> FastConv3x3:
        """The same convolution, sharing `conv`'s weight and bias (no copy)."""
        with torch.device("meta"):
            fast = cls(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        fast.weight = conv.weight
        fast.bias = conv.bias
        return fast

    def prepare(self, pixels: int, enabled: bool) -> bool:
        """Run by Winograd on maps of `pixels` output pixels per image where `enabled` and it
        pays (`prefer_fast`), with the tile `winograd_tile` picks; else directly. Returns
        whether Winograd runs."""
        with torch.no_grad():
            weight = self.weight.detach()
            fast = enabled and prefer_fast(pixels, weight)
            self.winograd_u = winograd_weight(weight, winograd_tile(pixels)) if fast else None
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
