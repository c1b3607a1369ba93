"""What decoding image by image costs, and whether batched decoding would change pixels.

At inference the pipeline decodes every image on its own (`VQVAE.decode_features`), so that an
image's pixels depend only on its tokens, never on the batch it was sampled in. On a CPU that
costs nothing (one d16 image keeps every core busy); on a GPU one image's decode is bound by
kernel launches, so the engine replays a CUDA graph of it. This script measures, on one device
and decoder dtype:

- time per image: one image after another, the engine's path, and one batched call;
- exactness of the engine's path: its pixels against each image decoded alone (must be equal);
- exactness: the batched call's pixels against the image-by-image ones (float and uint8);
- at a fixed batch size, whether an image's pixels depend on its neighbours or its position
  (the same image decoded first among one set of neighbours and last among others). Where they
  do not, fixed-size chunks would give batch-independent pixels at batch speed.

    python benchmarks/decode_batching.py --device cuda --dtype bf16 --batch-sizes 1,8,16,64
    python benchmarks/decode_batching.py --preset tiny --batch-sizes 1,4   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.engine.config import VarClipConfig  # noqa: E402
from generation.engine.pipeline import TextToImagePipeline, to_uint8  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device: torch.device, fn: Any, repeats: int) -> tuple[torch.Tensor, float]:
    """fn() once to warm up, then the median of `repeats` timed calls; returns the last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """How far two decoded batches (in [-1, 1]) are apart, per image and in uint8 pixels."""
    same = [bool(torch.equal(x, y)) for x, y in zip(a, b, strict=True)]
    diff_u8 = abs(to_uint8(a).astype(int) - to_uint8(b).astype(int))
    return {
        "images_bit_equal": sum(same),
        "images": len(same),
        "max_abs_01": ((a - b).abs().max() / 2).item(),
        "max_abs_uint8": int(diff_u8.max()),
        "frac_uint8_changed": float((diff_u8 > 0).mean()),
    }


@torch.inference_mode()
def measure(pipe: TextToImagePipeline, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    vq, device = pipe.vqvae, pipe.device
    cfg = pipe.config.vqvae
    B_max = max(batches)
    g = torch.Generator().manual_seed(0)
    # Twice the largest batch: the second half gives other neighbours for the position test.
    indices = [
        torch.randint(0, cfg.vocab_size, (2 * B_max, pn * pn), generator=g).to(device)
        for pn in cfg.patch_nums
    ]
    fhat = vq.quantize.indices_to_fhat(indices)
    # Each image alone, by the plain decoder (no CUDA graph): what every path must equal.
    alone = torch.cat([vq.decode_batch(fhat[i : i + 1].clone()) for i in range(2 * B_max)])
    rows = []
    for B in batches:
        chunk = fhat[:B].contiguous()

        def serial(c: torch.Tensor = chunk) -> torch.Tensor:
            return torch.cat([vq.decode_batch(c[i : i + 1].clone()) for i in range(c.shape[0])])

        # One image after another; the engine's path (on a GPU: one image's captured CUDA graph
        # replayed per image); and `decode_batch` on the whole batch, which the engine avoids.
        _, t_serial = timed(device, serial, repeats)
        engine, t_engine = timed(device, lambda c=chunk: vq.decode_features(c), repeats)
        batched, t_batched = timed(device, lambda c=chunk: vq.decode_batch(c), repeats)
        row: dict[str, Any] = {
            "batch": B,
            "s_per_image_serial": t_serial / B,
            "s_per_image_engine": t_engine / B,
            "s_per_image_batched": t_batched / B,
            "engine_speedup_over_serial": t_serial / t_engine,
            "batched_speedup_over_serial": t_serial / t_batched,
            "engine_equals_alone": compare(engine, alone[:B]),
            "batched_vs_alone": compare(batched, alone[:B]),
        }
        if B > 1:
            # Image 0 first among images 1..B-1, then last among images B_max..: same shape,
            # other neighbours, other position.
            others = fhat[B_max : B_max + B - 1]
            moved = vq.decode_batch(torch.cat([others, fhat[:1]]).contiguous())[-1:]
            row["fixed_batch_position_and_neighbours"] = compare(moved, batched[:1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", help="decoder dtype: fp32 or bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-sizes", default="1,8,16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="d16", help="model size (tiny for a smoke test)")
    parser.add_argument("--ckpt", type=Path, help="reuse a checkpoint directory")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    if args.dtype not in DTYPES:
        parser.error(f"--dtype must be one of {', '.join(DTYPES)}")
    try:
        batches = sorted({int(b) for b in args.batch_sizes.split(",")})
    except ValueError:
        parser.error("--batch-sizes must be a comma list of integers")
    if batches[0] < 1:
        parser.error("--batch-sizes must be positive")
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="decode-batching-") as tmp:
        ckpt = args.ckpt or Path(tmp) / args.preset
        if not (ckpt / "config.json").is_file():
            print(f"writing a random-weight {args.preset} checkpoint to {ckpt} ...", flush=True)
            config = VarClipConfig.from_preset(args.preset)
            TextToImagePipeline.from_config(config, seed=0).save_pretrained(ckpt)
        pipe = TextToImagePipeline.from_pretrained(
            ckpt,
            device=device,
            decoder_dtype=DTYPES[args.dtype],
            channels_last=args.channels_last,
        )
        rows = measure(pipe, batches, args.repeats)
    report = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
        "decoder_dtype": args.dtype,
        "channels_last": args.channels_last,
        "fast_convs": pipe.vqvae.fast_convs,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    print()
    print("| batch | s/image: serial | engine | batched | engine = alone | batched = alone |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e, c = r["engine_equals_alone"], r["batched_vs_alone"]
        print(
            f"| {r['batch']} | {r['s_per_image_serial']:.4f} | {r['s_per_image_engine']:.4f} | "
            f"{r['s_per_image_batched']:.4f} | {e['images_bit_equal']}/{e['images']} | "
            f"{c['images_bit_equal']}/{c['images']} bit-equal, max {c['max_abs_uint8']}/255 |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
