"""Training CLI of VAR-CLIP (Zhang et al., 2024): CLIP, multi-scale VQVAE and next-scale transformer
on synthetic shapes, fine-tuning on an image-caption folder, and evaluation with the oracle."""

# python -m generation.engine.train all --out models/demo          the whole demo pipeline
# python -m generation.engine.train {clip,vqvae,var} --work DIR     one stage (resumes)
# python -m generation.engine.train finetune --from models/demo --data DIR --out DIR
# python -m generation.engine.train evaluate models/demo

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from generation.engine import evaluate as evaluation
from generation.engine.config import VarClipConfig
from generation.engine.pipeline import (
    CONFIG_FILE,
    TEXT_ENCODER_FILE,
    TRANSFORMER_FILE,
    VQVAE_FILE,
    TextToImagePipeline,
    bf16_native,
    build_transformer,
)
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.training import loop, runner
from generation.engine.training.folder_data import CaptionFolderError, read_caption_folder
from generation.engine.training.heap import retain_freed_memory
from generation.engine.training.model_card import build_card, matmul_gflops, write_card
from generation.engine.training.precision import PRECISIONS, with_precision
from generation.engine.training.recipe import PRESETS, Recipe, recipe
from generation.engine.training.var_stage import VarSettings

STAGES = {"clip": runner.run_clip, "vqvae": runner.run_vqvae, "var": runner.run_var}


def _recipe(args: argparse.Namespace) -> Recipe:
    overrides = {"seed": args.seed} if args.seed is not None else {}
    for key in ("clip_steps", "vqvae_steps", "var_steps", "train_images"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    rec = recipe(args.recipe, **overrides)
    if getattr(args, "vqvae_batch", None) is not None:
        rec = dataclasses.replace(
            rec, vqvae=dataclasses.replace(rec.vqvae, batch_size=args.vqvae_batch)
        )
    if getattr(args, "var_batch", None) is not None:
        rec = dataclasses.replace(rec, var=dataclasses.replace(rec.var, batch_size=args.var_batch))
    return _precision(rec, args)


def _precision(rec: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with --precision applied; says so on stderr when bf16 was turned off."""
    rec, notice = with_precision(rec, args.precision, torch.device(args.device))
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    return rec


def _options(args: argparse.Namespace) -> runner.RunOptions:
    return runner.RunOptions(
        device=torch.device(args.device), progress=not args.quiet, stop_after=args.stop_after
    )


def copy_training_files(work: Path, out: Path, recipe_: Recipe) -> None:
    """Loss curves, the CLIP vision tower (for CLIP scores) and its settings, into out."""
    curves = out / "training"
    curves.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        for name in (loop.CURVE_CSV, loop.CURVE_PNG):
            if (work / stage / name).is_file():
                shutil.copyfile(work / stage / name, curves / f"{stage}_{name}")
    clip = load_file(work / "clip" / runner.CLIP_WEIGHTS)
    vision = {k.removeprefix("visual."): v for k, v in clip.items() if k.startswith("visual.")}
    save_file(vision, out / evaluation.CLIP_VISION_FILE)
    (out / evaluation.CLIP_VISION_CONFIG).write_text(
        json.dumps(dataclasses.asdict(recipe_.clip), indent=2) + "\n"
    )


def cmd_all(args: argparse.Namespace) -> int:
    """Data, three stages, checkpoint, evaluation, model card."""
    rec, opts = _recipe(args), _options(args)
    torch.set_num_threads(args.threads or rec.threads)
    work = args.work or Path("var/train") / args.out.name
    # Wall and CPU seconds per step: on a shared machine the CPU time is what the run costs.
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    load_start, speed_start = os.getloadavg()[0], matmul_gflops()
    t0, c0 = time.perf_counter(), time.process_time()
    data = runner.training_data(rec.data_seed, rec.train_images)
    seconds["data"], cpu["data"] = time.perf_counter() - t0, time.process_time() - c0
    for name, run in STAGES.items():
        t0, c0 = time.perf_counter(), time.process_time()
        result = run(rec, work, opts)
        # A resumed stage also counts the training-loop time of earlier invocations.
        seconds[f"stage_{name}"] = max(time.perf_counter() - t0, result.seconds)
        cpu[f"stage_{name}"] = time.process_time() - c0
        if not result.finished:
            print(f"{name}: stopped after {result.steps_done} steps; run again to resume")
            return 3
    digests = runner.assemble(rec, work, args.out)
    copy_training_files(work, args.out, rec)
    evaluated = None
    if not args.skip_eval:
        t0, c0 = time.perf_counter(), time.process_time()
        evaluated = evaluation.evaluate(args.out, args.out, rec.eval_seen, rec.eval_heldout)
        seconds["evaluation"] = time.perf_counter() - t0
        cpu["evaluation"] = time.process_time() - c0
        print(evaluation.markdown_table(evaluated["rows"]))
    seconds["total"], cpu["total"] = sum(seconds.values()), sum(cpu.values())
    command = "python -m generation.engine.train " + shlex.join(sys.argv[1:])
    card = build_card(rec, data, seconds, digests, args.out, evaluated, command)
    card["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()}
    card["machine"]["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    card["machine"]["fp32_matmul_gflops"] = {"start": speed_start, "end": matmul_gflops()}
    card["machine"]["bf16_native"] = bf16_native(opts.device)
    card["machine"]["retain_freed_memory"] = getattr(args, "heap_retained", False)
    card["precision"] = args.precision
    write_card(card, args.out)
    print(json.dumps(card["wall_seconds"]), json.dumps(card["cpu_seconds"]))
    print(f"checkpoint {card['checkpoint_bytes'] / 1e6:.2f} MB")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """One stage, resuming from its work folder."""
    rec = _recipe(args)
    torch.set_num_threads(args.threads or rec.threads)
    result = STAGES[args.command](rec, args.work, _options(args))
    print(f"{args.command}: {result.steps_done} steps, finished={result.finished}")
    return 0 if result.finished else 3


def cmd_finetune(args: argparse.Namespace) -> int:
    """Continue stage 2 from a checkpoint on a folder of image-caption pairs."""
    src: Path = args.source
    config = VarClipConfig.from_dict(json.loads((src / CONFIG_FILE).read_text()))
    if config.text_encoder is None:
        print(f"{src}: fine-tuning needs a text-conditioned checkpoint", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or 2)
    try:
        data = read_caption_folder(args.data, args.captions, config.vqvae.image_size)
    except CaptionFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    vq_state = load_file(src / VQVAE_FILE)
    if not any(k.startswith("encoder.") for k in vq_state):
        print(f"{src / VQVAE_FILE}: no encoder weights, cannot tokenize images", file=sys.stderr)
        return 2
    opts = _options(args)
    vqvae = runner.load_vqvae(config, src / VQVAE_FILE, opts.device)
    text = ClipTextEncoder(config.text_encoder)
    text.load_state_dict(load_file(src / TEXT_ENCODER_FILE), strict=True)
    transformer = build_transformer(config)
    transformer.load_state_dict(load_file(src / TRANSFORMER_FILE), strict=True)
    var = VarSettings(batch_size=args.batch_size, lr=args.lr, warmup=min(20, args.steps))
    rec = dataclasses.replace(PRESETS["demo"], name="finetune", model=config, var=var)
    rec = dataclasses.replace(rec, seed=args.seed or 0, checkpoint_every=args.checkpoint_every)
    rec = _precision(rec, args)
    work = args.work or Path("var/train") / f"{args.out.name}-finetune"
    phrasings = [[c] for c in data.captions]
    result = runner.train_transformer(
        rec, args.steps, transformer, vqvae, text, data.images_NHW3, phrasings, work, opts
    )
    if not result.finished:
        print(f"finetune: stopped after {result.steps_done} steps; run again to resume")
        return 3
    pipe = TextToImagePipeline(config, vqvae.cpu(), transformer.cpu(), text)
    digests = pipe.save_pretrained(args.out)
    runner.write_sha256sums(args.out, digests)
    for name in (evaluation.CLIP_VISION_FILE, evaluation.CLIP_VISION_CONFIG):
        if (src / name).is_file():
            shutil.copyfile(src / name, args.out / name)
    print(f"fine-tuned checkpoint written to {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m generation.engine.train", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--threads", type=int, default=None)
        sp.add_argument("--seed", type=int, default=None)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--stop-after", type=int, default=None, help="simulate an interruption")
        sp.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="auto: the recipe's bf16 autocast where the device has native bf16, else "
            "float32; recipe: as the recipe says; fp32: float32 throughout",
        )

    def recipe_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--recipe", default="demo", choices=sorted(PRESETS))
        for key in ("clip_steps", "vqvae_steps", "var_steps", "train_images", "vqvae_batch",
                    "var_batch"):  # fmt: skip
            sp.add_argument("--" + key.replace("_", "-"), dest=key, type=int, default=None)

    a = sub.add_parser("all", help="data, three stages, checkpoint, evaluation, model card")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--work", type=Path, default=None, help="default var/train/<out name>")
    a.add_argument("--skip-eval", action="store_true")
    common(a)
    recipe_args(a)
    for name in STAGES:
        s = sub.add_parser(name, help=f"stage {name} only (resumes from --work)")
        s.add_argument("--work", type=Path, required=True)
        common(s)
        recipe_args(s)
    f = sub.add_parser("finetune", help="continue stage 2 on an image-caption folder")
    f.add_argument("--from", dest="source", type=Path, required=True)
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--captions", type=Path, default=None, help="default <data>/captions.txt")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--work", type=Path, default=None)
    f.add_argument("--steps", type=int, default=200)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--lr", type=float, default=2e-4)
    f.add_argument("--checkpoint-every", type=int, default=50)
    common(f)
    sub.add_parser(
        "evaluate", help="oracle + CLIP-score evaluation (see generation.engine.evaluate)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    retained = retain_freed_memory()  # 2.5-9 % faster CPU steps (training/heap.py)
    if argv[:1] == ["evaluate"]:
        evaluation.main(argv[1:])
        return 0
    args = parser().parse_args(argv)
    args.heap_retained = retained
    if args.command == "all":
        return cmd_all(args)
    if args.command == "finetune":
        return cmd_finetune(args)
    return cmd_stage(args)


if __name__ == "__main__":
    sys.exit(main())
