"""Training precision: the recipe's bf16 autocast runs only where the device has native bf16,
unless the user asks otherwise, and the CLI says when it turned bf16 off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.engine import train
from generation.engine.training import precision
from generation.engine.training.recipe import recipe

CPU = torch.device("cpu")


@pytest.fixture
def no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CPU's instruction set is outside the project: pretend it lacks bf16 dot products.
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_native", lambda device: True)


def test_demo_recipe_asks_for_bf16_in_stages_1_and_2() -> None:
    rec = recipe("demo")
    assert rec.vqvae.bf16 and rec.var.bf16


@pytest.mark.usefixtures("no_native_bf16")
def test_auto_turns_bf16_off_without_native_support_and_says_so() -> None:
    rec, notice = precision.with_precision(recipe("demo"), "auto", CPU)
    assert not rec.vqvae.bf16 and not rec.var.bf16
    assert notice is not None and "float32" in notice and "--precision recipe" in notice
    # Nothing else in the recipe moves.
    assert rec.vqvae.batch_size == recipe("demo").vqvae.batch_size
    assert rec.var_steps == recipe("demo").var_steps


@pytest.mark.usefixtures("native_bf16")
def test_auto_keeps_the_recipe_where_bf16_is_native() -> None:
    assert precision.with_precision(recipe("demo"), "auto", CPU) == (recipe("demo"), None)


@pytest.mark.usefixtures("no_native_bf16")
def test_recipe_forces_the_recipe_and_fp32_forces_float32() -> None:
    assert precision.with_precision(recipe("demo"), "recipe", CPU) == (recipe("demo"), None)
    rec, notice = precision.with_precision(recipe("demo"), "fp32", CPU)
    assert (rec.vqvae.bf16, rec.var.bf16, notice) == (False, False, None)


@pytest.mark.usefixtures("no_native_bf16")
def test_a_float32_recipe_needs_no_notice() -> None:
    assert precision.with_precision(recipe("smoke"), "auto", CPU) == (recipe("smoke"), None)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, recipe, fp32"):
        precision.with_precision(recipe("demo"), "fp16", CPU)


def test_only_cpu_and_cuda_can_be_native() -> None:
    assert precision.bf16_native(torch.device("meta")) is False
    assert isinstance(precision.bf16_native(CPU), bool)


@pytest.mark.usefixtures("no_native_bf16")
def test_cli_applies_precision_and_prints_the_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = train.parser().parse_args(["var", "--work", str(tmp_path), "--recipe", "demo"])
    rec = train._recipe(args)
    assert not rec.var.bf16
    assert "note:" in capsys.readouterr().err
    args = train.parser().parse_args(["var", "--work", str(tmp_path), "--precision", "recipe"])
    assert train._recipe(args).var.bf16
