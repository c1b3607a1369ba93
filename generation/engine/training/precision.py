"""Training precision: the recipe's bf16 autocast only where the device computes bf16 natively
(`pipeline.bf16_native`); emulated bf16 would turn the demo recipe's half hour into days."""

from __future__ import annotations

import dataclasses

import torch

from generation.engine.pipeline import bf16_native
from generation.engine.training.recipe import Recipe

PRECISIONS = ("auto", "recipe", "fp32")


def with_precision(rec: Recipe, precision: str, device: torch.device) -> tuple[Recipe, str | None]:
    """The recipe as it will run, and a notice when "auto" turned its bf16 autocast off.

    "auto": the recipe's choice, in float32 where the device has no native bf16;
    "recipe": the recipe's choice as written; "fp32": every stage in float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    wants_bf16 = rec.vqvae.bf16 or rec.var.bf16
    if not wants_bf16 or precision == "recipe":
        return rec, None
    if precision == "auto" and bf16_native(device):
        return rec, None
    fp32 = dataclasses.replace(
        rec,
        vqvae=dataclasses.replace(rec.vqvae, bf16=False),
        var=dataclasses.replace(rec.var, bf16=False),
    )
    if precision == "fp32":
        return fp32, None
    return fp32, (
        f"{device.type}: no native bfloat16 here, so the recipe's bf16 autocast is off and "
        "stages 1 and 2 run in float32 (the results differ from a bf16 run; "
        "--precision recipe forces bf16)"
    )
