"""Shared fixtures: the reference parity set (tests/fixtures/var_clip_parity) and tiny models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from generation.engine.checkpoint import (
    load_strict,
    strip_official_transformer,
    strip_official_vqvae,
)
from generation.engine.config import TransformerConfig, VarClipConfig, VQVAEConfig
from generation.engine.pipeline import TextToImagePipeline
from generation.engine.transformer import NextScaleTransformer
from generation.engine.vqvae import VQVAE

PARITY_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "var_clip_parity"


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    # The models here are tiny: one thread is fastest, and with other processes on the same
    # cores, OpenMP's spinning worker threads make two threads 10-30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parity_config() -> dict[str, Any]:
    """The fixture's config.json."""
    return json.loads((PARITY_DIR / "config.json").read_text())  # type: ignore[no-any-return]


def parity_vqvae_config() -> VQVAEConfig:
    """The fixture's VQVAE, expressed in our config class."""
    c = parity_config()
    ed, ctor = c["vqvae"]["encoder_decoder"], c["vqvae"]["constructor"]
    return VQVAEConfig(
        vocab_size=ctor["vocab_size"],
        z_channels=ctor["z_channels"],
        ch=ed["ch"],
        ch_mult=tuple(ed["ch_mult"]),
        num_res_blocks=ed["num_res_blocks"],
        patch_nums=tuple(ctor["v_patch_nums"]),
        beta=ctor["beta"],
        quant_resi=ctor["quant_resi"],
        num_phi=ctor["share_quant_resi"],
        quant_conv_ks=ctor["quant_conv_ks"],
    )


def parity_transformer_config() -> TransformerConfig:
    """The fixture's VAR-CLIP transformer, expressed in our config class."""
    ctor = parity_config()["var"]["constructor"]
    return TransformerConfig(
        depth=ctor["depth"],
        width=ctor["embed_dim"],
        num_heads=ctor["num_heads"],
        mlp_ratio=ctor["mlp_ratio"],
        cond_dim=ctor["n_cond_embed"],
        norm_eps=ctor["norm_eps"],
        attn_l2_norm=ctor["attn_l2_norm"],
    )


@pytest.fixture(scope="session")
def ref_vqvae() -> VQVAE:
    """Our VQVAE holding the fixture's weights."""
    model = VQVAE(parity_vqvae_config()).eval()
    sd = load_file(str(PARITY_DIR / "vqvae.safetensors"))
    strip_official_vqvae(model, sd, "vqvae.safetensors")
    load_strict(model, sd, "vqvae.safetensors")
    return model


@pytest.fixture(scope="session")
def ref_transformer() -> NextScaleTransformer:
    """Our transformer holding the fixture's weights."""
    cfg = parity_vqvae_config()
    model = NextScaleTransformer(
        parity_transformer_config(),
        vocab_size=cfg.vocab_size,
        z_channels=cfg.z_channels,
        patch_nums=cfg.patch_nums,
    ).eval()
    sd = load_file(str(PARITY_DIR / "var.safetensors"))
    strip_official_transformer(model, sd, "var.safetensors")
    load_strict(model, sd, "var.safetensors")
    return model


@pytest.fixture(scope="session")
def vqvae_io() -> dict[str, torch.Tensor]:
    """Inputs and outputs of the reference VQVAE."""
    return load_file(str(PARITY_DIR / "vqvae_io.safetensors"))


@pytest.fixture(scope="session")
def var_io() -> dict[str, torch.Tensor]:
    """Condition batch and full-sequence logits of the reference transformer."""
    return load_file(str(PARITY_DIR / "var_io.safetensors"))


@pytest.fixture(scope="session")
def sample_io() -> dict[str, torch.Tensor]:
    """Outputs of the reference sampler."""
    return load_file(str(PARITY_DIR / "sample_io.safetensors"))


@pytest.fixture(scope="session")
def tiny_config() -> VarClipConfig:
    """The tiny preset."""
    return VarClipConfig.from_preset("tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_config: VarClipConfig) -> TextToImagePipeline:
    """A tiny pipeline with deterministic random weights."""
    return TextToImagePipeline.from_config(tiny_config, seed=0)
