"""Stage 1: the multi-scale VQVAE of VAR (Tian et al., 2024, arXiv 2404.02905) trained with
reconstruction, edge and commitment losses, codebook init from data and dead-code restarts."""

# Why more than VAR's L2 + commitment: an L2-only tokenizer trained for minutes on shapes gives
# blurry blobs whose colour and outline the transformer then cannot recover. L1 keeps flat
# colours exact; the image-gradient term pays for sharp, correctly placed edges. Codes that
# no scale picked since the last check are re-seeded from the encoder's residuals, which
# keeps the codebook in use from the first step. Letters: B batch, Cvae latent channels,
# h/w latent side, N candidate vectors, V codebook size.

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.training.loop import TrainingStage, epoch_batch, warmup_cosine
from generation.engine.vqvae import VQVAE


@dataclasses.dataclass(frozen=True)
class VQVAESettings:
    """Loss weights and the optimisation recipe of stage 1."""

    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 20
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    edge_weight: float = 1.0
    commit_weight: float = 1.0
    restart_every: int = 20
    hflip: bool = True
    channels_last: bool = True
    # Encoder and decoder under bf16 autocast (the quantizer stays float32): about 1.5x faster
    # convolutions on AVX512-BF16 CPUs.
    bf16: bool = False


def edge_loss(rec_B3HW: torch.Tensor, img_B3HW: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences of the two images."""
    dx = F.l1_loss(rec_B3HW.diff(dim=3), img_B3HW.diff(dim=3))
    dy = F.l1_loss(rec_B3HW.diff(dim=2), img_B3HW.diff(dim=2))
    return dx + dy


@torch.no_grad()
def residual_candidates(vqvae: VQVAE, f_BChw: torch.Tensor) -> torch.Tensor:
    """The vectors each scale quantises (what is left of f, area-downsampled), (N, Cvae)."""
    q = vqvae.quantize
    fhats = q.f_to_fhats(f_BChw)
    rows, prev = [], torch.zeros_like(f_BChw)
    for si, pn in enumerate(q.patch_nums):
        rest = f_BChw - prev
        z = rest if si == len(q.patch_nums) - 1 else F.interpolate(rest, size=(pn, pn), mode="area")
        rows.append(z.permute(0, 2, 3, 1).reshape(-1, f_BChw.shape[1]))  # BCpp -> (B·p·p)C
        prev = fhats[si]
    return torch.cat(rows)


class VQVAEStage(TrainingStage):
    """Autoencoder training with the straight-through multi-scale quantizer."""

    name = "stage 1: VQVAE"

    def __init__(
        self,
        vqvae: VQVAE,
        images_NHW3: np.ndarray,
        settings: VQVAESettings,
        total_steps: int,
        seed: int,
        device: torch.device,
    ):
        self.vqvae = vqvae.to(device).train()
        if settings.channels_last:
            self.vqvae.to(memory_format=torch.channels_last)
        self.images = torch.from_numpy(images_NHW3)
        self.settings, self.total_steps, self.seed, self.device = (
            settings,
            total_steps,
            seed,
            device,
        )
        self.optimizer = torch.optim.AdamW(
            vqvae.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0
        )
        self.hits_V = torch.zeros(vqvae.cfg.vocab_size)

    def modules(self) -> dict[str, nn.Module]:
        return {"vqvae": self.vqvae}

    def batch(self, step: int, generator: torch.Generator) -> torch.Tensor:
        """Images (B,3,H,W) in [-1, 1], randomly mirrored left-right (every shape is symmetric)."""
        idx = epoch_batch(self.seed, step, self.settings.batch_size, len(self.images))
        img = self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # BHWC -> BCHW
        if self.settings.hflip:
            flip_B = torch.rand(img.shape[0], generator=generator) < 0.5
            img = torch.where(flip_B[:, None, None, None], img.flip(3), img)
        img = img.to(self.device)
        if self.settings.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        return img

    @torch.no_grad()
    def restart_dead_codes(self, img_B3HW: torch.Tensor, generator: torch.Generator) -> int:
        """Re-seed codes with no hits since the last check from encoder residuals; return count."""
        dead = (self.hits_V == 0).nonzero().flatten()
        if len(dead) > 0:
            cand_NC = residual_candidates(self.vqvae, self.vqvae.encode_features(img_B3HW).float())
            pick = torch.randint(0, cand_NC.shape[0], (len(dead),), generator=generator)
            noise = torch.randn(len(dead), cand_NC.shape[1], generator=generator) * 1e-3
            weight = self.vqvae.quantize.embedding.weight
            weight[dead.to(weight.device)] = cand_NC[pick.to(cand_NC.device)] + noise.to(weight)
            # Stale Adam moments would drag a re-seeded code straight back where it died.
            state = self.optimizer.state.get(weight, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][dead.to(weight.device)] = 0.0
        self.hits_V.zero_()
        return len(dead)

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        s = self.settings
        lr = s.lr * warmup_cosine(step, self.total_steps, s.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        img = self.batch(step, generator)
        # 1. Codebook from data at step 0, then restarts every few steps.
        restarted = 0
        if step % s.restart_every == 0:
            if step == 0:
                self.hits_V.zero_()
            restarted = self.restart_dead_codes(img, generator)
        # 2. Forward through the straight-through quantizer.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=s.bf16):
            rec, commit, usage = self.vqvae(img)
        rec = rec.float()
        # 3. Reconstruction (L1 + L2), edges, commitment.
        l1, l2 = F.l1_loss(rec, img), F.mse_loss(rec, img)
        edges = edge_loss(rec, img)
        loss = s.l1_weight * l1 + s.l2_weight * l2 + s.edge_weight * edges
        loss = loss + s.commit_weight * commit
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.hits_V += usage.counts_SV.sum(0).cpu()
        return {
            "loss": float(loss.item()),
            "l1": float(l1.item()),
            "edge": float(edges.item()),
            "commit": float(commit.item()),
            "codes_used": float((usage.counts_SV.sum(0) > 0).float().mean().item()),
            "restarted": float(restarted),
            "lr": lr,
        }

    def extra_state(self) -> dict[str, Any]:
        return {"hits_V": self.hits_V.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.hits_V = state["hits_V"].clone()


@torch.no_grad()
def reconstruct(vqvae: VQVAE, images_NHW3: np.ndarray, batch: int = 64) -> np.ndarray:
    """Encode -> quantise -> decode; uint8 (N,H,W,3), the images the tokenizer can express."""
    vqvae.eval()
    out = []
    for i in range(0, len(images_NHW3), batch):
        rec = vqvae.indices_to_image(
            vqvae.img_to_indices(_as_input(vqvae, images_NHW3[i : i + batch]))
        )
        rec_u8 = ((rec + 1) * 127.5).round().clamp(0, 255).byte()
        out.append(rec_u8.permute(0, 2, 3, 1).cpu().numpy())  # BCHW -> BHWC
    return np.concatenate(out)


@torch.no_grad()
def tokenize(vqvae: VQVAE, images_NHW3: np.ndarray, batch: int = 128) -> torch.Tensor:
    """Token ids of every image over all scales, (N, L) int64, scales concatenated."""
    vqvae.eval()
    rows = []
    for i in range(0, len(images_NHW3), batch):
        idx = vqvae.img_to_indices(_as_input(vqvae, images_NHW3[i : i + batch]))
        rows.append(torch.cat(idx, dim=1).cpu())
    return torch.cat(rows)


def _as_input(vqvae: VQVAE, images_NHW3: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1] on the VQVAE's device."""
    device = vqvae.post_quant_conv.weight.device
    img = torch.from_numpy(np.ascontiguousarray(images_NHW3)).to(device)
    return img.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # NHWC -> NCHW
