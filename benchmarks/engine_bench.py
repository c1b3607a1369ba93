"""Benchmark of the VAR-CLIP engine: our next-scale sampler (KV cache, memoised AdaLN) against a
sampler without KV cache and a raster-scan autoregressive baseline with the same blocks.

Every configuration runs in a fresh subprocess so that its peak RSS is its own; ratios are taken
between rows of the same run. Weights are random (a d16 checkpoint written once per run).

    python benchmarks/engine_bench.py                      # full CPU run (~15-20 min on 2 cores)
    python benchmarks/engine_bench.py --quick              # smoke run
    python benchmarks/engine_bench.py --device cuda --batch-sizes 1,16,64 --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.engine.config import VarClipConfig  # noqa: E402
from generation.engine.huge_pages import in_effect  # noqa: E402
from generation.engine.pipeline import (  # noqa: E402
    SamplingSettings,
    TextToImagePipeline,
    bf16_native,
    to_uint8,
)
from generation.engine.sampling import (  # noqa: E402
    TokenDraws,
    filter_top_k_top_p,
    guided_logits,
    sample_tokens,
)
from generation.engine.transformer import CachedAttend, KVCache  # noqa: E402

SETTINGS = SamplingSettings(cfg=4.0, top_k=900, top_p=0.95)
CAPTION = (
    "a photo of a goldfish swimming in a bowl"  # 11 tokens with SOT/EOT, like the training set
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# ---------------------------------------------------------------------------------------------
# The three samplers. Each takes text embeddings (B, D) and returns f_hat (B, Cvae, 16, 16).


def ours(pipe: TextToImagePipeline, text_BD: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The engine's sampler as the pipeline runs it: preallocated KV cache, AdaLN memoised (its
    memory-mapped weights handed back once used), last scale's K/V not stored; on a GPU each
    scale replayed from a CUDA graph (batches up to 16) and each image decoded from one."""
    out = sample_tokens(
        pipe.transformer,
        pipe.vqvae.quantize,
        text_BD,
        seeds,
        SETTINGS,
        on_memoised=pipe.per_request_pages.release_module,
        graphs=pipe.graphs.for_batch(len(seeds)) if pipe.graphs is not None else None,
    )
    return out.fhat_BChw


@torch.inference_mode()
def no_kv_cache(pipe: TextToImagePipeline, text_BD: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Same semantics, but every scale re-runs the block-causal forward over the whole prefix."""
    model, quant = pipe.transformer, pipe.vqvae.quantize
    B, S = text_BD.shape[0], len(model.patch_nums)
    draws = TokenDraws(seeds, "per_image")
    both_BD = torch.cat((text_BD, text_BD))
    null_B = torch.arange(2 * B, device=text_BD.device) >= B
    indices: list[torch.Tensor] = []
    for si, (b, e) in enumerate(model.begin_ends):
        if si == 0:
            x = torch.zeros(2 * B, 0, quant.Cvae, dtype=pipe.dtype, device=text_BD.device)
        else:
            x = quant.indices_to_teacher_input(indices).repeat(2, 1, 1)
        logits = model(both_BD, x, null_B)[:, b:e]
        guided = guided_logits(logits, si, S, SETTINGS.cfg)
        probs = filter_top_k_top_p(guided, SETTINGS.top_k, SETTINGS.top_p).softmax(-1)
        indices.append(draws.categorical(probs))
    return quant.indices_to_fhat(indices)


@torch.inference_mode()
def raster(pipe: TextToImagePipeline, text_BD: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Raster-scan AR over the same 16x16 tokens with the same blocks: 256 one-token steps,
    AdaLN memoised, KV cache preallocated (a fair baseline, not a strawman)."""
    model, quant = pipe.transformer, pipe.vqvae.quantize
    B, side = text_BD.shape[0], model.patch_nums[-1]
    n = side * side
    state, x_B1C = model.start_inference(text_BD)
    cfg = model.cfg
    shape = (cfg.depth, 2 * B, cfg.num_heads, n, cfg.width // cfg.num_heads)
    cache = KVCache(
        k=x_B1C.new_empty(shape), v=x_B1C.new_empty(shape), qkv_bias=state.cache.qkv_bias
    )
    attend = CachedAttend(cache)
    pos_1nC = model.pos_1LC[:, -n:]  # any 256 learned positions serve for timing
    codebook = quant.embedding.weight
    draws = TokenDraws(seeds, "per_image")
    tokens = []
    for t in range(n):
        cache.layer, cache.begin, cache.end, cache.write = 0, t, t + 1, True
        x = x_B1C
        for block, ada in zip(model.block_list, state.ada, strict=True):
            x = block(x, ada, attend)
        guided = guided_logits(model.logits(x, state.head_ada), 1, 2, SETTINGS.cfg)
        probs = filter_top_k_top_p(guided, SETTINGS.top_k, SETTINGS.top_p).softmax(-1)
        idx_B1 = draws.categorical(probs)
        tokens.append(idx_B1)
        x_B1C = (model.word_embed(codebook[idx_B1].to(pipe.dtype)) + pos_1nC[:, t : t + 1]).repeat(
            2, 1, 1
        )
    idx_Bn = torch.cat(tokens, dim=1)
    zeros = torch.zeros(B, quant.Cvae, side, side, device=text_BD.device)
    return quant.next_input(len(model.patch_nums) - 1, zeros, quant.codes_to_map(idx_Bn))[0]


SAMPLERS: dict[str, Callable[[TextToImagePipeline, torch.Tensor, list[int]], torch.Tensor]] = {
    "ours": ours,
    "no-kv-cache": no_kv_cache,
    "raster": raster,
}

# ---------------------------------------------------------------------------------------------
# One configuration, in its own process.


def _packed_linear_flops(x_shape: Any, w_shape: Any, *args: Any, out_shape: Any, **kw: Any) -> int:
    """FLOPs of oneDNN's prepacked linear (packed_linear.py), which the counter does not know."""
    rows = 1
    for d in x_shape[:-1]:
        rows *= d
    return 2 * rows * x_shape[-1] * w_shape[0]


# FlopCounterMode wraps these itself (it passes shapes, not tensors).
PACKED_LINEAR_FLOPS: dict[Any, Any] = {}
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
    PACKED_LINEAR_FLOPS[torch.ops.mkldnn._linear_pointwise] = _packed_linear_flops


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Load, warm up, then time `repeats` full generations (text -> tokens -> image)."""
    device = torch.device(job["device"])
    dtype = DTYPES[job["dtype"]]
    decoder_dtype = DTYPES[job.get("decoder_dtype") or job["dtype"]]
    pipe = TextToImagePipeline.from_pretrained(
        job["ckpt"],
        device=device,
        dtype=dtype,
        decoder_dtype=decoder_dtype,
        channels_last=job.get("channels_last", False),
    )
    sampler = SAMPLERS[job["sampler"]]
    global SETTINGS
    SETTINGS = SamplingSettings(cfg=4.0, top_k=min(900, pipe.config.vqvae.vocab_size), top_p=0.95)
    B = job["batch"]
    forwards = [0]
    pipe.transformer.head.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))

    def generate(seed0: int) -> None:
        seeds = list(range(seed0, seed0 + B))
        with torch.inference_mode():
            text_BD, _, _ = pipe.encode_captions([CAPTION] * B)
            fhat = sampler(pipe, text_BD, seeds)
            to_uint8(pipe.vqvae.decode_features(fhat))

    # Warm-up (oneDNN/cuBLAS pick their kernels on first use), then an untimed run that counts
    # the products actually run, so Winograd's and the folded upsampling's smaller counts show.
    # The count is not the warm-up: under its dispatch mode the first run of every kernel
    # happened in a different setting, and the first timed image paid for it (4.43 / 4.65 s
    # against 3.96-4.07 s back to back on the AVX-512 Xeon of 2026-11-27).
    from torch.utils.flop_counter import FlopCounterMode

    # The count runs without CUDA graphs: a replay's kernels pass neither the counter nor the
    # head's forward hook (the graphed path runs the same kernels, so the same FLOPs).
    generate(0)
    graphs, decode_one = pipe.graphs, pipe.vqvae.decode_one
    pipe.graphs, pipe.vqvae.decode_one = None, None
    counter = FlopCounterMode(display=False, custom_mapping=PACKED_LINEAR_FLOPS)
    forwards[0] = 0
    with counter:
        generate(0)
    pipe.graphs, pipe.vqvae.decode_one = graphs, decode_one
    flops_per_image = counter.get_total_flops() / B
    forwards_per_batch = forwards[0]
    times, cpu_times = [], []
    for r in range(job["repeats"]):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        generate(1000 * (r + 1))
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    out = {
        **{k: v for k, v in job.items() if k != "ckpt"},
        "s_per_batch_min": min(times),
        "s_per_batch_median": statistics.median(times),
        "s_per_image_min": min(times) / B,
        "s_per_image_median": statistics.median(times) / B,
        "images_per_s": B / statistics.median(times),
        # CPU seconds of this process (OpenMP threads wait passively, so this is work done):
        # far less sensitive than wall time to other processes sharing the cores.
        "cpu_s_per_image_median": statistics.median(cpu_times) / B,
        "forwards_per_batch": forwards_per_batch,
        "cuda_graphs": pipe.graphs is not None,
        "gflop_per_image": flops_per_image / 1e9,
        "peak_rss_gb": peak_rss_gb(),
        "threads": torch.get_num_threads(),
        "huge_pages": in_effect(),
    }
    if device.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def run_calibration(job: dict[str, Any]) -> dict[str, Any]:
    """Float32 matmul throughput right now: how much of the machine this run actually got."""
    device = torch.device(job["device"])
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(10):
        a @ b
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "kind": "calibration",
        "gflops_wall": 10 * 2 * n**3 / wall / 1e9,
        "cpu_over_wall": cpu / wall,
    }


@torch.inference_mode()
def run_decoder_error(job: dict[str, Any]) -> dict[str, Any]:
    """Max/mean pixel difference of the fast-conv, channels_last and bf16 decoders against fp32."""
    pipe = TextToImagePipeline.from_pretrained(job["ckpt"], device=job["device"])
    cfg = pipe.config
    quant = pipe.vqvae.quantize
    g = torch.Generator().manual_seed(0)
    indices = [
        torch.randint(0, cfg.vqvae.vocab_size, (2, pn * pn), generator=g)
        for pn in cfg.vqvae.patch_nums
    ]
    fhat = quant.indices_to_fhat([i.to(pipe.device) for i in indices])
    rows = {}
    variants = [
        ("fp32", torch.float32, False, False),
        ("fp32+fast convs", torch.float32, False, True),
        ("fp32+channels_last", torch.float32, True, False),
        ("bf16", torch.bfloat16, False, False),
        ("bf16+channels_last", torch.bfloat16, True, False),
    ]
    if not bf16_native(pipe.device):
        variants = [v for v in variants if v[1] != torch.bfloat16]
    for name, dtype, cl, fast in variants:
        pipe.vqvae.prepare_decoder(dtype, cl, fast_convs=fast)
        pipe.vqvae.decode_features(fhat[:1])
        times = []
        for _ in range(job["repeats"]):
            sync(pipe.device)
            t0 = time.perf_counter()
            img = pipe.vqvae.decode_features(fhat[:1])
            sync(pipe.device)
            times.append(time.perf_counter() - t0)
        rows[name] = (pipe.vqvae.decode_features(fhat), statistics.median(times))
    ref = rows["fp32"][0]
    ref_u8 = to_uint8(ref).astype(int)
    result = {"kind": "decoder", "device": job["device"]}
    for name, (img, seconds) in rows.items():
        diff01 = (img - ref).abs() / 2  # [-1, 1] -> [0, 1] units
        diff_u8 = abs(to_uint8(img).astype(int) - ref_u8)
        result[name] = {
            "s_per_image": seconds,
            "max_abs_01": diff01.max().item(),
            "mean_abs_01": diff01.mean().item(),
            "max_abs_uint8": int(diff_u8.max()),
            "frac_uint8_changed": float((diff_u8 > 0).mean()),
        }
    return result


# ---------------------------------------------------------------------------------------------
# The driver.


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    batches = [int(b) for b in args.batch_sizes.split(",")]
    dtypes = args.dtype.split(",")
    repeats = 1 if args.quick else args.repeats
    jobs = []
    for dtype in dtypes:
        for B in batches:
            # One timed repeat for CPU batches keeps a full CPU run near 20 minutes.
            few = args.quick or (args.device == "cpu" and B > 1)
            repeats = 1 if few else args.repeats
            jobs.append({"sampler": "ours", "dtype": dtype, "batch": B, "repeats": repeats})
            if dtype == "fp32" and args.device == "cpu":
                jobs.append(
                    {
                        "sampler": "ours",
                        "dtype": dtype,
                        "decoder_dtype": "bf16",
                        "channels_last": True,
                        "batch": B,
                        "repeats": repeats,
                    }
                )
            jobs.append({"sampler": "no-kv-cache", "dtype": dtype, "batch": B, "repeats": repeats})
        # Raster at batch 1 only: 256 sequential steps make larger batches too slow on a CPU.
        jobs.append({"sampler": "raster", "dtype": dtype, "batch": 1, "repeats": 1})
    if args.quick:
        jobs = [j for j in jobs if j["batch"] == batches[0]]
    if args.samplers:
        jobs = [j for j in jobs if j["sampler"] in args.samplers.split(",")]
    if not bf16_native(torch.device(args.device)):
        # Emulated bf16 runs a 1024³ matmul ~60x slower than float32: hours, not a figure.
        print(f"note: no native bfloat16 on this {args.device}; bf16 rows skipped", flush=True)
        jobs = [j for j in jobs if "bf16" not in (j["dtype"], j.get("decoder_dtype"))]
    for job in jobs:
        job["device"] = args.device
    return jobs


def spawn(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    # Passive OpenMP waiting: on a shared machine, spinning worker threads that lose their core
    # make every parallel region wait for a descheduled thread (measured 5x slower at load 4).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    t0 = time.time()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if proc.returncode != 0:
        return {**job, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.time() - t0
    return result


def label(row: dict[str, Any]) -> str:
    name = row["sampler"]
    if row.get("decoder_dtype") and row["decoder_dtype"] != row["dtype"]:
        name += " (bf16 channels_last decoder)"
    return name


def table(rows: list[dict[str, Any]], device: str, peak_tflops: float) -> str:
    gpu = device != "cpu"
    head = (
        "| sampler | dtype | batch | s/image (min / median) | CPU s/image | images/s"
        " | forwards/batch | GFLOP/image | peak RSS GB |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|"
    if gpu:
        head += " peak GPU GB | % of bf16 peak |"
        sep += "---|---|"
    lines = [head, sep]
    for r in rows:
        if "error" in r:
            lines.append(f"| {label(r)} | {r['dtype']} | {r['batch']} | error: {r['error']} |")
            continue
        line = (
            f"| {label(r)} | {r['dtype']} | {r['batch']} | {r['s_per_image_min']:.3f} / "
            f"{r['s_per_image_median']:.3f} | {r['cpu_s_per_image_median']:.2f} | "
            f"{r['images_per_s']:.2f} | "
            f"{r['forwards_per_batch']:.0f} | {r['gflop_per_image']:.4g} | {r['peak_rss_gb']:.2f} |"
        )
        if gpu:
            achieved = r["gflop_per_image"] * r["images_per_s"] / 1e3
            line += f" {r.get('peak_gpu_gb', 0):.1f} | {100 * achieved / peak_tflops:.1f} % |"
        lines.append(line)
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    def find(sampler: str, dtype: str, batch: int) -> dict[str, Any] | None:
        for r in rows:
            if (
                r["sampler"] == sampler
                and r["dtype"] == dtype
                and r["batch"] == batch
                and "error" not in r
                and not r.get("decoder_dtype")
            ):
                return r
        return None

    def speedup(slow: dict[str, Any], fast: dict[str, Any]) -> str:
        wall = slow["s_per_image_median"] / fast["s_per_image_median"]
        if "cpu_s_per_image_median" not in slow:
            return f"{wall:.2f}x (wall)"
        cpu = slow["cpu_s_per_image_median"] / fast["cpu_s_per_image_median"]
        return f"{wall:.2f}x (wall), {cpu:.2f}x (CPU time)"

    out = []
    for dtype in sorted({r["dtype"] for r in rows}):
        ours1, raster1 = find("ours", dtype, 1), find("raster", dtype, 1)
        if ours1 and raster1:
            out.append(f"next-scale vs raster-scan, {dtype}, batch 1: {speedup(raster1, ours1)}")
        for B in sorted({r["batch"] for r in rows}):
            o, n = find("ours", dtype, B), find("no-kv-cache", dtype, B)
            if o and n:
                out.append(f"KV cache vs no cache, {dtype}, batch {B}: {speedup(n, o)}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one repeat, first batch size only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samplers", help="comma list of ours, no-kv-cache, raster (default all)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak")
    parser.add_argument("--json", type=Path, help="write all rows here")
    parser.add_argument("--ckpt", type=Path, help="reuse a checkpoint directory")
    parser.add_argument("--preset", default="d16", help="model size (tiny for a smoke test)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="per configuration, s")
    args = parser.parse_args()

    if args.worker:
        job = json.loads(args.worker)
        kind = job.get("kind")
        if kind == "decoder":
            result = run_decoder_error(job)
        elif kind == "calibration":
            result = run_calibration(job)
        else:
            result = run_worker(job)
        print(json.dumps(result))
        return 0

    # One thread here: the parent only writes the checkpoint, and with OMP_WAIT_POLICY=ACTIVE
    # its idle OpenMP threads would spin for the whole run on the cores the workers time
    # (calibration fell from 310 to 150 GFLOP/s when that happened).
    torch.set_num_threads(1)
    t_start, load_start = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        ckpt = args.ckpt or Path(tmp) / "d16"
        if not (ckpt / "config.json").is_file():
            print(f"writing a random-weight {args.preset} checkpoint to {ckpt} ...", flush=True)
            config = VarClipConfig.from_preset(args.preset)
            TextToImagePipeline.from_config(config, seed=0).save_pretrained(ckpt)
        calibration = [spawn({"kind": "calibration", "device": args.device}, args.timeout)]
        print(f"calibration: {json.dumps(calibration[0])}", flush=True)
        rows = []
        for job in plan(args):
            job["ckpt"] = str(ckpt)
            print(
                f"running {json.dumps({k: v for k, v in job.items() if k != 'ckpt'})}", flush=True
            )
            rows.append(spawn(job, args.timeout))
            print(f"  -> {json.dumps(rows[-1])}", flush=True)
        decoder = spawn(
            {
                "kind": "decoder",
                "device": args.device,
                "ckpt": str(ckpt),
                "repeats": 1 if args.quick else 2,
            },
            args.timeout,
        )
        calibration.append(spawn({"kind": "calibration", "device": args.device}, args.timeout))
    report = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "threads": next((row["threads"] for row in rows if "threads" in row), None),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "total_s": time.time() - t_start,
        "rows": rows,
        "ratios": ratios(rows),
        "decoder": decoder,
        "calibration_start_end": calibration,
    }
    print()
    print(table(rows, args.device, args.peak_tflops))
    print()
    for line in report["ratios"]:
        print(line)
    print()
    print("decoder vs fp32:", json.dumps(decoder, indent=1))
    print(
        "fp32 2048^3 matmul GFLOP/s at start and end:", [c.get("gflops_wall") for c in calibration]
    )
    print(
        f"load average start {load_start}, end {report['load_average_end']}, "
        f"total {report['total_s']:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
