"""Next-scale prediction transformer of VAR (Tian et al., 2024, arXiv 2404.02905) with the text
conditioning of VAR-CLIP (Zhang et al., 2024, arXiv 2408.01181): AdaLN blocks, block-causal mask.

Letters: B batch (2B with both CFG branches), L tokens over all scales, l tokens of one scale,
C width, D condition width, H heads, c head width, V codebook size, Cvae latent channels.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.config import TransformerConfig
from generation.engine.packed_linear import linear, linear_gelu_tanh, pack_linears

MAX_LOG_SCALE = math.log(100.0)


class SelfAttention(nn.Module):
    """Multi-head attention: L2-normalised q/k, clamped learned per-head scale, qkv bias [q,0,v]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        C, H = cfg.width, cfg.num_heads
        self.num_heads, self.head_dim = H, C // H
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(C)), nn.Parameter(torch.zeros(C))
        self.l2_norm = cfg.attn_l2_norm
        if self.l2_norm:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, H, 1, 1), math.log(4.0)))
        self.scale = 1.0 if self.l2_norm else 0.25 / math.sqrt(self.head_dim)
        self.proj = nn.Linear(C, C)

    def qkv_bias(self) -> torch.Tensor:
        """The fused bias [q_bias, 0, v_bias]; keys get none."""
        return torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))

    def project(
        self, x_BlC: torch.Tensor, bias_3C: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (B, H, l, c), with q and k normalised and q scaled."""
        B, n_tokens, _ = x_BlC.shape
        qkv = linear(self.mat_qkv, x_BlC, bias_3C)
        qkv = qkv.view(B, n_tokens, 3, self.num_heads, -1)  # Bl(3C) -> Bl3Hc
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # Bl3Hc -> 3BHlc
        if self.l2_norm:
            scale_1H11 = self.scale_mul_1H11.clamp_max(MAX_LOG_SCALE).exp()
            q, k = F.normalize(q, dim=-1) * scale_1H11, F.normalize(k, dim=-1)
        return q, k, v

    def merge(self, out_BHlc: torch.Tensor) -> torch.Tensor:
        """Heads back to (B, l, C) and the output projection."""
        B, H, n_tokens, c = out_BHlc.shape
        return self.proj(out_BHlc.transpose(1, 2).reshape(B, n_tokens, H * c))  # type: ignore[no-any-return]

    def forward(self, x_BLC: torch.Tensor, mask_LL: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.project(x_BLC, self.qkv_bias())
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_LL, scale=self.scale)
        return self.merge(out)


class FFN(nn.Module):
    """fc1 -> tanh-approximate GELU -> fc2."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        hidden = round(cfg.width * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(cfg.width, hidden), nn.Linear(hidden, cfg.width)

    def forward(self, x_BLC: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu_tanh(self.fc1, x_BLC))  # type: ignore[no-any-return]


class AdaLNBlock(nn.Module):
    """x += γ1·Attn(LN(x)(1+s1)+b1); x += γ2·FFN(LN(x)(1+s2)+b2); (γ, s, b) = Linear(SiLU(cond))."""

    def __init__(self, cfg: TransformerConfig, drop_path: float):
        super().__init__()
        self.C, self.eps, self.drop_path = cfg.width, cfg.norm_eps, drop_path
        self.attn, self.ffn = SelfAttention(cfg), FFN(cfg)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 6 * cfg.width))

    def modulation(self, cond_BC: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(γ1, γ2, scale1, scale2, shift1, shift2), each (B, 1, C)."""
        return self.ada_lin(cond_BC).view(-1, 1, 6, self.C).unbind(2)  # type: ignore[no-any-return]

    def _residual(self, x_BLC: torch.Tensor, branch_BLC: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return x_BLC + branch_BLC
        keep = 1.0 - self.drop_path
        mask_B11 = x_BLC.new_empty(x_BLC.shape[0], 1, 1).bernoulli_(keep) / keep
        return x_BLC + branch_BLC * mask_B11

    def forward(
        self,
        x_BLC: torch.Tensor,
        ada: tuple[torch.Tensor, ...],
        attend: Attend,
    ) -> torch.Tensor:
        """One block; `attend` maps the modulated input to the attention output."""
        gamma1, gamma2, scale1, scale2, shift1, shift2 = ada
        h = F.layer_norm(x_BLC, (self.C,), eps=self.eps) * (scale1 + 1) + shift1
        x_BLC = self._residual(x_BLC, attend(self.attn, h) * gamma1)
        h = F.layer_norm(x_BLC, (self.C,), eps=self.eps) * (scale2 + 1) + shift2
        return self._residual(x_BLC, self.ffn(h) * gamma2)


class Attend:
    """How a block runs attention: masked full sequence, or one scale with a KV cache."""

    def __call__(self, attn: SelfAttention, h_BlC: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclasses.dataclass
class MaskedAttend(Attend):
    """Training path: all tokens at once under the block-causal mask."""

    mask_LL: torch.Tensor

    def __call__(self, attn: SelfAttention, h_BlC: torch.Tensor) -> torch.Tensor:
        out_BlC: torch.Tensor = attn(h_BlC, self.mask_LL)
        return out_BlC


@dataclasses.dataclass
class KVCache:
    """Preallocated keys/values (depth, 2B, H, capacity, c), memoised biases, the slot in use."""

    k: torch.Tensor
    v: torch.Tensor
    qkv_bias: list[torch.Tensor]
    layer: int = 0
    begin: int = 0
    end: int = 0
    write: bool = True


class CachedAttend(Attend):
    """Inference path: write this scale's k/v into its slots, attend to every slot so far."""

    def __init__(self, cache: KVCache):
        self.cache = cache

    def __call__(self, attn: SelfAttention, h_BlC: torch.Tensor) -> torch.Tensor:
        c = self.cache
        q, k, v = attn.project(h_BlC, c.qkv_bias[c.layer])
        if c.write:
            c.k[c.layer, :, :, c.begin : c.end] = k
            c.v[c.layer, :, :, c.begin : c.end] = v
            k_all, v_all = c.k[c.layer, :, :, : c.end], c.v[c.layer, :, :, : c.end]
        else:  # a scale nobody attends to later: its k/v never enter the cache
            k_all = torch.cat((c.k[c.layer, :, :, : c.begin], k), dim=2)
            v_all = torch.cat((c.v[c.layer, :, :, : c.begin], v), dim=2)
        c.layer += 1
        return attn.merge(F.scaled_dot_product_attention(q, k_all, v_all, scale=attn.scale))


@dataclasses.dataclass
class InferenceState:
    """Per-generation memo: projected condition, AdaLN outputs per block and head, the KV cache."""

    cond_BC: torch.Tensor
    ada: list[tuple[torch.Tensor, ...]]
    head_ada: tuple[torch.Tensor, ...]
    cache: KVCache


class AdaLNHead(nn.Module):
    """LN(x)(1+scale)+shift with (scale, shift) = Linear(SiLU(cond)), before the logits head."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.C, self.eps = cfg.width, cfg.norm_eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))

    def modulation(self, cond_BC: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(scale, shift), each (B, 1, C)."""
        return self.ada_lin(cond_BC).view(-1, 1, 2, self.C).unbind(2)  # type: ignore[no-any-return]

    def forward(self, x_BLC: torch.Tensor, ada: tuple[torch.Tensor, ...]) -> torch.Tensor:
        scale, shift = ada
        return F.layer_norm(x_BLC, (self.C,), eps=self.eps) * (scale + 1) + shift


class NextScaleTransformer(nn.Module):
    """Predicts every token of scale k from the condition and scales < k."""

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        vocab_size: int,
        z_channels: int,
        patch_nums: tuple[int, ...],
    ):
        super().__init__()
        C = cfg.width
        self.cfg, self.V, self.Cvae = cfg, vocab_size, z_channels
        self.patch_nums = tuple(patch_nums)
        self.begin_ends, start = [], 0
        for pn in self.patch_nums:
            self.begin_ends.append((start, start + pn * pn))
            start += pn * pn
        self.L, self.first_l = start, self.patch_nums[0] ** 2
        self.word_embed = nn.Linear(z_channels, C)
        if cfg.conditioning == "text":
            self.noise = nn.Embedding(1, cfg.cond_dim)  # the learned null text embedding
            self.cond_proj = nn.Linear(cfg.cond_dim, C)
        else:
            self.class_emb = nn.Embedding(cfg.num_classes + 1, C)  # last row: the null class
        self.pos_start = nn.Parameter(torch.zeros(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, C))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        # Drop-path grows linearly over the blocks (plain floats: this may run on the meta device).
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList([AdaLNBlock(cfg, rate) for rate in rates])
        self.head_nm = AdaLNHead(cfg)
        self.head = nn.Linear(C, vocab_size)

    @property
    def block_list(self) -> list[AdaLNBlock]:
        """The blocks, typed."""
        return typing.cast(list[AdaLNBlock], list(self.blocks))

    def levels(self, device: torch.device | None = None) -> torch.Tensor:
        """Scale index of each of the L tokens, (L,) int64."""
        counts = torch.tensor([pn * pn for pn in self.patch_nums], device=device)
        return torch.repeat_interleave(torch.arange(len(self.patch_nums), device=device), counts)

    def block_causal_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, length) bool: query i may see key j iff scale(j) ≤ scale(i)."""
        lvl_L = self.levels(device)[:length]
        return lvl_L[:, None] >= lvl_L[None, :]

    def condition(
        self, cond: torch.Tensor, null_mask_B: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C) condition from text (B, D) or class labels (B,); null rows where masked."""
        if self.cfg.conditioning == "text":
            null_BD = self.noise.weight.expand(cond.shape[0], -1).to(cond.dtype)
            if null_mask_B is not None:
                cond = torch.where(null_mask_B[:, None], null_BD, cond)
            return self.cond_proj(cond)  # type: ignore[no-any-return]
        if null_mask_B is not None:
            cond = torch.where(null_mask_B, self.cfg.num_classes, cond)
        return self.class_emb(cond)  # type: ignore[no-any-return]

    def null_condition(self, batch: int, device: torch.device) -> torch.Tensor:
        """Condition input that selects the null branch: the learned null text vector or class."""
        if self.cfg.conditioning == "text":
            return self.noise.weight.expand(batch, -1)
        return torch.full((batch,), self.cfg.num_classes, dtype=torch.long, device=device)

    def lvl_pos(self, begin: int, end: int) -> torch.Tensor:
        """Level embedding plus absolute position embedding for tokens begin..end, (1, l, C)."""
        lvl = self.lvl_embed(self.levels(self.pos_1LC.device)[begin:end])
        return (lvl[None] + self.pos_1LC[:, begin:end]).to(self.pos_1LC.dtype)  # type: ignore[no-any-return]

    def logits(self, x_BlC: torch.Tensor, head_ada: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Head output in float32, (B, l, V)."""
        return self.head(self.head_nm(x_BlC, head_ada)).float()  # type: ignore[no-any-return]

    def forward(
        self,
        cond: torch.Tensor,
        x_teacher_BLC: torch.Tensor,
        null_mask_B: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training forward: logits (B, L', V) for the start token + L'−1 teacher-forced tokens."""
        cond_BC = self.condition(cond, null_mask_B)
        dtype = self.pos_1LC.dtype
        sos_B1C = cond_BC[:, None].to(dtype) + self.pos_start
        x_BLC = torch.cat((sos_B1C, self.word_embed(x_teacher_BLC.to(dtype))), dim=1)
        L = x_BLC.shape[1]
        x_BLC = x_BLC + self.lvl_pos(0, L)
        attend = MaskedAttend(self.block_causal_mask(L, x_BLC.device))
        for block in self.block_list:
            x_BLC = block(x_BLC, block.modulation(cond_BC), attend)
        return self.logits(x_BLC, self.head_nm.modulation(cond_BC))

    def start_inference(
        self,
        cond: torch.Tensor,
        on_memoised: Callable[[nn.Module], None] | None = None,
        cache: KVCache | None = None,
    ) -> tuple[InferenceState, torch.Tensor]:
        """Memoise the condition (conditional rows, then null rows) and return the scale-0 input;
        `on_memoised` runs with each AdaLN projection (each block's, then the head's) once its
        output exists (its weights are not read again in this request), all before the KV
        cache is allocated.
        A given `cache` (one of this batch size, e.g. a CUDA graph's) is used instead of a new
        one: each scale writes its slots before any later scale reads them."""
        B, cfg = cond.shape[0], self.cfg
        both = torch.cat((cond, self.null_condition(B, cond.device).to(cond.dtype)), dim=0)
        cond_BC = self.condition(both)

        def memoise(module: AdaLNBlock | AdaLNHead) -> tuple[torch.Tensor, ...]:
            out = module.modulation(cond_BC)
            if on_memoised is not None:
                on_memoised(module.ada_lin)
            return out

        ada = [memoise(blk) for blk in self.block_list]
        head_ada = memoise(self.head_nm)
        H, c = cfg.num_heads, cfg.width // cfg.num_heads
        # The last scale's keys are never read by a later scale, so no slots are kept for them.
        capacity = self.begin_ends[-1][0]
        kv_shape = (cfg.depth, 2 * B, H, capacity, c)
        w = self.pos_1LC
        if cache is None:
            cache = KVCache(
                k=w.new_empty(kv_shape),
                v=w.new_empty(kv_shape),
                qkv_bias=[blk.attn.qkv_bias() for blk in self.block_list],
            )
        elif cache.k.shape != kv_shape or cache.k.dtype != w.dtype or cache.k.device != w.device:
            raise ValueError(
                f"KV cache {tuple(cache.k.shape)} {cache.k.dtype} on {cache.k.device} does not "
                f"fit {kv_shape} {w.dtype} on {w.device}"
            )
        state = InferenceState(cond_BC=cond_BC, ada=ada, head_ada=head_ada, cache=cache)
        x_B1C = cond_BC[:, None] + self.pos_start + self.lvl_pos(0, self.first_l)
        return state, x_B1C

    def step(self, state: InferenceState, si: int, x_BlC: torch.Tensor) -> torch.Tensor:
        """Scale si's tokens through every block with the KV cache; float32 logits (2B, l, V)."""
        cache = state.cache
        cache.layer, (cache.begin, cache.end) = 0, self.begin_ends[si]
        cache.write = si < len(self.patch_nums) - 1
        attend = CachedAttend(cache)
        for block, ada in zip(self.blocks, state.ada, strict=True):
            x_BlC = block(x_BlC, ada, attend)
        return self.logits(x_BlC, state.head_ada)

    def pack_for_inference(self) -> int:
        """Pack the per-scale linear layers' weights once for oneDNN (CPU float32 inference,
        see packed_linear.py); the model must not be trained or moved afterwards."""
        return pack_linears(self, ("mat_qkv", "proj", "fc1", "fc2", "head"))

    def next_tokens_input(self, si: int, next_BCpp: torch.Tensor) -> torch.Tensor:
        """Embed the next scale's downsampled f_hat for both CFG branches, (2B, l, C)."""
        b, e = self.begin_ends[si + 1]
        x_BlCvae = next_BCpp.flatten(2).transpose(1, 2).to(self.pos_1LC.dtype)  # BCpp -> BlC
        x_BlC: torch.Tensor = self.word_embed(x_BlCvae) + self.lvl_pos(b, e)
        return x_BlC.repeat(2, 1, 1)


def init_weights(
    model: NextScaleTransformer,
    adaln: float = 0.5,
    adaln_gamma: float | None = None,
    head: float = 0.02,
) -> None:
    """VAR's init: trunc-normal √(1/3C), small head, AdaLN γ ×adaln_gamma, proj/fc2 ÷√(2·depth)."""
    cfg, std = model.cfg, math.sqrt(1 / model.cfg.width / 3)
    if adaln_gamma is None:
        adaln_gamma = 1e-3 if cfg.depth <= 20 else 1e-4 if cfg.depth <= 24 else 1e-5
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=std)
        for param in (model.pos_start, model.pos_1LC):
            nn.init.trunc_normal_(param, std=std)
        model.head.weight.mul_(head)
        _linear(model.head_nm.ada_lin[-1]).weight.mul_(adaln)
        C, depth = cfg.width, cfg.depth
        for block in model.block_list:
            block.attn.proj.weight.div_(math.sqrt(2 * depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            _linear(block.ada_lin[-1]).weight[2 * C :].mul_(adaln)
            _linear(block.ada_lin[-1]).weight[: 2 * C].mul_(adaln_gamma)
            block.attn.q_bias.zero_()
            block.attn.v_bias.zero_()
            if block.attn.l2_norm:
                block.attn.scale_mul_1H11.fill_(math.log(4.0))


def _linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)
    return module
