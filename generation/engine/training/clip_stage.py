"""Stage 0: a small open_clip CLIP (Radford et al., 2021) trained contrastively on caption-image
pairs, then frozen; its text tower is copied into the engine's ClipTextEncoder for VAR-CLIP."""

# It stands in for OpenAI's CLIP-L/14 text tower, which cannot be downloaded here: the model is
# open_clip's own `CLIP` class with exact GELU, and the engine loads a real text tower the same
# way. Letters: N captions/images, T tokens run, W text width, D embedding width.

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import nn

from generation.engine.config import TextEncoderConfig
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.training.loop import TrainingStage, epoch_batch, warmup_cosine


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """Vision tower size and the contrastive optimisation recipe.

    vision="vit" is open_clip's ViT (patch_size, vision_layers, vision_head_width apply);
    vision="conv" is ConvVisionTower (vision_width only), which learns where and what a shape is
    in far fewer steps on small synthetic images.
    """

    vision: str = "vit"
    vision_width: int = 96
    vision_layers: int = 3
    vision_head_width: int = 32
    patch_size: int = 8
    batch_size: int = 128
    group_size: int = 8  # images per (colour, background) group in a batch; 0: plain batches
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 30


class ConvVisionTower(nn.Module):
    """Three strided convolutions (side /8), flattened so position stays explicit, LayerNorm and
    a projection to the embedding: (N, 3, S, S) -> (N, D). No per-channel normalisation, which
    would erase the flat colours these images are made of."""

    def __init__(self, width: int, embed_dim: int, image_size: int):
        super().__init__()
        if image_size % 8:
            raise ValueError(
                f"ConvVisionTower needs an image side divisible by 8, got {image_size}"
            )
        self.convs = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        flat = 2 * width * (image_size // 8) ** 2
        self.ln = nn.LayerNorm(flat)
        self.proj = nn.Linear(flat, embed_dim)

    def forward(self, img_N3SS: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ln(self.convs(img_N3SS).flatten(1)))  # type: ignore[no-any-return]


def build_clip(text: TextEncoderConfig, settings: ClipSettings, image_size: int) -> open_clip.CLIP:
    """open_clip's CLIP with the text tower described by `text` and the vision tower `settings`
    names (open_clip's ViT, or ConvVisionTower in place of it)."""
    if settings.vision not in ("vit", "conv"):
        raise ValueError(f"vision must be 'vit' or 'conv', got {settings.vision!r}")
    if settings.vision == "vit":
        vision_cfg = CLIPVisionCfg(
            layers=settings.vision_layers,
            width=settings.vision_width,
            head_width=settings.vision_head_width,
            patch_size=settings.patch_size,
            image_size=image_size,
        )
    else:  # the smallest ViT open_clip builds (one patch, one layer), replaced below
        vision_cfg = CLIPVisionCfg(
            layers=1, width=8, head_width=8, patch_size=image_size, image_size=image_size
        )
    text_cfg = CLIPTextCfg(
        context_length=text.context_length,
        vocab_size=text.vocab_size,
        width=text.width,
        heads=text.heads,
        layers=text.layers,
        mlp_ratio=text.mlp_ratio,
    )
    clip = open_clip.CLIP(
        embed_dim=text.embed_dim,
        vision_cfg=vision_cfg,
        text_cfg=text_cfg,
        quick_gelu=text.quick_gelu,
    )
    if settings.vision == "conv":
        clip.visual = ConvVisionTower(settings.vision_width, text.embed_dim, image_size)
    return clip


def image_input(images_NHW3: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1], the CLIP vision input used throughout."""
    x = torch.as_tensor(images_NHW3)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # NHWC -> NCHW


def text_tower_state(clip: open_clip.CLIP) -> dict[str, torch.Tensor]:
    """The text-tower tensors of a CLIP, under the names ClipTextEncoder expects."""
    skip = ("visual.", "logit_scale", "logit_bias", "attn_mask")
    return {k: v for k, v in clip.state_dict().items() if not k.startswith(skip)}


def to_text_encoder(clip: open_clip.CLIP, cfg: TextEncoderConfig) -> ClipTextEncoder:
    """A frozen ClipTextEncoder holding a copy of the CLIP's text tower (strict load)."""
    encoder = ClipTextEncoder(cfg)
    encoder.load_state_dict(text_tower_state(clip), strict=True)
    return encoder.eval().requires_grad_(False)


def encode_text(clip: open_clip.CLIP, ids_NT: torch.Tensor) -> torch.Tensor:
    """Unit-norm text embeddings (N, D), running only up to the batch's last EOT.

    Exact: the mask is causal and pooling reads the EOT position, as in ClipTextEncoder.
    """
    eot_N = ids_NT.argmax(dim=-1)
    T = int(eot_N.max().item()) + 1
    x_NTW = clip.token_embedding(ids_NT[:, :T]) + clip.positional_embedding[:T]
    causal_TT = torch.full((T, T), float("-inf"), device=ids_NT.device).triu_(1)
    x_NTW = clip.ln_final(clip.transformer(x_NTW, attn_mask=causal_TT))
    pooled_NW = x_NTW[torch.arange(x_NTW.shape[0], device=x_NTW.device), eot_N]
    return F.normalize(pooled_NW @ clip.text_projection, dim=-1)


def clip_loss(clip: open_clip.CLIP, img_N3HW: torch.Tensor, ids_NT: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch."""
    img_ND = clip.encode_image(img_N3HW, normalize=True)
    txt_ND = encode_text(clip, ids_NT)
    logits_NN = clip.logit_scale.exp() * img_ND @ txt_ND.T
    labels_N = torch.arange(img_N3HW.shape[0], device=img_N3HW.device)
    return (F.cross_entropy(logits_NN, labels_N) + F.cross_entropy(logits_NN.T, labels_N)) / 2


def grouped_batch(
    members: list[np.ndarray], groups: int, per_group: int, generator: torch.Generator
) -> torch.Tensor:
    """`groups` random groups, `per_group` random members of each: the batch's hard negatives."""
    picked = torch.randperm(len(members), generator=generator)[:groups].tolist()
    rows = []
    for g in picked:
        take = torch.randperm(len(members[g]), generator=generator)[:per_group].numpy()
        rows.append(members[g][take])
    return torch.from_numpy(np.concatenate(rows)).long()


class ClipStage(TrainingStage):
    """Contrastive training of a CLIP on (image, caption) pairs.

    With group keys, each batch is made of groups of images that share a key, so telling them
    apart takes the attributes the key leaves free. The synthetic set alternates (colour,
    background) groups, which need shape, size and position, with (colour, background, shape)
    groups, which need size and position: plain random batches are separable by colour alone
    and teach the text tower little else.
    """

    name = "stage 0: CLIP"

    def __init__(
        self,
        clip: open_clip.CLIP,
        images_NHW3: np.ndarray,
        ids_UT: torch.Tensor,
        phrasings_NK: torch.Tensor,
        group_keys: list[np.ndarray],
        settings: ClipSettings,
        total_steps: int,
        seed: int,
        device: torch.device,
    ):
        self.clip = clip.to(device).train()
        self.images = torch.from_numpy(images_NHW3)
        self.ids_UT, self.phrasings_NK = ids_UT, phrasings_NK
        # One member list per grouping; step k uses grouping k mod G.
        self.groupings: list[list[np.ndarray]] = []
        for keys_N in group_keys if settings.group_size > 0 else []:
            members = [np.flatnonzero(keys_N == k) for k in np.unique(keys_N)]
            self.groupings.append([m for m in members if len(m) >= settings.group_size])
        self.settings, self.total_steps, self.seed, self.device = (
            settings,
            total_steps,
            seed,
            device,
        )
        decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        rest = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay},
             {"params": rest, "weight_decay": 0.0}],
            lr=settings.lr, betas=(0.9, 0.98), eps=1e-6,
        )  # fmt: skip

    def modules(self) -> dict[str, nn.Module]:
        return {"clip": self.clip}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        s = self.settings
        lr = s.lr * warmup_cosine(step, self.total_steps, s.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        members = self.groupings[step % len(self.groupings)] if self.groupings else []
        if members:
            groups = min(s.batch_size // s.group_size, len(members))
            idx = grouped_batch(members, groups, s.group_size, generator)
        else:
            idx = epoch_batch(self.seed, step, s.batch_size, len(self.images))
        # One phrasing per image per step: the text tower learns what the phrasings share.
        pick = torch.randint(0, self.phrasings_NK.shape[1], (len(idx),), generator=generator)
        ids_BT = self.ids_UT[self.phrasings_NK[idx, pick]].to(self.device)
        img = image_input(self.images[idx]).to(self.device)
        loss = clip_loss(self.clip, img, ids_BT)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        with torch.no_grad():  # CLIP's clamp keeps the temperature from running away
            self.clip.logit_scale.clamp_(0, np.log(100.0))
        return {"loss": float(loss.item()), "lr": lr}

    def extra_state(self) -> dict[str, Any]:
        return {}


@torch.no_grad()
def zero_shot_choice(
    clip: open_clip.CLIP, images_NHW3: np.ndarray, ids_KT: torch.Tensor, batch: int = 256
) -> np.ndarray:
    """Index of the most similar of K candidate captions for each image, (N,)."""
    clip.eval()
    text_KD = encode_text(clip, ids_KT)
    best = []
    for i in range(0, len(images_NHW3), batch):
        img_ND = clip.encode_image(image_input(images_NHW3[i : i + batch]), normalize=True)
        best.append((img_ND @ text_KD.T).argmax(dim=1).numpy())
    return np.concatenate(best)
