"""Stage 2: the VAR-CLIP next-scale transformer (Zhang et al., 2024; Tian et al., 2024) trained
with cross-entropy over all scales and 10% of conditions replaced by the learned null vector."""

# The VQVAE and text tower are frozen, so token maps and caption embeddings are computed once
# and each step only runs the transformer. Every image may carry several phrasings of its
# caption; one is drawn per step, so the model hears each picture described several ways.
# Letters: B batch, L tokens over all scales, V codebook size, D text width, K phrasings,
# U distinct captions.

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.quantizer import MultiScaleQuantizer
from generation.engine.training.loop import TrainingStage, epoch_batch, warmup_cosine
from generation.engine.transformer import NextScaleTransformer


@dataclasses.dataclass(frozen=True)
class VarSettings:
    """VAR's recipe scaled down: AdamW (0.9, 0.95), wd 0.05, clip 2.0, 10% null conditions."""

    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 2.0
    cond_drop: float = 0.1
    label_smoothing: float = 0.0
    bf16: bool = False


def split_scales(tokens_BL: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """(B, L) concatenated token ids -> one (B, pn·pn) tensor per scale."""
    return list(tokens_BL.split([pn * pn for pn in patch_nums], dim=1))  # type: ignore[no-untyped-call]


def null_mask(batch: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Exactly floor(rate·B) rows set, chosen at random (VAR-CLIP's per-batch subset)."""
    mask_B = torch.zeros(batch, dtype=torch.bool)
    mask_B[torch.randperm(batch, generator=generator)[: math.floor(rate * batch)]] = True
    return mask_B


def no_decay(name: str, param: nn.Parameter) -> bool:
    """VAR applies no weight decay to 1-D params, biases, embeddings and attention scales."""
    keys = ("pos_", "lvl_embed", "scale_mul", "noise", "bias")
    return param.ndim < 2 or any(k in name for k in keys)


class VarStage(TrainingStage):
    """Teacher-forced next-scale prediction on pre-computed token maps and text embeddings."""

    name = "stage 2: VAR-CLIP transformer"

    def __init__(
        self,
        transformer: NextScaleTransformer,
        quantizer: MultiScaleQuantizer,
        tokens_NL: torch.Tensor,
        text_UD: torch.Tensor,
        phrasings_NK: torch.Tensor,
        settings: VarSettings,
        total_steps: int,
        seed: int,
        device: torch.device,
    ):
        self.transformer = transformer.to(device).train()
        self.quantizer = quantizer.to(device).eval().requires_grad_(False)
        self.tokens_NL, self.text_UD, self.phrasings_NK = tokens_NL, text_UD, phrasings_NK
        self.settings, self.total_steps, self.seed, self.device = (
            settings,
            total_steps,
            seed,
            device,
        )
        named = list(transformer.named_parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for n, p in named if not no_decay(n, p)],
              "weight_decay": settings.weight_decay},
             {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}],
            lr=settings.lr, betas=(0.9, 0.95),
        )  # fmt: skip

    def modules(self) -> dict[str, nn.Module]:
        return {"transformer": self.transformer}

    def loss(
        self, idx_B: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy over all L tokens of the batch, plus last-scale figures."""
        s = self.settings
        B = len(idx_B)
        # 1. Targets and the teacher-forcing input from the frozen quantizer.
        tokens_BL = self.tokens_NL[idx_B].to(self.device)
        with torch.no_grad():
            x_teacher = self.quantizer.indices_to_teacher_input(
                split_scales(tokens_BL, self.transformer.patch_nums)
            )
        # 2. One phrasing per image, then exactly floor(10%) null conditions.
        K = self.phrasings_NK.shape[1]
        pick_B = torch.randint(0, K, (B,), generator=generator)
        cond_BD = self.text_UD[self.phrasings_NK[idx_B, pick_B]].to(self.device)
        mask_B = null_mask(B, s.cond_drop, generator).to(self.device)
        # 3. Logits over every scale (float32 head) and the per-token cross-entropy.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=s.bf16):
            logits_BLV = self.transformer(cond_BD, x_teacher, mask_B)
        V = logits_BLV.shape[-1]
        ce_BL = F.cross_entropy(
            logits_BLV.float().reshape(-1, V), tokens_BL.reshape(-1),
            label_smoothing=s.label_smoothing, reduction="none",
        ).view(B, -1)  # fmt: skip
        last = self.transformer.begin_ends[-1][0]
        acc = (logits_BLV[:, last:].argmax(-1) == tokens_BL[:, last:]).float().mean()
        return ce_BL.mean(), {"ce_last": ce_BL[:, last:].mean().item(), "acc_last": acc.item()}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        s = self.settings
        lr = s.lr * warmup_cosine(step, self.total_steps, s.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx_B = epoch_batch(self.seed, step, s.batch_size, len(self.tokens_NL))
        loss, extra = self.loss(idx_B, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        grad_norm = nn.utils.clip_grad_norm_(self.transformer.parameters(), s.grad_clip)
        self.optimizer.step()
        return {"loss": float(loss.item()), **extra, "grad_norm": float(grad_norm), "lr": lr}
