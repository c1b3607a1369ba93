"""CUDA graphs in the engine (generation/engine/cuda_graphs.py): whole generations with the
sampler's captured scales and the decoder's captured image against the plain path, at each
batch size, and whether tokens and pixels are the same.

Both paths run in one process on one pipeline (its `graphs` switched off and on), so the ratio
is taken between runs on the same warm GPU. Capture time is reported apart: it is paid once per
batch size and process.

    python benchmarks/cuda_graphs.py --device cuda --batch-sizes 1,4,16,64
    python benchmarks/cuda_graphs.py --preset tiny --batch-sizes 1,2   # CPU: logic only
On a CPU there is no CUDA graph: EagerBackend re-runs each captured call on the captured
buffers, which checks that tokens and pixels match but says nothing of speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generation.engine.config import VarClipConfig  # noqa: E402
from generation.engine.cuda_graphs import (  # noqa: E402
    CudaGraphBackend,
    DecoderGraph,
    EagerBackend,
    GraphBackend,
    GraphCache,
)
from generation.engine.pipeline import SamplingSettings, TextToImagePipeline  # noqa: E402

CAPTIONS = [
    "a photo of a goldfish swimming in a bowl",
    "a red bicycle leaning against a brick wall",
    "two cups of coffee on a wooden table",
    "a snowy mountain under a clear blue sky",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(
    pipe: TextToImagePipeline, B: int, repeats: int, settings: SamplingSettings
) -> tuple[list[float], list[float], list[torch.Tensor], np.ndarray]:
    """Whole generations at batch B after one warm-up: wall seconds, sampling seconds, and the
    last run's tokens and images."""
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(B)]
    walls, samples = [], []
    for r in range(repeats + 1):
        sync(pipe.device)
        t0 = time.perf_counter()
        result = pipe.generate(captions, list(range(100 * r, 100 * r + B)), settings)
        sync(pipe.device)
        if r:
            walls.append(time.perf_counter() - t0)
            samples.append(result.seconds["sample"])
    return walls, samples, result.indices, result.images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch-sizes", default="1,4,16,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="d16")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint directory (default: random)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    if args.ckpt:
        pipe = TextToImagePipeline.from_pretrained(
            args.ckpt, device=args.device, dtype=dtype, cuda_graphs=False
        )
    else:
        config = VarClipConfig.from_preset(args.preset)
        pipe = TextToImagePipeline.from_config(
            config, seed=0, device=args.device, dtype=dtype, cuda_graphs=False
        )
    backend: GraphBackend = (
        CudaGraphBackend(pipe.device) if pipe.device.type == "cuda" else EagerBackend()
    )
    batches = [int(b) for b in args.batch_sizes.split(",")]
    graphs = GraphCache(pipe.transformer, backend, max_batch=max(batches), keep=1)
    decoder = DecoderGraph(pipe.vqvae.decode_batch, backend)
    settings = SamplingSettings(cfg=4.0, top_k=min(900, pipe.config.vqvae.vocab_size), top_p=0.95)
    rows = []
    for B in batches:
        pipe.graphs, pipe.vqvae.decode_one = None, None
        plain, plain_sample, plain_idx, plain_images = run(pipe, B, args.repeats, settings)
        sync(pipe.device)
        t0 = time.perf_counter()
        graphs.for_batch(B)
        sync(pipe.device)
        capture_s = time.perf_counter() - t0
        pipe.graphs, pipe.vqvae.decode_one = graphs, decoder
        fast, fast_sample, fast_idx, fast_images = run(pipe, B, args.repeats, settings)
        row = {
            "batch": B,
            "plain_s_per_image": statistics.median(plain) / B,
            "graphed_s_per_image": statistics.median(fast) / B,
            "plain_sample_s": statistics.median(plain_sample),
            "graphed_sample_s": statistics.median(fast_sample),
            "speedup_image": statistics.median(plain) / statistics.median(fast),
            "speedup_sampling": statistics.median(plain_sample) / statistics.median(fast_sample),
            "capture_s": capture_s,
            "same_tokens": all(torch.equal(a, b) for a, b in zip(plain_idx, fast_idx, strict=True)),
            "same_pixels": bool((plain_images == fast_images).all()),
            "peak_gpu_gb": (
                torch.cuda.max_memory_allocated() / 1e9 if pipe.device.type == "cuda" else None
            ),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "device": args.device if pipe.device.type == "cpu" else torch.cuda.get_device_name(0),
        "rows": rows,
    }
    print()
    print("| batch | s/image plain | s/image graphs | x image | sampling s plain / graphs | x |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['plain_s_per_image']:.4f} | {r['graphed_s_per_image']:.4f} | "
            f"{r['speedup_image']:.2f} | {r['plain_sample_s']:.3f} / {r['graphed_sample_s']:.3f} "
            f"| {r['speedup_sampling']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if not all(r["same_tokens"] and r["same_pixels"] for r in rows):
        print("TOKENS OR PIXELS DIFFER between the plain and the graphed path", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
