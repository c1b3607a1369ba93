"""Runs the three training stages of the VAR-CLIP demo (Zhang et al., 2024) in order and assembles
their weights into a checkpoint directory that TextToImagePipeline.from_pretrained loads."""

# Work-folder layout: <work>/{clip,vqvae,var}/ each hold state.pt (resumable), loss.csv,
# loss.png and, once finished, the stage's weights as safetensors. A later stage reads the
# earlier stages' weights from there, so each stage can also be run on its own.

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import open_clip
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from generation.engine.config import VarClipConfig
from generation.engine.pipeline import TextToImagePipeline, build_transformer
from generation.engine.synthetic import COLOURS, SHAPES, TEMPLATES, ShapesDataset, make_dataset
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.tokenizer import default_tokenizer
from generation.engine.training import loop
from generation.engine.training.clip_stage import ClipStage, build_clip, to_text_encoder
from generation.engine.training.recipe import Recipe
from generation.engine.training.var_stage import VarStage
from generation.engine.training.vqvae_stage import VQVAEStage, tokenize
from generation.engine.transformer import NextScaleTransformer, init_weights
from generation.engine.vqvae import VQVAE

M = TypeVar("M", bound=nn.Module)

CLIP_WEIGHTS = "clip.safetensors"
VQVAE_WEIGHTS = "vqvae.safetensors"
TRANSFORMER_WEIGHTS = "transformer.safetensors"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what to train: device, progress bars, simulated interruption."""

    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    stop_after: int | None = None


@functools.lru_cache(maxsize=2)
def training_data(seed: int, count: int) -> ShapesDataset:
    """The rendered training split (cached: every stage of one process shares it)."""
    return make_dataset(seed, count, split="train")


def _settings(recipe: Recipe, steps: int, opts: RunOptions) -> loop.LoopSettings:
    return loop.LoopSettings(
        steps=steps,
        seed=recipe.seed,
        checkpoint_every=recipe.checkpoint_every,
        stop_after=opts.stop_after,
        progress=opts.progress,
    )


def _seeded(seed: int, build: Callable[[], M]) -> M:
    """Build a module under a fixed seed without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _save(module: nn.Module, path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)


def run_clip(recipe: Recipe, work: Path, opts: RunOptions) -> loop.LoopResult:
    """Stage 0: contrastive CLIP on the training pairs; writes clip.safetensors when done."""
    text_cfg = recipe.model.text_encoder
    assert text_cfg is not None, "the demo is text-conditioned"
    data = training_data(recipe.data_seed, recipe.train_images)
    unique, phrasings_NK = phrasing_table(all_phrasings(data))
    ids_UT = default_tokenizer().encode(unique).ids
    colours_N = np.array(
        [COLOURS.index(a.colour) * 16 + COLOURS.index(a.background) for a in data.attributes]
    )
    shapes_N = np.array([SHAPES.index(a.shape) for a in data.attributes])
    keys = [colours_N, colours_N * 8 + shapes_N]
    clip = _seeded(recipe.seed, functools.partial(build_clip, text_cfg, recipe.clip, 64))
    assert isinstance(clip, open_clip.CLIP)
    stage = ClipStage(
        clip, data.images_NHW3, ids_UT, phrasings_NK, keys,
        recipe.clip, recipe.clip_steps, recipe.seed, opts.device,
    )  # fmt: skip
    result = loop.run(stage, _settings(recipe, recipe.clip_steps, opts), work / "clip")
    if result.finished:
        _save(clip, work / "clip" / CLIP_WEIGHTS)
    return result


def load_clip(recipe: Recipe, work: Path) -> open_clip.CLIP:
    """The finished stage-0 CLIP, frozen."""
    assert recipe.model.text_encoder is not None
    clip = build_clip(recipe.model.text_encoder, recipe.clip, 64)
    clip.load_state_dict(load_file(work / "clip" / CLIP_WEIGHTS), strict=True)
    return clip.eval().requires_grad_(False)


def run_vqvae(recipe: Recipe, work: Path, opts: RunOptions) -> loop.LoopResult:
    """Stage 1: the multi-scale VQVAE; writes vqvae.safetensors when done."""
    data = training_data(recipe.data_seed, recipe.train_images)
    vqvae = _seeded(recipe.seed, functools.partial(VQVAE, recipe.model.vqvae, with_encoder=True))
    assert isinstance(vqvae, VQVAE)
    stage = VQVAEStage(
        vqvae, data.images_NHW3, recipe.vqvae, recipe.vqvae_steps, recipe.seed, opts.device
    )
    result = loop.run(stage, _settings(recipe, recipe.vqvae_steps, opts), work / "vqvae")
    if result.finished:
        _save(vqvae.to(memory_format=torch.contiguous_format), work / "vqvae" / VQVAE_WEIGHTS)
    return result


def load_vqvae(cfg: VarClipConfig, path: Path, device: torch.device) -> VQVAE:
    """A VQVAE with its encoder from a safetensors file, frozen."""
    vqvae = VQVAE(cfg.vqvae, with_encoder=True)
    vqvae.load_state_dict(load_file(path), strict=True)
    return vqvae.to(device).eval().requires_grad_(False)


def all_phrasings(data: ShapesDataset) -> list[list[str]]:
    """Every phrasing of every image's caption, (N, K) strings."""
    return [[a.caption(t) for t in range(len(TEMPLATES))] for a in data.attributes]


def phrasing_table(phrasings: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Distinct captions (U) and each image's phrasings as indices into them, (N, K)."""
    unique = sorted({c for row in phrasings for c in row})
    where = {c: i for i, c in enumerate(unique)}
    return unique, torch.tensor([[where[c] for c in row] for row in phrasings], dtype=torch.long)


@torch.no_grad()
def embed_captions(
    text: ClipTextEncoder, phrasings: Sequence[Sequence[str]], batch: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct caption embeddings (U, D) and each image's phrasing indices into them (N, K)."""
    unique, index_NK = phrasing_table(phrasings)
    tok = default_tokenizer()
    device = text.text_projection.device
    rows = [
        text.encode(tok.encode(unique[i : i + batch]).ids.to(device)).cpu()
        for i in range(0, len(unique), batch)
    ]
    return torch.cat(rows), index_NK


def train_transformer(
    recipe: Recipe,
    steps: int,
    transformer: NextScaleTransformer,
    vqvae: VQVAE,
    text: ClipTextEncoder,
    images_NHW3: np.ndarray,
    phrasings: Sequence[Sequence[str]],
    work: Path,
    opts: RunOptions,
) -> loop.LoopResult:
    """Stage 2 on any captioned images (the synthetic set, or a fine-tuning folder)."""
    tokens_NL = tokenize(vqvae, images_NHW3)
    text_UD, phrasings_NK = embed_captions(text.to(opts.device), phrasings)
    stage = VarStage(
        transformer, vqvae.quantize, tokens_NL, text_UD, phrasings_NK,
        recipe.var, steps, recipe.seed, opts.device,
    )  # fmt: skip
    result = loop.run(stage, _settings(recipe, steps, opts), work / "var")
    if result.finished:
        _save(transformer, work / "var" / TRANSFORMER_WEIGHTS)
    return result


def run_var(recipe: Recipe, work: Path, opts: RunOptions) -> loop.LoopResult:
    """Stage 2 on the synthetic set: every image carries all its caption phrasings."""
    assert recipe.model.text_encoder is not None
    data = training_data(recipe.data_seed, recipe.train_images)
    vqvae = load_vqvae(recipe.model, work / "vqvae" / VQVAE_WEIGHTS, opts.device)
    text = to_text_encoder(load_clip(recipe, work), recipe.model.text_encoder)
    phrasings = all_phrasings(data)
    transformer = _seeded(recipe.seed, functools.partial(build_transformer, recipe.model))
    assert isinstance(transformer, NextScaleTransformer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        init_weights(transformer)
    return train_transformer(
        recipe, recipe.var_steps, transformer, vqvae, text, data.images_NHW3, phrasings, work, opts
    )


def assemble(recipe: Recipe, work: Path, out: Path) -> dict[str, str]:
    """Write the checkpoint directory (config + three safetensors); return name -> SHA-256."""
    assert recipe.model.text_encoder is not None
    cpu = torch.device("cpu")
    vqvae = load_vqvae(recipe.model, work / "vqvae" / VQVAE_WEIGHTS, cpu)
    transformer = build_transformer(recipe.model)
    transformer.load_state_dict(load_file(work / "var" / TRANSFORMER_WEIGHTS), strict=True)
    text = to_text_encoder(load_clip(recipe, work), recipe.model.text_encoder)
    # The VQVAE keeps its encoder: fine-tuning needs it to tokenize new images.
    pipe = TextToImagePipeline(recipe.model, vqvae, transformer, text, device=cpu)
    digests = pipe.save_pretrained(out)
    write_sha256sums(out, digests)
    return digests


def write_sha256sums(out: Path, digests: dict[str, str]) -> None:
    """SHA256SUMS in `sha256sum -c` format."""
    lines = [f"{digest}  {name}\n" for name, digest in sorted(digests.items())]
    (out / "SHA256SUMS").write_text("".join(lines))
