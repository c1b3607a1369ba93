"""CLIP text tower (Radford et al., 2021) as VAR-CLIP (Zhang et al., 2024) runs it: open_clip's
'ViT-L-14' text transformer with exact GELU, EOT-argmax pooling, projection, L2 normalisation.

Letters: N captions, T tokens actually run (up to the last EOT in the batch), W tower width,
D embedding width.
"""

# The blocks are written here with open_clip's parameter names and arithmetic (pre-LN residual
# blocks, torch's MultiheadAttention, a c_fc -> GELU -> c_proj MLP) instead of imported from it:
# importing open_clip pulls in torchvision and costs ~0.26 GB of resident memory that inference
# never uses. Training (stage 0) still builds open_clip's CLIP and copies its text tower in here;
# tests check the two give identical embeddings.

from __future__ import annotations

import typing
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.config import TextEncoderConfig
from generation.engine.errors import EngineInputError


class QuickGELU(nn.Module):
    """x·σ(1.702x), the activation of OpenAI's original CLIP weights (the "-quickgelu" configs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TextMLP(nn.Sequential):
    """c_fc -> activation -> c_proj, a Sequential so the keys read `mlp.c_fc.*` as open_clip's."""

    def __init__(self, width: int, hidden: int, act_layer: type[nn.Module]):
        super().__init__(
            OrderedDict(
                c_fc=nn.Linear(width, hidden), gelu=act_layer(), c_proj=nn.Linear(hidden, width)
            )
        )
        self.c_fc: nn.Linear
        self.c_proj: nn.Linear


class TextBlock(nn.Module):
    """x += Attn(LN(x), mask); x += MLP(LN(x)); names as open_clip's ResidualAttentionBlock."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act_layer: type[nn.Module]):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = TextMLP(width, hidden, act_layer)

    def forward(self, x_NTW: torch.Tensor, mask_TT: torch.Tensor) -> torch.Tensor:
        h_NTW = self.ln_1(x_NTW)
        x_NTW = x_NTW + self.attn(h_NTW, h_NTW, h_NTW, need_weights=False, attn_mask=mask_TT)[0]
        return x_NTW + self.mlp(self.ln_2(x_NTW))  # type: ignore[no-any-return]


class TextTransformer(nn.Module):
    """The stack of TextBlocks (`resblocks.N.*`, as open_clip names them)."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        act = QuickGELU if cfg.quick_gelu else nn.GELU
        self.resblocks = nn.ModuleList(
            [TextBlock(cfg.width, cfg.heads, cfg.mlp_ratio, act) for _ in range(cfg.layers)]
        )

    @property
    def blocks(self) -> list[TextBlock]:
        """The blocks, typed."""
        return typing.cast(list[TextBlock], list(self.resblocks))

    def forward(
        self,
        x_NTW: torch.Tensor,
        attn_mask: torch.Tensor,
        after_block: Callable[[nn.Module], None] | None = None,
    ) -> torch.Tensor:
        """The blocks in turn; `after_block` runs with each block once it is done."""
        for block in self.blocks:
            x_NTW = block(x_NTW, attn_mask)
            if after_block is not None:
                after_block(block)
        return x_NTW


class ClipTextEncoder(nn.Module):
    """Text tower only; parameter names follow open_clip's CLIP so its state dict copies as is."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = TextTransformer(cfg)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.embed_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """open_clip's text-tower initialisation (normal embeddings, depth-scaled projections)."""
        W, layers = self.cfg.width, self.cfg.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.blocks:
            nn.init.normal_(block.attn.in_proj_weight, std=W**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=W**-0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * W) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=W**-0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.text_projection, std=W**-0.5)

    def forward(self, ids_NT: torch.Tensor) -> torch.Tensor:
        """Same as encode: unit-norm embeddings (N, D)."""
        return self.encode(ids_NT)

    def encode(
        self, ids_NT: torch.Tensor, after_block: Callable[[nn.Module], None] | None = None
    ) -> torch.Tensor:
        """L2-normalised embeddings (N, D) of token ids (N, 77); `after_block` runs with each
        transformer block once it is done (its weights are not read again in this call)."""
        if ids_NT.dim() != 2 or ids_NT.shape[1] > self.cfg.context_length:
            raise EngineInputError(
                f"ids must be (N, ≤{self.cfg.context_length}), got {tuple(ids_NT.shape)}"
            )
        # EOT has the largest id, so argmax finds it. The mask is causal and pooling reads the EOT
        # position, so tokens after the batch's last EOT cannot change the result: skip them.
        eot_N = ids_NT.argmax(dim=-1)
        T = int(eot_N.max().item()) + 1
        x_NTW = self.token_embedding(ids_NT[:, :T]) + self.positional_embedding[:T]
        causal_TT = torch.full((T, T), float("-inf"), device=ids_NT.device).triu_(1)
        x_NTW = self.transformer(x_NTW, causal_TT.to(x_NTW.dtype), after_block)
        x_NTW = self.ln_final(x_NTW)
        pooled_NW = x_NTW[torch.arange(x_NTW.shape[0], device=x_NTW.device), eot_N]
        return F.normalize(pooled_NW @ self.text_projection, dim=-1)
