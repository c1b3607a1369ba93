"""Our engine against the reference VAR-CLIP code, timed in one process on the same weights.

The reference (daixiangzi/VAR-CLIP, built on FoundationVision/VAR) is not part of this
repository and none of its code is copied here: point `--reference-src` at a checkout of it.

    git clone https://github.com/daixiangzi/VAR-CLIP /tmp/VAR-CLIP
    python benchmarks/reference_bench.py --reference-src /tmp/VAR-CLIP \
        --json benchmarks/out/reference_cpu.json

Steps, each in its own subprocess:

1. weights: the reference builds its d16 VQVAE and VAR-CLIP transformer (its own
   `build_vae_var` and `init_weights`; the VQVAE, which the reference only ever loads, gets
   PyTorch's default init) and open_clip builds a random `ViT-L-14` CLIP, the model the
   reference loads for text. They are saved in the released formats (VQVAE state dict,
   training state `trainer` → `var_wo_ddp`, CLIP state dict), and our own loaders turn the same
   files into one of our checkpoint directories, so both sides run identical weights.
2. rss (one process per side): each side loads the way it does in use (the reference: full
   CLIP, its `clip_vit_l14` from `pretrained/ViT-L-14.pt`; ours: `from_pretrained`) and
   generates one image; the peak RSS of that process is its memory figure (with
   `--isolated`, each side's own process after its warm-up image gives it).
3. speed: all sides loaded in one process (with `--isolated`: each in a process of its own,
   stopped while the others run; see ISOLATED_SIDES); one warm-up each, then they take turns for
   `--repeats` timed generations (caption → text embedding → 10 scales → decoded image),
   cfg 4, top-k 900, top-p 0.95. Each timed image directly follows an untimed one of the same
   side, as in a worker serving a queue: a side that has sat idle while the others ran is
   slower at first (on the VM of 2026-11-27 an image after 90 s idle took 16.9 s against
   14.5 s back to back, every part of it slower), and that penalty would weigh most on the
   fastest side. Sides: the reference; ours as `from_pretrained` sets it up
   (packed linear weights, fast decoder convolutions on a float32 CPU pipeline); and
   "ours-plain" with both turned off, to show what they add. Ours samples with
   `rng="reference"` and the same seed, so the warm-up also checks parity at full size:
   token maps per scale and pixels are compared against the reference's.

The reference mutates global state when it builds (it replaces `reset_parameters` of
`nn.Linear`, `nn.Conv2d` and others by a no-op); our models are only ever loaded from files
here, so that does not change them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CAPTION = "a photo of a goldfish swimming in a bowl"  # engine_bench.py's caption
CFG, TOP_K, TOP_P = 4.0, 900, 0.95
PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
DEPTH = 16
CLIP_MODEL = "ViT-L-14"  # what the reference's clip_vit_l14 builds (exact GELU)
REFERENCE_FILES = ("models/var.py", "models/vqvae.py", "models/clip.py", "tokenizer/__init__.py")
VAE_FILE, VAR_FILE, CLIP_FILE = "vae_ch160v4096z32.pth", "ar-ckpt-last.pth", "ViT-L-14.pt"
OURS_DIR = "ours"

# ---------------------------------------------------------------------------------------------
# Import helpers: the reference's top-level packages (`models`, `tokenizer`, `dist`) go first
# on sys.path; ours are reached through the repository root behind them.


def import_paths(reference_src: Path) -> None:
    sys.path[:0] = [str(reference_src), str(ROOT)]


def check_reference_src(path: Path) -> Path:
    missing = [f for f in REFERENCE_FILES if not (path / f).is_file()]
    if missing:
        raise SystemExit(
            f"--reference-src {path} is not a VAR-CLIP checkout (missing {', '.join(missing)}); "
            "get one with: git clone https://github.com/daixiangzi/VAR-CLIP"
        )
    return path.resolve()


PATCHED_INITS = (
    "Linear",
    "LayerNorm",
    "BatchNorm2d",
    "SyncBatchNorm",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
)


@contextlib.contextmanager
def default_inits() -> Iterator[tuple[type, ...]]:
    """Undo, on leaving, the reference's replacement of these classes' `reset_parameters` by
    no-ops (set on each class itself; most inherit the method from a base class)."""
    import torch.nn as nn

    classes = tuple(getattr(nn, name) for name in PATCHED_INITS)
    own = {cls: cls.__dict__.get("reset_parameters") for cls in classes}
    try:
        yield classes
    finally:
        for cls, fn in own.items():
            if fn is not None:
                cls.reset_parameters = fn
            elif "reset_parameters" in cls.__dict__:
                delattr(cls, "reset_parameters")


def build_reference(device: str = "cpu") -> tuple[Any, Any]:
    """The reference's d16 VQVAE and VAR-CLIP transformer, as its demo builds them."""
    from models import build_vae_var  # the reference's package

    return build_vae_var(
        V=4096,
        Cvae=32,
        ch=160,
        share_quant_resi=4,
        device=device,
        patch_nums=PATCH_NUMS,
        n_cond_embed=768,
        depth=DEPTH,
        shared_aln=False,
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# Step 1: one set of random weights, in the released formats and in ours.


def run_weights(job: dict[str, Any]) -> dict[str, Any]:
    import open_clip
    import torch

    from generation.engine import convert_clip
    from generation.engine.checkpoint import load_official_transformer, load_official_vqvae
    from generation.engine.config import VarClipConfig
    from generation.engine.pipeline import TextToImagePipeline

    work = Path(job["work"])
    torch.manual_seed(job["seed"])
    with default_inits() as classes:
        vae, var = build_reference()
    # The reference never initialises its VQVAE (it always loads the released file), so its
    # convolutions hold whatever memory they were given: give them PyTorch's default init.
    for module in vae.modules():
        if isinstance(module, classes):
            module.reset_parameters()
    clip = open_clip.create_model(CLIP_MODEL, pretrained=None)
    (work / "pretrained").mkdir(parents=True, exist_ok=True)
    torch.save(vae.state_dict(), work / VAE_FILE)
    torch.save({"trainer": {"var_wo_ddp": var.state_dict()}}, work / VAR_FILE)
    clip_sd = clip.state_dict()
    torch.save(clip_sd, work / "pretrained" / CLIP_FILE)

    # Ours, through the documented path for released files (docs/engine.md).
    vqvae = load_official_vqvae(work / VAE_FILE)
    transformer = load_official_transformer(work / VAR_FILE)
    text = convert_clip.text_encoder_from_state(dict(clip_sd), str(work / "pretrained" / CLIP_FILE))
    config = VarClipConfig(vqvae=vqvae.cfg, transformer=transformer.cfg, text_encoder=text.cfg)
    TextToImagePipeline(config, vqvae, transformer, text).save_pretrained(work / OURS_DIR)
    return {"kind": "weights", "files": sorted(p.name for p in work.iterdir())}


# ---------------------------------------------------------------------------------------------
# Step 2 and 3: each side as it runs in use.


class Reference:
    """The reference's loading and sampling, as in its demo_sample.py."""

    def __init__(self, work: Path, dtype: str):
        import torch
        from clip_util import CLIPWrapper  # the reference's
        from models.clip import clip_vit_l14  # the reference's
        from tokenizer import tokenize  # the reference's

        self.torch = torch
        self.tokenize = tokenize
        self.autocast = dtype == "bf16"
        with default_inits():
            self.vae, self.var = build_reference()
        # clip_vit_l14 reads pretrained/ViT-L-14.pt relative to the working directory.
        cwd = Path.cwd()
        os.chdir(work)
        try:
            self.clip = CLIPWrapper(clip_vit_l14(pretrained=True).eval(), normalize=True)
        finally:
            os.chdir(cwd)
        self.vae.load_state_dict(torch.load(work / VAE_FILE, map_location="cpu"), strict=True)
        state = torch.load(work / VAR_FILE, map_location="cpu")
        self.var.load_state_dict(state["trainer"]["var_wo_ddp"], strict=True)
        del state
        self.vae.eval(), self.var.eval()
        for p in (*self.vae.parameters(), *self.var.parameters()):
            p.requires_grad_(False)

    def generate(self, seed: int) -> Any:
        """Caption -> uint8 image (1, H, W, 3)."""
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.autocast):
            emb = self.clip.encode_text(self.tokenize([CAPTION]))
            img01 = self.var.autoregressive_infer_cfg(
                B=1, label_B=emb, g_seed=seed, cfg=CFG, top_k=TOP_K, top_p=TOP_P
            )
        u8 = (img01.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return u8.permute(0, 2, 3, 1).numpy()

    def tokens(self, seed: int) -> tuple[list[Any], Any]:
        """Generate once, recording the token map drawn at each scale."""
        import models.var as ref_var

        drawn: list[Any] = []
        original = ref_var.sample_with_top_k_top_p_

        def recording(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            drawn.append(out[:, :, 0].clone())
            return out

        ref_var.sample_with_top_k_top_p_ = recording
        try:
            image = self.generate(seed)
        finally:
            ref_var.sample_with_top_k_top_p_ = original
        return drawn, image


class Ours:
    """The engine as the worker runs it (packed linear weights and fast decoder convolutions
    wherever from_pretrained turns them on)."""

    PLAIN = False

    def __init__(self, work: Path, dtype: str):
        import torch

        from generation.engine.pipeline import SamplingSettings, TextToImagePipeline

        off = {"pack_weights": False, "fast_convs": False} if self.PLAIN else {}
        self.pipe = TextToImagePipeline.from_pretrained(
            work / OURS_DIR, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32, **off
        )
        self.settings = SamplingSettings(cfg=CFG, top_k=TOP_K, top_p=TOP_P, rng="reference")

    def generate(self, seed: int) -> Any:
        return self.pipe.generate([CAPTION], [seed], self.settings).images

    def tokens(self, seed: int) -> tuple[list[Any], Any]:
        result = self.pipe.generate([CAPTION], [seed], self.settings)
        return result.indices, result.images


class OursPlain(Ours):
    """The engine without packed weights and fast convolutions: what each of them adds."""

    PLAIN = True


SIDES: dict[str, type[Reference] | type[Ours]] = {
    "reference": Reference,
    "ours-plain": OursPlain,
    "ours": Ours,
}


def run_rss(job: dict[str, Any]) -> dict[str, Any]:
    side = SIDES[job["side"]](Path(job["work"]), job["dtype"])
    side.generate(job["seed"])
    return {"kind": "rss", "side": job["side"], "peak_rss_gb": peak_rss_gb()}


def parity(ref: tuple[list[Any], Any], ours: tuple[list[Any], Any]) -> dict[str, Any]:
    """How far our warm-up generation agrees with the reference's, scale by scale."""
    import numpy as np

    ref_tokens, ref_img = ref
    our_tokens, our_img = ours
    pairs = [(r.cpu(), o.cpu()) for r, o in zip(ref_tokens, our_tokens, strict=True)]
    same = [bool((r == o).all()) for r, o in pairs]
    diff = np.abs(ref_img.astype(int) - our_img.astype(int))
    return {
        "scales_identical": sum(same),
        "scales": len(same),
        "first_differing_scale": None if all(same) else same.index(False) + 1,
        "tokens_identical_frac": sum(int((r == o).sum()) for r, o in pairs)
        / sum(r.numel() for r, _ in pairs),
        "max_abs_uint8": int(diff.max()),
        "frac_uint8_changed": float((diff > 0).mean()),
    }


def run_speed(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from generation.engine.huge_pages import in_effect

    work = Path(job["work"])
    sides = {name: cls(work, job["dtype"]) for name, cls in SIDES.items()}
    # Warm-up (kernel choice, first-touch pages) doubles as the parity check.
    seed = job["seed"]
    warm = {name: side.tokens(seed) for name, side in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(job["repeats"]):
        for name, side in sides.items():
            side.generate(seed + 100 + r)  # untimed: back to work after the other sides' turns
            t0, c0 = time.perf_counter(), time.process_time()
            side.generate(seed + 1 + r)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            done = f"repeat {r + 1}/{job['repeats']} {name}: {times[name][-1]:.2f} s"
            print(done, file=sys.stderr, flush=True)
    head = {"dtype": job["dtype"], "threads": torch.get_num_threads(), "huge_pages": in_effect()}
    return summary(head, times, cpu, warm)


def summary(
    head: dict[str, Any],
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    warm: dict[str, tuple[list[Any], Any]],
) -> dict[str, Any]:
    """The speed step's result: each side's times, ours against the reference, parity."""
    out: dict[str, Any] = {
        "kind": "speed",
        **head,
        "sides": list(times),
        "parity": parity(warm["reference"], warm["ours"]),
        "parity_plain": parity(warm["reference"], warm["ours-plain"]),
    }
    for name in times:
        out[name] = {
            "s_min": min(times[name]),
            "s_median": statistics.median(times[name]),
            "cpu_s_median": statistics.median(cpu[name]),
            "times": times[name],
        }
    for name in ("ours", "ours-plain"):
        suffix = "" if name == "ours" else "_plain"
        out["ratio_min" + suffix] = out[name]["s_min"] / out["reference"]["s_min"]
        out["ratio_median" + suffix] = out[name]["s_median"] / out["reference"]["s_median"]
    return out


def run_serve(job: dict[str, Any]) -> dict[str, Any]:
    """One side in a process of its own (`--isolated`): load, one warm-up generation (saved
    for the parity check), then for each line [untimed seed, timed seed] read from stdin an
    untimed and a timed image, answering each line with one line of JSON."""
    import torch

    # The answers go down stdout, one line each; whatever else gets printed (the reference
    # prints while it builds) goes to stderr meanwhile.
    sys.stdout.flush()
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    side = SIDES[job["side"]](Path(job["work"]), job["dtype"])
    # Only now: importing the engine's package asks torch for huge pages (it reads the request
    # at the first tensor), which the reference's process must not get unless told to.
    from generation.engine.huge_pages import in_effect

    tokens, image = side.tokens(job["seed"])
    warm = {"tokens": [t.cpu() for t in tokens], "image": torch.from_numpy(image)}
    torch.save(warm, Path(job["work"]) / f"warm-{job['name']}.pt")
    hello = {"huge_pages": in_effect(), "threads": torch.get_num_threads()}
    answers.write(json.dumps({**hello, "peak_rss_gb": peak_rss_gb()}) + "\n")
    for line in sys.stdin:
        untimed, timed = json.loads(line)
        side.generate(untimed)
        t0, c0 = time.perf_counter(), time.process_time()
        side.generate(timed)
        took = {"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        answers.write(json.dumps(took) + "\n")
    sys.stdout.flush()
    os.dup2(answers.fileno(), 1)  # the last line, written by the caller, goes down stdout too
    answers.close()
    return {"kind": "serve", "peak_rss_gb": peak_rss_gb()}


def run_calibration(job: dict[str, Any]) -> dict[str, Any]:
    """Float32 2048³ matmul speed: how fast this machine is right now."""
    from generation.engine.training.model_card import matmul_gflops

    return {"kind": "calibration", "gflops": matmul_gflops(n=2048)}


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "weights": run_weights,
    "rss": run_rss,
    "speed": run_speed,
    "serve": run_serve,
    "calibration": run_calibration,
}

# With --isolated, each side runs in a process of its own, in the environment it ships with:
# the reference never asks for transparent huge pages (under the kernel's usual "madvise" mode
# its large tensors get 4 KiB pages), our engine asks for them when imported
# (generation/engine/huge_pages.py). A second reference process is given them, to show what
# they are worth to it. Name: (side, environment changes; None removes a variable).
ISOLATED_SIDES: dict[str, tuple[str, dict[str, str | None]]] = {
    "reference": ("reference", {"THP_MEM_ALLOC_ENABLE": None}),
    "reference-huge-pages": ("reference", {"THP_MEM_ALLOC_ENABLE": "1"}),
    "ours-plain": ("ours-plain", {"THP_MEM_ALLOC_ENABLE": None}),
    "ours": ("ours", {"THP_MEM_ALLOC_ENABLE": None}),
}

# ---------------------------------------------------------------------------------------------
# The driver.


def worker_cmd(job: dict[str, Any]) -> list[str]:
    return [sys.executable, __file__, "--worker", json.dumps(job)]


def worker_env(changes: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with engine_bench.py's OpenMP setting, then `changes` (None
    removes a variable)."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def spawn(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    # Huge pages for large tensors as the engine asks for them (generation/engine/huge_pages.py),
    # for both sides alike: torch reads the variable at the first tensor, which the reference
    # side allocates before ours is imported.
    env = worker_env({"THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "1")})
    t0 = time.time()
    proc = subprocess.run(
        worker_cmd(job), stdout=subprocess.PIPE, text=True, timeout=timeout, check=False, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"step {job['step']} failed (exit {proc.returncode}); its stderr is above")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.time() - t0
    return result


class Server:
    """A side's `serve` process. It is stopped (SIGSTOP) whenever it is not its turn, so that
    its idle OpenMP threads, which spin under OMP_WAIT_POLICY=ACTIVE, cannot take cores from
    the side being timed."""

    def __init__(self, job: dict[str, Any], env: dict[str, str], timeout: float):
        self.name, self.timeout = job["name"], timeout
        self.proc = subprocess.Popen(
            worker_cmd(job), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        try:
            self.hello = self.read()
        except BaseException:
            self.kill()
            raise
        self.signal(signal.SIGSTOP)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            why = "timed out" if not ready else f"exited ({self.proc.wait()})"
            raise SystemExit(f"side {self.name} {why}; its stderr is above")
        result: dict[str, Any] = json.loads(line)
        return result

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def turn(self, untimed_seed: int, timed_seed: int) -> dict[str, Any]:
        """An untimed, then a timed image; the process is stopped again afterwards."""
        assert self.proc.stdin is not None
        self.signal(signal.SIGCONT)
        self.proc.stdin.write((json.dumps([untimed_seed, timed_seed]) + "\n").encode())
        self.proc.stdin.flush()
        took = self.read()
        self.signal(signal.SIGSTOP)
        return took

    def close(self) -> dict[str, Any]:
        """End the process; its last line (peak RSS over all its images)."""
        assert self.proc.stdin is not None
        self.signal(signal.SIGCONT)
        self.proc.stdin.close()
        last = self.read()
        self.proc.wait(self.timeout)
        return last

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL ends a stopped process too
            self.proc.wait()


def run_isolated(base: dict[str, Any], repeats: int, timeout: float) -> dict[str, Any]:
    """The speed step with each side in a process of its own, loaded one after another, then
    taking turns as in `run_speed` (an untimed image right before each timed one)."""
    import torch

    work, seed = Path(base["work"]), base["seed"]
    servers: dict[str, Server] = {}
    try:
        for name, (side, changes) in ISOLATED_SIDES.items():
            print(f"[reference_bench] loading {name}", file=sys.stderr, flush=True)
            job = {**base, "step": "serve", "side": side, "name": name}
            servers[name] = Server(job, worker_env(changes), timeout)
        times: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        for r in range(repeats):
            for name, server in servers.items():
                took = server.turn(seed + 100 + r, seed + 1 + r)
                times[name].append(took["s"])
                cpu[name].append(took["cpu_s"])
                done = f"repeat {r + 1}/{repeats} {name}: {took['s']:.2f} s"
                print(done, file=sys.stderr, flush=True)
        last = {name: server.close() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.kill()
    warm = {}
    for name in servers:
        saved = torch.load(work / f"warm-{name}.pt")
        warm[name] = (saved["tokens"], saved["image"].numpy())
    head = {
        "dtype": base["dtype"],
        "isolated": True,
        "threads": servers["ours"].hello["threads"],
        "huge_pages": {name: s.hello["huge_pages"] for name, s in servers.items()},
    }
    out = summary(head, times, cpu, warm)
    out["parity_reference_huge_pages"] = parity(warm["reference"], warm["reference-huge-pages"])
    ref_hp = out["reference-huge-pages"]
    out["ratio_median_vs_huge_pages"] = out["ours"]["s_median"] / ref_hp["s_median"]
    out["ratio_min_vs_huge_pages"] = out["ours"]["s_min"] / ref_hp["s_min"]
    out["peak_rss_gb"] = {name: s.hello["peak_rss_gb"] for name, s in servers.items()}
    out["peak_rss_gb_end"] = {name: last[name]["peak_rss_gb"] for name in servers}
    return out


def report(speed: dict[str, Any], rss: dict[str, float], calibration: list[float]) -> str:
    sides = speed["sides"]
    if speed.get("isolated"):
        pages = ", ".join(f"{n} {'on' if speed['huge_pages'][n] else 'off'}" for n in sides)
        how = f"each side in its own process; huge pages: {pages}"
    else:
        how = f"huge pages {'on' if speed['huge_pages'] else 'off'}"
    lines = [
        f"d16, {speed['dtype']}, batch 1, cfg {CFG:g}, top-k {TOP_K}, top-p {TOP_P}, "
        f"{speed['threads']} threads, {how}; "
        f"fp32 2048³ matmul {calibration[0]:.0f} → {calibration[1]:.0f} GFLOP/s",
        "",
        "| side | s/image (min / median) | CPU s/image | × reference (median) | peak RSS GB |",
        "|---|---|---|---|---|",
    ]
    ref = speed["reference"]["s_median"]
    for name in sides:
        row = speed[name]
        lines.append(
            f"| {name} | {row['s_min']:.3f} / {row['s_median']:.3f} | {row['cpu_s_median']:.2f} "
            f"| {row['s_median'] / ref:.3f} | {rss[name]:.2f} |"
        )
    lines.append("")
    if speed.get("isolated"):
        lines.append(
            "ours against the reference given huge pages: "
            f"{speed['ratio_median_vs_huge_pages']:.3f} (medians), "
            f"{speed['ratio_min_vs_huge_pages']:.3f} (minimums)"
        )
    for key, name in (("parity", "ours"), ("parity_plain", "ours-plain")):
        par = speed[key]
        lines.append(
            f"parity of {name} (warm-up, same weights and seed): {par['scales_identical']}/"
            f"{par['scales']} token maps identical ({100 * par['tokens_identical_frac']:.2f} % "
            f"of tokens), image max |Δ| {par['max_abs_uint8']}/255, "
            f"{100 * par['frac_uint8_changed']:.3f} % of values changed"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", type=Path, help="a checkout of daixiangzi/VAR-CLIP")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the weight files (default: temp)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per step")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="each side in a process of its own, in the environment it ships with",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        job = json.loads(args.worker)
        import_paths(Path(job["reference_src"]))
        import torch

        torch.set_grad_enabled(False)
        print(json.dumps(STEPS[job["step"]](job)), flush=True)
        return 0

    if args.reference_src is None:
        parser.error("--reference-src is required")
    if args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    src = check_reference_src(args.reference_src)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        base = {"reference_src": str(src), "work": str(work), "seed": args.seed}
        base["dtype"] = args.dtype

        def step(name: str, **extra: Any) -> dict[str, Any]:
            print(f"[reference_bench] {name} {extra or ''}", file=sys.stderr, flush=True)
            return spawn({**base, "step": name, **extra}, args.timeout)

        calibration = [step("calibration")["gflops"]]
        if not (work / OURS_DIR / "config.json").is_file():
            step("weights")
        if args.isolated:
            print(f"[reference_bench] speed, isolated {args.repeats}", file=sys.stderr, flush=True)
            speed = run_isolated(base, args.repeats, args.timeout)
            rss = speed["peak_rss_gb"]
        else:
            rss = {side: step("rss", side=side)["peak_rss_gb"] for side in SIDES}
            speed = step("speed", repeats=args.repeats)
        calibration.append(step("calibration")["gflops"])
    text = report(speed, rss, calibration)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"speed": speed, "peak_rss_gb": rss, "matmul_gflops": calibration}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
