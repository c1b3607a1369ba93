"""Each training stage is seeded and resumable: interrupted + resumed equals uninterrupted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from generation.engine.training import loop, runner
from generation.engine.training.recipe import recipe

SMOKE = recipe("smoke")
QUIET = runner.RunOptions(progress=False)
WEIGHTS = {
    "clip": runner.CLIP_WEIGHTS,
    "vqvae": runner.VQVAE_WEIGHTS,
    "var": runner.TRANSFORMER_WEIGHTS,
}


def run_all(work: Path, stop_after: int | None = None) -> None:
    for name, run in (
        ("clip", runner.run_clip),
        ("vqvae", runner.run_vqvae),
        ("var", runner.run_var),
    ):
        if stop_after is not None:
            first = run(SMOKE, work, runner.RunOptions(progress=False, stop_after=stop_after))
            assert not first.finished and first.steps_done == stop_after
            assert (work / name / loop.STATE_FILE).is_file()
        assert run(SMOKE, work, QUIET).finished


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("straight")
    run_all(work)
    return work


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("stage", ["clip", "vqvae", "var"])
def test_interrupted_then_resumed_stage_ends_with_identical_weights(
    straight: Path, tmp_path: Path, stage: str
) -> None:
    resumed = tmp_path / "resumed"
    # Stages before `stage` run straight through; `stage` and later ones are interrupted.
    for name, run in (
        ("clip", runner.run_clip),
        ("vqvae", runner.run_vqvae),
        ("var", runner.run_var),
    ):
        if name == stage:
            assert not run(SMOKE, resumed, runner.RunOptions(progress=False, stop_after=2)).finished
        assert run(SMOKE, resumed, QUIET).finished
    assert_same_weights(straight / stage / WEIGHTS[stage], resumed / stage / WEIGHTS[stage])


def test_same_seed_reproduces_the_same_weights(straight: Path, tmp_path: Path) -> None:
    run_all(tmp_path)
    for stage, name in WEIGHTS.items():
        assert_same_weights(straight / stage / name, tmp_path / stage / name)


def test_each_stage_writes_its_loss_curve(straight: Path) -> None:
    for stage in WEIGHTS:
        rows = (straight / stage / loop.CURVE_CSV).read_text().splitlines()
        assert rows[0].startswith("step,loss")
        assert len(rows) == 1 + {"clip": SMOKE.clip_steps, "vqvae": SMOKE.vqvae_steps,
                                 "var": SMOKE.var_steps}[stage]  # fmt: skip
        assert (straight / stage / loop.CURVE_PNG).stat().st_size > 0


def test_finished_stage_is_not_retrained(straight: Path) -> None:
    before = (straight / "clip" / runner.CLIP_WEIGHTS).stat().st_mtime_ns
    result = runner.run_clip(SMOKE, straight, QUIET)
    assert result.finished and result.steps_done == SMOKE.clip_steps
    assert (straight / "clip" / runner.CLIP_WEIGHTS).stat().st_mtime_ns >= before


def test_epoch_batches_cover_every_item_once_per_epoch() -> None:
    seen = torch.cat([loop.epoch_batch(3, step, 5, 20) for step in range(4)])
    assert sorted(seen.tolist()) == list(range(20))
