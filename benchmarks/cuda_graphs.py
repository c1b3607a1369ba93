"""Probe: would CUDA graphs pay for the sampler on a GPU?

At batch 1 on an H100 a d16 image took 0.135 s of which the process's CPU time was all: the GPU
waits on Python and on kernel launches (10 scales x 16 blocks, dozens of small kernels each).
This probe captures each scale's transformer pass (every block and the head, with the KV cache)
as one CUDA graph, replays it inside the unchanged sampler, and compares whole generations
(`pipeline.generate`: text, sampling, decoding) and their tokens against the plain engine.

Only the benchmark patches the engine; nothing here changes the engine's behaviour. How it
works: one persistent `InferenceState` per batch size is captured once; each request's own
AdaLN outputs are copied into it before the first scale, its input into the scale's static
buffer before each replay. Every KV-cache slot a scale reads was written by an earlier scale of
the same request, so the persistent cache needs no copying.

    python benchmarks/cuda_graphs_probe.py --device cuda --batch-sizes 1,16,64
    python benchmarks/cuda_graphs_probe.py --preset tiny --batch-sizes 1,2   # CPU: logic only
On a CPU there is no CUDA graph: each "graph" re-runs the captured call on the persistent
buffers, which checks the copying logic (tokens must match) but says nothing of speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.engine.config import VarClipConfig  # noqa: E402
from generation.engine.pipeline import SamplingSettings, TextToImagePipeline  # noqa: E402
from generation.engine.transformer import InferenceState, NextScaleTransformer  # noqa: E402

CAPTIONS = [
    "a photo of a goldfish swimming in a bowl",
    "a red bicycle leaning against a brick wall",
    "two cups of coffee on a wooden table",
    "a snowy mountain under a clear blue sky",
]


class Replay:
    """A CPU stand-in for a captured graph: replays the call on the same buffers."""

    def __init__(self, fn: Callable[[], torch.Tensor]):
        self.fn = fn
        self.out = fn()

    def replay(self) -> None:
        self.out.copy_(self.fn())


class GraphedSteps:
    """Each scale's `transformer.step` captured once for one batch size, then replayed."""

    def __init__(self, model: NextScaleTransformer, cond: torch.Tensor):
        self.model = model
        # The class's own step: the instance's is replaced by this object's once captured.
        self.plain_step = NextScaleTransformer.step.__get__(model)
        self.state, _ = model.start_inference(cond)
        self.inputs = [
            torch.zeros(2 * cond.shape[0], end - begin, model.pos_1LC.shape[-1], **self._like())
            for begin, end in model.begin_ends
        ]
        self.graphs: list[Any] = []
        self.outs: list[torch.Tensor] = []
        if cond.device.type == "cuda":
            self._capture_cuda()
        else:
            for si, x in enumerate(self.inputs):
                replay = Replay(lambda si=si, x=x: self.plain_step(self.state, si, x))
                self.graphs.append(replay)
                self.outs.append(replay.out)

    def _like(self) -> dict[str, Any]:
        w = self.model.pos_1LC
        return {"dtype": w.dtype, "device": w.device}

    def _capture_cuda(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture, as torch.cuda.graph asks
            for si, x in enumerate(self.inputs):
                self.plain_step(self.state, si, x)
        torch.cuda.current_stream().wait_stream(side)
        pool = None
        for si, x in enumerate(self.inputs):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = self.plain_step(self.state, si, x)
            pool = graph.pool()
            self.graphs.append(graph)
            self.outs.append(out)

    def step(self, state: InferenceState, si: int, x_BlC: torch.Tensor) -> torch.Tensor:
        if si == 0:  # this request's condition into the captured state
            for mine, theirs in zip(self.state.ada, state.ada, strict=True):
                for dst, src in zip(mine, theirs, strict=True):
                    dst.copy_(src)
            for dst, src in zip(self.state.head_ada, state.head_ada, strict=True):
                dst.copy_(src)
        self.inputs[si].copy_(x_BlC)
        self.graphs[si].replay()
        return self.outs[si]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(
    pipe: TextToImagePipeline, B: int, repeats: int, settings: SamplingSettings
) -> tuple[list[float], list[float], list[torch.Tensor]]:
    """Whole generations at batch B: wall seconds, sampling seconds, the last tokens."""
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(B)]
    walls, samples, indices = [], [], []
    for r in range(repeats + 1):  # the first is a warm-up
        sync(pipe.device)
        t0 = time.perf_counter()
        result = pipe.generate(captions, list(range(100 * r, 100 * r + B)), settings)
        sync(pipe.device)
        if r:
            walls.append(time.perf_counter() - t0)
            samples.append(result.seconds["sample"])
        indices = result.indices
    return walls, samples, indices


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="d16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    pipe = TextToImagePipeline.from_config(
        VarClipConfig.from_preset(args.preset), seed=0, device=args.device, dtype=dtype
    )
    settings = SamplingSettings(cfg=4.0, top_k=min(900, pipe.config.vqvae.vocab_size), top_p=0.95)
    plain_step = pipe.transformer.step
    rows = []
    for B in [int(b) for b in args.batch_sizes.split(",")]:
        pipe.transformer.step = plain_step  # type: ignore[method-assign]
        plain, plain_sample, plain_idx = run(pipe, B, args.repeats, settings)
        t0 = time.perf_counter()
        with torch.inference_mode():
            text_BD, _, _ = pipe.encode_captions(CAPTIONS[:1] * B)
            graphed = GraphedSteps(pipe.transformer, text_BD)
        capture_s = time.perf_counter() - t0
        pipe.transformer.step = graphed.step  # type: ignore[method-assign]
        fast, fast_sample, fast_idx = run(pipe, B, args.repeats, settings)
        same = all(torch.equal(a, b) for a, b in zip(plain_idx, fast_idx, strict=True))
        row = {
            "batch": B,
            "plain_s_per_image": statistics.median(plain) / B,
            "graphed_s_per_image": statistics.median(fast) / B,
            "plain_sample_s": statistics.median(plain_sample),
            "graphed_sample_s": statistics.median(fast_sample),
            "speedup_image": statistics.median(plain) / statistics.median(fast),
            "speedup_sampling": statistics.median(plain_sample) / statistics.median(fast_sample),
            "capture_s": capture_s,
            "same_tokens": same,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    pipe.transformer.step = plain_step  # type: ignore[method-assign]
    report = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
