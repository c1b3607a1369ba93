"""Is the second core helping right now? The d16 decoder and a cache-resident product, timed
with two threads and with one, round after round, in one process (random weights).

On the shared 2 vCPU AMD EPYC (Zen 4) of 2026-11-27 our decoder switched, from one stretch of
seconds to the next, between about 1.25 and 2.0 s per image while the reference's decoder stayed
at 2.37 s. This shows when that happens: in the slow stretches the probe (a 36x36 by 36x40,960
float32 product, the shape of a Winograd transform, 12 MB in and out, so it lives in L3) takes
longer with two threads than with one, while a 1024³ product (compute-bound) keeps its speed.
Each row is one round; compare the columns within a row.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/decoder_threads.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.engine.config import VarClipConfig  # noqa: E402
from generation.engine.vqvae import VQVAE  # noqa: E402


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds per call (mean of `repeats` calls after one untimed call)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def decoder(preset: str, fast: bool) -> VQVAE:
    """The preset's decoder with random weights, prepared as the pipeline prepares it on a CPU."""
    torch.manual_seed(0)
    vqvae = VQVAE(VarClipConfig.from_preset(preset).vqvae, with_encoder=False).eval()
    vqvae.requires_grad_(False)
    vqvae.prepare_decoder(torch.float32, channels_last=False, fast_convs=fast)
    return vqvae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--preset", default="d16")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    threads = torch.get_num_threads()
    fast, direct = decoder(args.preset, True), decoder(args.preset, False)
    cfg = fast.cfg
    side = cfg.patch_nums[-1]
    fhat = torch.randn(1, cfg.z_channels, side, side)
    t, x, out = torch.randn(36, 36), torch.randn(36, 40_960), torch.empty(36, 40_960)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    columns = {
        "fast decoder s": lambda: fast.decode_features(fhat),
        "direct decoder s": lambda: direct.decode_features(fhat),
        "probe ms": lambda: torch.mm(t, x, out=out),
        "1024³ GFLOP/s": lambda: a @ b,
    }
    counts = {"fast decoder s": 1, "direct decoder s": 1, "probe ms": 20, "1024³ GFLOP/s": 5}
    rows: list[dict[str, float]] = []
    print(f"{args.preset} decoder, {side}² latent, {threads} threads available")
    print("| round | threads | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with torch.inference_mode():
        for r in range(1, args.rounds + 1):
            for n in sorted({threads, 1}, reverse=True):
                torch.set_num_threads(n)
                row = {k: timed(fn, counts[k]) for k, fn in columns.items()}
                row["probe ms"] *= 1e3
                row["1024³ GFLOP/s"] = 2 * 1024**3 / row["1024³ GFLOP/s"] / 1e9
                row["threads"] = n
                rows.append(row)
                cells = " | ".join(f"{row[k]:.3f}" for k in columns)
                print(f"| {r} | {n} | {cells} |", flush=True)
            torch.set_num_threads(threads)
    for n in sorted({threads, 1}, reverse=True):
        mine = [row for row in rows if row["threads"] == n]
        medians = ", ".join(f"{k} {statistics.median(x[k] for x in mine):.3f}" for k in columns)
        print(f"median over rounds, {n} thread(s): {medians}")


if __name__ == "__main__":
    main()
