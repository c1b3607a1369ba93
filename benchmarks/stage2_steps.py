"""How many stage-2 (transformer) steps the demo recipe needs: train the transformer once per step
count on the same finished stage-0/1 weights and score each on validation captions.

The work folder must hold a finished ``clip/clip.safetensors`` and ``vqvae/vqvae.safetensors``
(from ``python -m generation.engine.train all`` or its ``clip`` and ``vqvae`` commands). Each
step count trains in a fresh temporary folder; the oracle scores it on ``eval_set`` seed 555
(validation captions, not the reported seed-1234 set). Writes ``eval_<steps>.json`` and
``loss_<steps>.csv`` to ``--out``.

    python benchmarks/stage2_steps.py --work var/train/demo5 --steps 800,1100,1700 \\
        --device cuda --out var/stage2_steps
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.engine import evaluate as evaluation  # noqa: E402
from generation.engine.train import copy_training_files  # noqa: E402
from generation.engine.training import runner  # noqa: E402
from generation.engine.training.recipe import PRESETS, recipe  # noqa: E402

VALIDATION_SEED = 555
# The finished, frozen stages that stage 2 reads: (work sub-folder, weights file).
FROZEN_STAGES = (("clip", runner.CLIP_WEIGHTS), ("vqvae", runner.VQVAE_WEIGHTS))


def one_run(src: Path, tmp: Path, name: str, steps: int, device: str, out: Path) -> None:
    """Train stage 2 for `steps` on src's stage-0/1 weights, evaluate, write the figures."""
    rec = recipe(name, var_steps=steps)
    work, model = tmp / f"work{steps}", tmp / f"model{steps}"
    for stage, weights in FROZEN_STAGES:
        (work / stage).mkdir(parents=True)
        shutil.copyfile(src / stage / weights, work / stage / weights)
    t0 = time.perf_counter()
    result = runner.run_var(rec, work, runner.RunOptions(torch.device(device), progress=False))
    train_s = time.perf_counter() - t0
    if not result.finished:
        raise SystemExit(f"stage 2 stopped after {result.steps_done} of {steps} steps")
    runner.assemble(rec, work, model)
    copy_training_files(work, model, rec)
    t1 = time.perf_counter()
    scored = evaluation.evaluate(
        model, model, rec.eval_seen, rec.eval_heldout, seed=VALIDATION_SEED
    )
    print(f"steps {steps}: train {train_s:.1f} s, eval {time.perf_counter() - t1:.1f} s")
    print(evaluation.markdown_table(scored["rows"]), flush=True)
    record = {"steps": steps, "device": device, "train_s": train_s, "rows": scored["rows"]}
    (out / f"eval_{steps}.json").write_text(json.dumps(record, indent=1) + "\n")
    shutil.copyfile(work / "var" / "loss.csv", out / f"loss_{steps}.csv")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="holds finished stages 0 and 1")
    parser.add_argument("--steps", default="800,1100,1700", help="comma list of step counts")
    parser.add_argument("--recipe", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (evaluation)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for stage, weights in FROZEN_STAGES:
        if not (args.work / stage / weights).is_file():
            parser.error(f"{args.work / stage / weights} is missing: finish stages 0 and 1 first")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage2-steps-") as tmp:
        for steps in [int(s) for s in args.steps.split(",")]:
            one_run(args.work, Path(tmp), args.recipe, steps, args.device, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
