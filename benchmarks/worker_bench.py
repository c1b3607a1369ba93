"""Worker micro-batching: throughput of N single-image jobs run one by one vs batched.

Platform mode (default) runs real jobs through ``generation.services.job_execute`` on the
embedded default (SQLite, local files) in a temporary folder, so the ratio includes the
database, PNG encoding and storage work around the engine. ``--engine-only`` skips Django
and measures the engine batches alone (for a GPU machine, where Django is not installed).

    python benchmarks/worker_bench.py --preset d16 --jobs 32 --batch 8
    python benchmarks/worker_bench.py --engine-only --device cuda --dtype bf16 \\
        --jobs 128 --batch-sizes 1,8,16,32,64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CAPTIONS = [
    "a large red circle on the left, blue background",
    "small yellow star in the centre over green",
    "a small white cross at the top, black background",
    "large purple triangle on the right over orange",
]


def _captions(n: int) -> list[str]:
    return [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]


def engine_only(args: argparse.Namespace) -> dict[str, object]:
    """Time the engine on ``jobs`` captions at each batch size; return images/s per size."""
    import torch

    from generation.engine.config import VarClipConfig
    from generation.engine.pipeline import SamplingSettings, TextToImagePipeline

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    pipe = TextToImagePipeline.from_config(
        VarClipConfig.from_preset(args.preset), seed=0, device=args.device, dtype=dtype
    )
    settings = SamplingSettings(top_k=min(900, pipe.config.vqvae.vocab_size))
    captions = _captions(args.jobs)
    seeds = list(range(args.jobs))
    results = {}
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        # Warm-up at this batch size: a GPU picks kernels and grows its allocator per new shape,
        # which would otherwise land in the timed loop (all of it when jobs == size).
        pipe.generate(captions[:size], seeds[:size], settings)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, args.jobs, size):
            pipe.generate(captions[i : i + size], seeds[i : i + size], settings)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        results[size] = {"seconds": elapsed, "images_per_s": args.jobs / elapsed}
        print(f"batch {size:>3}: {args.jobs / elapsed:8.2f} images/s ({elapsed:.2f} s)", flush=True)
    base = results[min(results)]["images_per_s"]
    for row in results.values():
        row["ratio_vs_unbatched"] = row["images_per_s"] / base
    return {"mode": "engine-only", "device": args.device, "dtype": args.dtype, "rows": results}


def platform(args: argparse.Namespace) -> dict[str, object]:
    """Run real jobs through job_execute unbatched and batched; return the throughput ratio."""
    var_dir = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    os.environ["VAR_DIR"] = str(var_dir)
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "S3_BUCKET"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    import generation.services as services
    from generation.engine.config import VarClipConfig
    from generation.engine.pipeline import TextToImagePipeline
    from generation.models import GenerationJob, JobStatus
    from generation.worker import load_pipeline
    from governance.registry.services import (
        alias_move,
        model_version_register,
        sources_from_directory,
    )

    call_command("migrate", verbosity=0)
    checkpoint = var_dir / "model"
    TextToImagePipeline.from_config(VarClipConfig.from_preset(args.preset), seed=0).save_pretrained(
        checkpoint
    )
    version = model_version_register(
        model_name="bench", sources=sources_from_directory(checkpoint), registered_by=None
    )
    alias_move(
        model_name="bench", alias="production", version=version.version, moved_by=None, reason="b"
    )
    user = get_user_model().objects.create(username="bench")
    # The benchmark drives job_execute itself; the in-process dispatcher must not race it.
    services.dispatch_job = lambda **_: None
    load_pipeline(version)  # load once, as a long-lived worker does

    def run(max_batch: int) -> float:
        jobs = [
            services.job_create(
                created_by=user, caption=c, seed=i, model_reference="bench@production"
            )
            for i, c in enumerate(_captions(args.jobs))
        ]
        start = time.perf_counter()
        for job in jobs:
            services.job_execute(job_id=job.id, worker="bench", max_batch=max_batch)
        elapsed = time.perf_counter() - start
        done = GenerationJob.objects.filter(
            pk__in=[j.id for j in jobs], status=JobStatus.SUCCEEDED
        ).count()
        assert done == args.jobs, f"only {done} of {args.jobs} jobs succeeded"
        return elapsed

    unbatched = run(1)
    print(f"unbatched: {args.jobs / unbatched:.3f} jobs/s ({unbatched:.1f} s)", flush=True)
    batched = run(args.batch)
    print(f"batch {args.batch}: {args.jobs / batched:.3f} jobs/s ({batched:.1f} s)", flush=True)
    return {
        "mode": "platform",
        "preset": args.preset,
        "jobs": args.jobs,
        "batch": args.batch,
        "unbatched_s": unbatched,
        "batched_s": batched,
        "throughput_ratio": unbatched / batched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="d16")
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="platform mode: max batch")
    parser.add_argument("--engine-only", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-sizes", default="1,8,32", help="engine-only mode")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = engine_only(args) if args.engine_only else platform(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
