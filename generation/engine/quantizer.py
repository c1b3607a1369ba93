"""Multi-scale residual vector quantizer of VAR (Tian et al., 2024, arXiv 2404.02905, Alg. 1-2):
a shared codebook, K token maps from 1x1 to hxw, and partially shared phi convs between scales.

Letters: B batch, Cvae latent channels, h/w latent side, pn side of one scale's token map,
V codebook size, S number of scales, L tokens over all scales, N = B·pn·pn query rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generation.engine.config import VQVAEConfig


def phi_index_per_scale(num_scales: int, num_phi: int) -> list[int]:
    """Which phi conv each scale uses: the nearest of num_phi ticks to k/(S-1), in float64."""
    if num_phi == 4:
        ticks = np.linspace(1 / 3 / num_phi, 1 - 1 / 3 / num_phi, num_phi)
    else:
        ticks = np.linspace(1 / 2 / num_phi, 1 - 1 / 2 / num_phi, num_phi)
    # Scale 2 of 10 is an exact tie between ticks 0 and 1; float64 rounding picks 1, as trained.
    return [int(np.argmin(np.abs(ticks - k / (num_scales - 1)))) for k in range(num_scales)]


class Phi(nn.Conv2d):
    """Residual refiner phi(h) = (1 - r)·h + r·conv3x3(h)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw * (1 - self.ratio) + super().forward(h_BChw) * self.ratio


class PhiBank(nn.Module):
    """The partially shared phi convs (state-dict name `qresi_ls`)."""

    def __init__(self, channels: int, ratio: float, count: int):
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(channels, ratio) for _ in range(count)])


@dataclasses.dataclass(frozen=True)
class CodebookUsage:
    """Per-scale code counts of one batch, with perplexity and the fraction of codes used."""

    counts_SV: torch.Tensor
    perplexity_S: torch.Tensor
    used_fraction_S: torch.Tensor


class MultiScaleQuantizer(nn.Module):
    """Residual quantizer: f -> token maps per scale -> f_hat, and the transformer's inputs."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.vocab_size, self.Cvae, self.beta = cfg.vocab_size, cfg.z_channels, cfg.beta
        self.patch_nums = tuple(cfg.patch_nums)
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.z_channels)
        self.quant_resi = PhiBank(cfg.z_channels, cfg.quant_resi, cfg.num_phi)
        self.phi_of_scale = phi_index_per_scale(len(self.patch_nums), cfg.num_phi)

    def phi(self, si: int, h_BChw: torch.Tensor) -> torch.Tensor:
        """Apply scale si's phi conv."""
        conv: Phi = self.quant_resi.qresi_ls[self.phi_of_scale[si]]  # type: ignore[assignment]
        out_BChw: torch.Tensor = conv(h_BChw)
        return out_BChw

    def nearest_codes(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code by squared L2 distance, ‖z‖² + ‖e‖² − 2 z·e."""
        e_VC = self.embedding.weight.detach()
        d_NV = z_NC.square().sum(dim=1, keepdim=True) + e_VC.square().sum(dim=1)
        d_NV = torch.addmm(d_NV, z_NC, e_VC.T, beta=1, alpha=-2)
        return d_NV.argmin(dim=1)

    def codes_to_map(self, idx_Bl: torch.Tensor) -> torch.Tensor:
        """Code vectors of one scale as a (B, Cvae, pn, pn) map."""
        B, n_tokens = idx_Bl.shape
        pn = round(n_tokens**0.5)
        codes_BlC: torch.Tensor = self.embedding(idx_Bl)
        return codes_BlC.transpose(1, 2).reshape(B, self.Cvae, pn, pn)  # BlC -> BCpp

    def _upsampled(self, si: int, h_BCpp: torch.Tensor) -> torch.Tensor:
        side = self.patch_nums[-1]
        if si == len(self.patch_nums) - 1:  # the last scale is already at full size
            return h_BCpp
        return F.interpolate(h_BCpp, size=(side, side), mode="bicubic")

    def _residual_pass(
        self, f_BChw: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Quantise scale by scale: (indices per scale, cumulative f_hat per scale, loss sum)."""
        B, C, H, W = f_BChw.shape
        S = len(self.patch_nums)
        assert H == W == self.patch_nums[-1], f"latent is {H}x{W}, last scale {self.patch_nums[-1]}"
        f_nograd = f_BChw.detach()
        f_rest = f_nograd.clone()
        f_hat = torch.zeros_like(f_nograd)
        indices, fhats, loss = [], [], f_BChw.new_zeros(())
        for si, pn in enumerate(self.patch_nums):
            z_BCpp = f_rest if si == S - 1 else F.interpolate(f_rest, size=(pn, pn), mode="area")
            z_NC = z_BCpp.permute(0, 2, 3, 1).reshape(-1, C)  # BCpp -> (B·pn·pn, C)
            idx_Bl = self.nearest_codes(z_NC).reshape(B, pn * pn)  # (B·pn·pn,) -> (B, pn·pn)
            h_BChw = self.phi(si, self._upsampled(si, self.codes_to_map(idx_Bl)))
            f_hat = f_hat + h_BChw
            f_rest = f_rest - h_BChw.detach()
            indices.append(idx_Bl)
            fhats.append(f_hat)
            if torch.is_grad_enabled():
                # Commitment (encoder towards codes) weighted by beta, plus the codebook term.
                loss = loss + self.beta * F.mse_loss(f_hat.detach(), f_BChw)
                loss = loss + F.mse_loss(f_hat, f_nograd)
        return indices, fhats, loss / S

    def forward(self, f_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, CodebookUsage]:
        """Training pass: straight-through f_hat, β-commitment loss (mean over scales), usage."""
        f_BChw = f_BChw.float()
        # Codes are chosen in float32 even when the caller trains under bf16 autocast: nearest
        # neighbours in bf16 would pick other codes than inference does.
        with torch.autocast(f_BChw.device.type, enabled=False):
            indices, fhats, loss = self._residual_pass(f_BChw)
        fhat_st_BChw = (fhats[-1].detach() - f_BChw.detach()) + f_BChw
        return fhat_st_BChw, loss, self.usage(indices)

    def usage(self, indices: list[torch.Tensor]) -> CodebookUsage:
        """Code counts per scale, their perplexity exp(H) and the fraction of codes hit."""
        counts_SV = torch.stack(
            [
                idx.reshape(-1).bincount(minlength=self.vocab_size).float() for idx in indices
            ]  # Bl -> V
        )
        probs_SV = counts_SV / counts_SV.sum(dim=1, keepdim=True)
        entropy_S = -(probs_SV * probs_SV.clamp_min(1e-12).log()).sum(dim=1)
        return CodebookUsage(counts_SV, entropy_S.exp(), (counts_SV > 0).float().mean(dim=1))

    @torch.no_grad()
    def f_to_indices(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Token indices per scale, each (B, pn·pn), row-major inside a scale."""
        return self._residual_pass(f_BChw.float())[0]

    @torch.no_grad()
    def f_to_fhats(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Cumulative f_hat after each scale, each (B, Cvae, h, w)."""
        return self._residual_pass(f_BChw.float())[1]

    def indices_to_fhat(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """f_hat = Σ_k phi_k(upsample(codes_k)) in float32."""
        B, side = indices[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, side, side, device=indices[0].device)
        for si, idx_Bl in enumerate(indices):
            f_hat = f_hat + self.phi(si, self._upsampled(si, self.codes_to_map(idx_Bl).float()))
        return f_hat

    def indices_to_teacher_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing input (B, L − pn0², Cvae): running f_hat area-downsampled per scale."""
        B, side = indices[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, side, side, device=indices[0].device)
        inputs = []
        for si in range(min(len(indices), len(self.patch_nums) - 1)):
            f_hat, next_BCpp = self.next_input(si, f_hat, self.codes_to_map(indices[si]).float())
            assert next_BCpp is not None
            inputs.append(next_BCpp.flatten(2).transpose(1, 2))  # BCpp -> B(pp)C
        return torch.cat(inputs, dim=1)

    def next_input(
        self, si: int, f_hat_BChw: torch.Tensor, h_BCpp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add scale si's codes to f_hat; return it and the next (B, Cvae, pn', pn') input."""
        f_hat_BChw = f_hat_BChw + self.phi(si, self._upsampled(si, h_BCpp))
        if si == len(self.patch_nums) - 1:
            return f_hat_BChw, None
        pn = self.patch_nums[si + 1]
        return f_hat_BChw, F.interpolate(f_hat_BChw, size=(pn, pn), mode="area")
