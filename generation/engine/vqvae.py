"""Multi-scale VQVAE of VAR (Tian et al., 2024, arXiv 2404.02905): the LDM/taming "vq-f16"
encoder/decoder (Rombach et al., 2022) around the multi-scale residual quantizer.

Letters: B batch, C channels, H/W image side, h/w latent side, Cvae latent channels.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.config import VQVAEConfig
from generation.engine.fast_conv import (
    FastConv3x3,
    is_plain_conv3x3,
    prefer_fold,
    upsample_conv3x3,
    upsample_weight,
)
from generation.engine.quantizer import CodebookUsage, MultiScaleQuantizer


class OneImageDecoder(typing.Protocol):
    """What decodes one image's f_hat (1, Cvae, h, w) in place of `VQVAE.decode_batch`."""

    def __call__(self, fhat_1Chw: torch.Tensor) -> torch.Tensor:
        """Image (1, 3, H, W) in [-1, 1], float32."""
        ...

    def reset(self) -> None:
        """Forget what was captured: the decoder's weights or layout have changed."""
        ...


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm(groups, eps 1e-6) with affine parameters, as in the LDM autoencoders (32)."""
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


def group_norm_into(norm: nn.GroupNorm, x_BCHW: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`norm(x)` (inference only), written into `out` in float32; `out` may be `x` itself.

    torch's GroupNorm has no kernel that writes into a given tensor (its `out=` form computes
    into a fresh one and copies), so for float32 this computes it from per-channel statistics
    (one pass; the channels_last batch-norm statistics kernel, per image), combined into the
    groups' mean and variance, then one fused multiply-add over the map. Against the module:
    within 1e-5 of the output's range (another summation order). Other dtypes get the module's
    fresh output (`out` untouched): copying it over would be one more pass for nothing."""
    if x_BCHW.dtype != torch.float32:
        return norm(x_BCHW)  # type: ignore[no-any-return]
    B, C = x_BCHW.shape[:2]
    G = norm.num_groups
    running = (x_BCHW.new_zeros(C), x_BCHW.new_ones(C))  # updated with momentum 0: unchanged
    # Per image: the kernel pools its batch, and GroupNorm's statistics are per image.
    stats = [torch.batch_norm_update_stats(x_BCHW[i : i + 1], *running, 0.0) for i in range(B)]
    mean_BGc = torch.stack([m for m, _ in stats]).view(B, G, C // G)
    var_BGc = torch.stack([v for _, v in stats]).view(B, G, C // G)  # biased, per channel
    mean_BG1 = mean_BGc.mean(2, keepdim=True)
    var_BG1 = (var_BGc + (mean_BGc - mean_BG1).square()).mean(2, keepdim=True)
    scale_BGc = (var_BG1 + norm.eps).rsqrt() * norm.weight.view(G, C // G)
    shift_BGc = norm.bias.view(G, C // G) - mean_BG1 * scale_BGc
    view = (B, C, 1, 1)
    return torch.addcmul(shift_BGc.reshape(view), x_BCHW, scale_BGc.reshape(view), out=out)


def is_channels_last(x: torch.Tensor) -> bool:
    """A dense 4-d tensor with channels innermost (a 1x1 map counts as channels first)."""
    return (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


class MapPool:
    """Feature maps reused within one decode: a map handed back once nothing reads it again is
    handed out for the next map of its shape, dtype and layout instead of fresh memory.

    Fresh memory is not free: the decoder's 160-channel 256² maps (42 MB) are mapped afresh by
    glibc for each allocation and zeroed page by page by the kernel at first touch, and in the
    VMs we measured that zeroing ran at about 1 GB/s: 0.3-0.4 s of system time per d16 decode
    on the AVX-512 Xeon of 2026-11-27 (`perf`: clear_page). A GroupNorm into a fresh 256² map
    took 46 ms, into a reused one 11 ms. The pool lives for one decode, so the process keeps
    nothing between requests."""

    def __init__(self) -> None:
        self._free: dict[tuple[object, ...], list[torch.Tensor]] = {}

    @staticmethod
    def _key(shape: Sequence[int], like: torch.Tensor, last: bool) -> tuple[object, ...]:
        return (tuple(shape), like.dtype, like.device, last)

    def take(
        self, shape: Sequence[int], like: torch.Tensor, channels_last: bool | None = None
    ) -> torch.Tensor:
        """A map of `shape` in `like`'s dtype and device (contents undefined), channels_last
        if asked, else in `like`'s layout."""
        last = is_channels_last(like) if channels_last is None else channels_last
        free = self._free.get(self._key(shape, like, last))
        if free:
            return free.pop()
        layout = torch.channels_last if last else torch.contiguous_format
        return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout)

    def give(self, *maps: torch.Tensor) -> None:
        """Hand back maps that nothing will read again (dense ones only; views are ignored)."""
        for m in maps:
            last = is_channels_last(m)
            dense = last or m.is_contiguous()
            if dense and m.storage_offset() == 0 and m.untyped_storage().nbytes() == m.nbytes:
                self._free.setdefault(self._key(m.shape, m, last), []).append(m)


class ResnetBlock(nn.Module):
    """Two GroupNorm-SiLU-conv3x3 stages; a 1x1 `nin_shortcut` only when the width changes."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2, self.conv2 = group_norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x_BCHW: torch.Tensor, pool: MapPool | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():  # training keeps every intermediate for the backward pass
            h = self.conv1(F.silu(self.norm1(x_BCHW)))
            h = self.conv2(F.silu(self.norm2(h)))
            skip = x_BCHW if self.nin_shortcut is None else self.nin_shortcut(x_BCHW)
            return skip + h  # type: ignore[no-any-return]
        # At inference each step writes over a map nothing reads again where it can (SiLU and
        # the second GroupNorm over their input, a fast conv into a given map) and takes the
        # others from `pool`; at most three full-size maps live at once.
        pool = pool or MapPool()
        a = F.silu(group_norm_into(self.norm1, x_BCHW, pool.take(x_BCHW.shape, x_BCHW)), True)
        b = conv_into(self.conv1, a, pool)
        b = F.silu(group_norm_into(self.norm2, b, b), inplace=True)
        h = conv_into(self.conv2, b, pool, into=a if a.shape == b.shape else None)
        pool.give(b)
        if h is not a:
            pool.give(a)
        if self.nin_shortcut is None:
            return h.add_(x_BCHW)
        skip = self.nin_shortcut(x_BCHW)
        h.add_(skip)
        pool.give(skip)
        return h


def conv_into(
    conv: nn.Module, x_BCHW: torch.Tensor, pool: MapPool, into: torch.Tensor | None = None
) -> torch.Tensor:
    """conv(x) written into `into` (if channels_last) or a channels_last map from `pool` where
    the conv can write into a given map (a FastConv3x3 running Winograd); otherwise the conv's
    own fresh output."""
    if not (isinstance(conv, FastConv3x3) and conv.winograd_u is not None):
        return conv(x_BCHW)  # type: ignore[no-any-return]
    if into is None or not into.is_contiguous(memory_format=torch.channels_last):
        B, _, H, W = x_BCHW.shape
        into = pool.take((B, conv.out_channels, H, W), x_BCHW, channels_last=True)
    return conv(x_BCHW, out=into)  # type: ignore[no-any-return]


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions with one fused 1x1 `qkv` conv."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        qkv_B3CN = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W)  # B(3C)HW -> B3C(HW)
        q, k, v = qkv_B3CN.transpose(2, 3).unsqueeze(2).unbind(1)  # each B1(HW)C
        # SDPA's default scale is C^-1/2, the reference's single-head scale.
        out_B1NC = F.scaled_dot_product_attention(q, k, v)
        out_BCHW = out_B1NC.squeeze(1).transpose(1, 2).reshape(B, C, H, W)  # B(HW)C -> BCHW
        proj_BCHW: torch.Tensor = self.proj_out(out_BCHW)
        return proj_BCHW.add_(x_BCHW) if not torch.is_grad_enabled() else x_BCHW + proj_BCHW


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(F.pad(x_BCHW, (0, 1, 0, 1)))
        return out


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv; at inference, once `prepare_decoder` has set
    `phases`, the same conv folded into four 2x2 convs at the low resolution (fast_conv.py)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.phases: torch.Tensor | None = None  # upsample_weight(conv.weight) when fast

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        phases = self.phases
        if phases is not None and not torch.is_grad_enabled() and x_BCHW.dtype == phases.dtype:
            return upsample_conv3x3(x_BCHW, phases, self.conv.bias)
        out: torch.Tensor = self.conv(F.interpolate(x_BCHW, scale_factor=2.0, mode="nearest"))
        return out


class Level(nn.Module):
    """One resolution level: ResnetBlocks, optional attention after each, optional resampler."""

    def __init__(self, widths: list[tuple[int, int]], attention: bool, groups: int):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(c_in, c_out, groups) for c_in, c_out in widths])
        self.attn = nn.ModuleList(
            [AttnBlock(c_out, groups) for _, c_out in widths] if attention else []
        )
        self.downsample: nn.Module | None = None  # set by the Encoder on all but the last level
        self.upsample: nn.Module | None = None  # set by the Decoder on all but the first level

    def blocks(self, h: torch.Tensor, pool: MapPool | None = None) -> torch.Tensor:
        """Run the ResnetBlocks, each followed by its attention block if any; with a `pool`
        (inference), each block's input goes back to it once the block is done."""
        for i, block in enumerate(self.block):
            out = block(h, pool)
            if len(self.attn) > 0:
                out = self.attn[i](out)
            if pool is not None:
                pool.give(h)
            h = out
        return h


class Mid(nn.Module):
    """ResnetBlock, attention, ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, attention: bool, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1: nn.Module = AttnBlock(channels, groups) if attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block_2(self.attn_1(self.block_1(h)))
        return out


class Encoder(nn.Module):
    """Image (B, 3, H, W) -> latent (B, Cvae, H/f, W/f)."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        self.down = nn.ModuleList()
        c_in = cfg.ch
        for i, c_out in enumerate(widths):
            pairs = [(c_in if j == 0 else c_out, c_out) for j in range(cfg.num_res_blocks)]
            level = Level(pairs, attention=cfg.using_sa and i == last, groups=cfg.norm_groups)
            if i != last:
                level.downsample = Downsample(c_out)
            self.down.append(level)
            c_in = c_out
        self.mid = Mid(c_in, cfg.using_mid_sa, cfg.norm_groups)
        self.norm_out = group_norm(c_in, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c_in, cfg.z_channels, 3, 1, 1)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(img_B3HW)
        for level in typing.cast(list[Level], list(self.down)):
            h = level.blocks(h)
            if level.downsample is not None:
                h = level.downsample(h)
        h = F.silu(self.norm_out(self.mid(h)), inplace=not torch.is_grad_enabled())
        z_BChw: torch.Tensor = self.conv_out(h)
        return z_BChw


class Decoder(nn.Module):
    """Latent (B, Cvae, h, w) -> image (B, 3, H, W); `up[i]` is stored in resolution order."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, 1, 1)
        self.mid = Mid(widths[-1], cfg.using_mid_sa, cfg.norm_groups)
        levels: list[nn.Module] = []
        c_in = widths[-1]
        for i in reversed(range(len(widths))):  # built from the lowest resolution upwards
            c_out = widths[i]
            pairs = [(c_in if j == 0 else c_out, c_out) for j in range(cfg.num_res_blocks + 1)]
            level = Level(pairs, attention=cfg.using_sa and i == last, groups=cfg.norm_groups)
            if i != 0:
                level.upsample = Upsample(c_out)
            levels.insert(0, level)
            c_in = c_out
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(c_in, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c_in, cfg.in_channels, 3, 1, 1)

    def map_sizes(self, latent_side: int) -> list[tuple[nn.Module, int]]:
        """Every convolution and upsampler with the output pixels of its map, for a latent of
        latent_side² (what `prepare_decoder` needs to choose where fast convolutions pay)."""
        sizes: list[tuple[nn.Module, int]] = []

        def convs(module: nn.Module, side: int) -> None:
            sizes.extend((m, side * side) for m in module.modules() if isinstance(m, nn.Conv2d))

        side = latent_side
        convs(self.conv_in, side)
        convs(self.mid, side)
        for level in typing.cast(list[Level], list(reversed(self.up))):
            convs(level.block, side)
            if level.upsample is not None:
                side *= 2
                sizes.append((level.upsample, side * side))
        convs(self.conv_out, side)
        return sizes

    def forward(self, z_BChw: torch.Tensor) -> torch.Tensor:
        inference = not torch.is_grad_enabled()
        h = self.mid(self.conv_in(z_BChw))
        for level in typing.cast(list[Level], list(reversed(self.up))):
            # One pool per level: what a level frees is no use at the next resolution.
            h = level.blocks(h, MapPool() if inference else None)
            if level.upsample is not None:
                h = level.upsample(h)
        if not inference:
            h = F.silu(self.norm_out(h))
        else:
            h = F.silu(group_norm_into(self.norm_out, h, h), inplace=True)
        img_B3HW: torch.Tensor = self.conv_out(h)
        return img_B3HW


class VQVAE(nn.Module):
    """Encoder, quantizer and decoder; `with_encoder=False` builds the decode-only half."""

    def __init__(self, cfg: VQVAEConfig, with_encoder: bool = True):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg) if with_encoder else None
        ks = cfg.quant_conv_ks
        self.quant_conv = (
            nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2) if with_encoder else None
        )
        self.quantize = MultiScaleQuantizer(cfg)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)
        self.decoder = Decoder(cfg)
        self.decode_channels_last = False
        self.fast_convs = False
        # Stands in for decode_batch on one image at inference when set (the pipeline sets a
        # CUDA graph's replay on a GPU, cuda_graphs.py); must give the same pixels.
        self.decode_one: OneImageDecoder | None = None

    def prepare_decoder(
        self, dtype: torch.dtype, channels_last: bool, fast_convs: bool = False
    ) -> None:
        """Cast post_quant_conv and the decoder to `dtype`; decode channels_last if asked; with
        `fast_convs`, run wide float32 3x3 convs by Winograd and fold the upsampling convs
        (fast_conv.py: same convolutions, other rounding), channels_last wherever one is used."""
        # A captured decode replays the old weights' memory: capture again on next use.
        if self.decode_one is not None:
            self.decode_one.reset()
        # Only activations change layout: oneDNN handles the weights, and converting them would
        # keep a second copy resident next to the memory-mapped checkpoint.
        for part in (self.post_quant_conv, self.decoder):
            part.to(dtype=dtype)
        self.fast_convs = fast_convs
        if fast_convs:
            targets = [
                (parent, name)
                for parent in self.decoder.modules()
                if not isinstance(parent, Upsample)
                for name, child in parent.named_children()
                if is_plain_conv3x3(child)
            ]
            for parent, name in targets:
                setattr(parent, name, FastConv3x3.wrap(getattr(parent, name)))
        # Transformed weights are made here, from the weights in their final dtype, and not
        # during a request: made between requests they fragment the heap (a second d16 image
        # then peaked 0.3 GB higher).
        any_fast = False
        with torch.no_grad():
            for module, pixels in self.decoder.map_sizes(self.cfg.patch_nums[-1]):
                if isinstance(module, FastConv3x3):
                    fast = module.prepare(pixels, fast_convs)
                elif isinstance(module, Upsample):
                    fast = fast_convs and prefer_fold(pixels, module.conv.weight)
                    module.phases = upsample_weight(module.conv.weight) if fast else None
                else:
                    continue
                any_fast |= fast
        # The fast paths work on channels-last activations; converting at each of them would
        # cost more than they save, so the whole decode runs channels_last when any is used.
        self.decode_channels_last = channels_last or any_fast

    def replaced_weights(self) -> list[torch.Tensor]:
        """The decoder weights that inference no longer reads since `prepare_decoder` made
        transformed copies of them (Winograd, folded upsampling)."""
        replaced = []
        for module in self.decoder.modules():
            if isinstance(module, FastConv3x3) and module.winograd_u is not None:
                replaced.append(module.weight)
            elif isinstance(module, Upsample) and module.phases is not None:
                replaced.append(module.conv.weight)
        return replaced

    def encode_features(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """Continuous latent f (B, Cvae, h, w) of images in [-1, 1]."""
        if self.encoder is None or self.quant_conv is None:
            raise RuntimeError("this VQVAE was built without its encoder")
        return self.quant_conv(self.encoder(img_B3HW))  # type: ignore[no-any-return]

    def decode_features(self, fhat_BChw: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] (float32) from f_hat; runs in the decoder's own dtype and layout.

        At inference every image is decoded on its own, so an image's pixels do not depend on
        the batch it came in: convolution kernels choose their blocking, and with it their
        summation order, by batch size (oneDNN on a Zen 4 EPYC gave `conv_in` 861 differing
        values of 1,024 for one image alone and inside a batch of three). On a CPU a d16
        image's maps keep every core busy alone; on a GPU this gives up some batch throughput
        for that guarantee. With gradients (training) the batch is decoded at once."""
        B = fhat_BChw.shape[0]
        if torch.is_grad_enabled():
            return self.decode_batch(fhat_BChw)
        decode = self.decode_one or self.decode_batch
        if B == 1:
            return decode(fhat_BChw)
        # A copy of each image's f_hat: its own allocation, aligned like a lone image's.
        return torch.cat([decode(fhat_BChw[i : i + 1].clone()) for i in range(B)])

    def decode_batch(self, fhat_BChw: torch.Tensor) -> torch.Tensor:
        """The whole batch in one decoder call: an image's pixels then depend on its batch
        (see decode_features). Image in [-1, 1], float32."""
        weight = self.post_quant_conv.weight
        x = fhat_BChw.to(weight.dtype)
        if self.decode_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        img: torch.Tensor = self.decoder(self.post_quant_conv(x))
        return img.float().clamp(-1, 1).contiguous()

    def img_to_indices(self, img_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Token indices per scale, each (B, pn·pn)."""
        return self.quantize.f_to_indices(self.encode_features(img_B3HW))

    def indices_to_teacher_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing input (B, L − pn0², Cvae) for the transformer."""
        return self.quantize.indices_to_teacher_input(indices)

    def indices_to_image(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Image in [-1, 1] decoded from token indices of every scale. At inference each image
        is made from its own tokens alone, f_hat included (its `phi` convolutions sum in a
        batch-dependent order too), so equal tokens give equal pixels in any batch."""
        B, to_fhat = indices[0].shape[0], self.quantize.indices_to_fhat
        if torch.is_grad_enabled() or B == 1:
            fhat = to_fhat(indices)
        else:
            fhat = torch.cat([to_fhat([idx[i : i + 1] for idx in indices]) for i in range(B)])
        return self.decode_features(fhat)  # which decodes image by image in turn

    def forward(self, img_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, CodebookUsage]:
        """Training pass: (reconstruction, unclamped; commitment loss; codebook usage)."""
        fhat_BChw, loss, usage = self.quantize(self.encode_features(img_B3HW))
        return self.decoder(self.post_quant_conv(fhat_BChw)), loss, usage
