"""Checkpoint I/O for VAR-CLIP (Zhang et al., 2024) and VAR (Tian et al., 2024): our safetensors
directories, and the official `.pth` files (VQVAE, class-conditional VAR, VAR-CLIP training state).

Letters: L tokens over all scales, C transformer width, S scales, V codebook size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import mmap
import pickle
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import save_file
from torch import nn

from generation.engine.config import PATCH_NUMS_256, TransformerConfig, VQVAEConfig
from generation.engine.errors import CheckpointError
from generation.engine.transformer import NextScaleTransformer
from generation.engine.vqvae import VQVAE

# ---------------------------------------------------------------------------------------------
# Our own format: one safetensors file per model, no derived buffers, all values finite.


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_module(module: nn.Module, path: Path, dtype: torch.dtype | None = None) -> str:
    """Write a module's state dict as safetensors (CPU, contiguous, floats in `dtype` if given);
    return its SHA-256."""
    tensors = {}
    for key, value in module.state_dict().items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    save_file(tensors, str(path))
    return sha256_of(path)


def _names(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def check_state_dict(
    expected: Mapping[str, torch.Size], got: Mapping[str, tuple[int, ...]], where: str
) -> None:
    """Refuse missing keys, unexpected keys and shape mismatches, naming them."""
    missing, unexpected = set(expected) - set(got), set(got) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    wrong = [
        f"{k} {tuple(got[k])} ≠ {tuple(expected[k])}"
        for k in sorted(set(expected) & set(got))
        if tuple(got[k]) != tuple(expected[k])
    ]
    if wrong:
        problems.append(f"shape mismatches: {'; '.join(wrong[:12])}")
    if problems:
        raise CheckpointError(f"{where}: " + " | ".join(problems))


def _all_finite(t: torch.Tensor) -> bool:
    # A sum is finite only if every term is (NaN and ±inf propagate); it needs no full-size
    # temporary, unlike isfinite(), whose freed buffers the allocator keeps as resident memory.
    # Only if the sum is not finite (possibly a harmless overflow) is the exact check run.
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or infinite values in floating-point tensors, naming the keys."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not _all_finite(t)]
    if bad:
        raise CheckpointError(f"{where}: non-finite values in {_names(bad)}")


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _safetensors_header(fh: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file (name -> dtype, shape, offsets) and the data start."""
    try:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file")
    header.pop("__metadata__", None)
    return header, 8 + size


def load_module(
    module: nn.Module,
    path: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    skip_prefixes: tuple[str, ...] = (),
    dtype_overrides: Mapping[str, torch.dtype] | None = None,
    map_if: Callable[[str], bool] | None = None,
) -> MappedPages:
    """Strictly load a safetensors file into `module` (which may live on the meta device);
    floats become `dtype`, or `dtype_overrides[prefix]` for keys starting with that prefix.

    Keys for which `map_if` is true are memory-mapped instead of read when they need no
    conversion (CPU, stored dtype wanted), so only the pages a computation touches are resident:
    meant for a token embedding (a call reads a few rows), for weights used once per request,
    and for weights replaced by derived copies, whose pages the returned MappedPages can hand
    back after use. Mapped tensors are private
    copy-on-write maps of the file: for inference only (a write would be lost on release).
    """
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    expected = {k: v.shape for k, v in module.state_dict().items()}
    tensors = {}
    mapped: mmap.mmap | None = None
    ranges: list[tuple[int, int]] = []
    base = 0
    # Plain reads, one tensor at a time, rather than mapping the file: a mapped file's pages stay
    # resident while any tensor from it lives, so converted or skipped tensors would still count
    # towards the process's memory. Only `map_if` keys are mapped, and their pages are released.
    with open(path, "rb") as fh:
        header, data_start = _safetensors_header(fh, path)
        keys = [k for k in header if not k.startswith(skip_prefixes)]
        check_state_dict(expected, {k: tuple(header[k]["shape"]) for k in keys}, str(path))
        for k in keys:
            info = header[k]
            stored = _SAFETENSORS_DTYPES.get(info["dtype"])
            if stored is None:
                raise CheckpointError(f"{path}: {k} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            numel = math.prod(info["shape"])
            if end - begin != numel * stored.itemsize:
                raise CheckpointError(f"{path}: {k} has {end - begin} bytes for {info['shape']}")
            want = dtype
            for prefix, override in (dtype_overrides or {}).items():
                if k.startswith(prefix):
                    want = override
            want = want if stored.is_floating_point else stored
            if numel == 0:
                t = torch.empty(info["shape"], dtype=stored)
            elif map_if is not None and map_if(k) and device.type == "cpu" and want == stored:
                if mapped is None:  # one private (copy-on-write) map per file, shared by keys
                    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
                if (data_start + begin) % stored.itemsize or data_start + end > len(mapped):
                    raise CheckpointError(f"{path}: {k} is misaligned or runs past the file end")
                t = torch.frombuffer(mapped, dtype=stored, count=numel, offset=data_start + begin)
                base = t.data_ptr() - (data_start + begin)
                t = t.reshape(info["shape"])
                _check_mapped_finite(mapped, t, data_start + begin, k, path)
                ranges.append((data_start + begin, data_start + end))
            else:
                raw = bytearray(end - begin)
                fh.seek(data_start + begin)
                if fh.readinto(raw) != len(raw):
                    raise CheckpointError(f"{path}: file ends inside {k}")
                t = torch.frombuffer(raw, dtype=stored).reshape(info["shape"])  # bytes -> shape
                check_finite({k: t}, str(path))
            tensors[k] = t.to(device=device, dtype=want)
    module.load_state_dict(tensors, strict=True, assign=True)
    return MappedPages(mapped, ranges, base)


@dataclasses.dataclass
class MappedPages:
    """The file ranges of the tensors load_module memory-mapped; `release` hands their resident
    pages back to the OS (the next read faults them in again from the page cache), and
    `release_tensors` those of some of them."""

    mapped: mmap.mmap | None
    ranges: list[tuple[int, int]]
    base: int = 0  # the mapping's address: a mapped tensor lies at file offset data_ptr − base

    def release(self) -> None:
        for lo, hi in self.ranges:
            _drop_pages(self.mapped, lo, hi)

    def release_tensors(self, tensors: Iterable[torch.Tensor]) -> int:
        """Hand back the pages of those `tensors` that were mapped whole (others, such as
        tensors read into memory, are left alone); returns how many were."""
        if self.mapped is None:
            return 0
        spans, count = set(self.ranges), 0
        for t in tensors:
            lo = t.data_ptr() - self.base
            span = (lo, lo + t.numel() * t.element_size())
            if span in spans:
                _drop_pages(self.mapped, *span)
                count += 1
        return count

    def release_module(self, module: nn.Module) -> None:
        """release_tensors for the parameters of `module` (a callback once it has run)."""
        self.release_tensors(module.parameters())


def _drop_pages(mapped: mmap.mmap | None, lo: int, hi: int) -> None:
    """madvise(DONTNEED) on the whole pages inside [lo, hi): a page shared with a neighbouring
    tensor stays."""
    page = mmap.PAGESIZE
    lo_page, hi_page = -(-lo // page) * page, hi // page * page
    if mapped is not None and hi_page > lo_page:
        mapped.madvise(mmap.MADV_DONTNEED, lo_page, hi_page - lo_page)


def _check_mapped_finite(
    mapped: mmap.mmap, t: torch.Tensor, offset: int, key: str, path: Path
) -> None:
    """check_finite for a memory-mapped tensor, one slab at a time, handing each slab's pages
    back afterwards so that checking does not make the whole table resident."""
    flat = t.view(-1)
    per_slab = max(1, (32 << 20) // t.element_size())  # 32 MiB
    for i in range(0, flat.numel(), per_slab):
        check_finite({key: flat[i : i + per_slab]}, str(path))
        lo = offset + i * t.element_size()
        _drop_pages(mapped, lo, offset + min(flat.numel(), i + per_slab) * t.element_size())


# ---------------------------------------------------------------------------------------------
# Reading `.pth` files without running arbitrary pickled code.

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
}


class Opaque:
    """Stands in for any pickled object that is not a tensor or a container; holds nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Materialise tensors, dtypes and containers; replace every other class by `Opaque`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return Opaque


def _restricted_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("restricted_pickle")
    mod.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
    mod.load = lambda fh, **kw: _RestrictedUnpickler(fh, **kw).load()  # type: ignore[attr-defined]
    mod.__name__ = "restricted_pickle"
    return mod


def read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True; if the file holds other objects (argparse-like configs),
    retry with an unpickler that only builds tensors and containers and makes the rest `Opaque`."""
    if not Path(path).is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError):
        pass
    try:
        return torch.load(
            path,
            map_location="cpu",
            weights_only=False,
            mmap=True,
            pickle_module=_restricted_pickle_module(),
        )
    except (pickle.UnpicklingError, RuntimeError, io.UnsupportedOperation, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc


def _tensor_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where}: expected a state dict of tensors")
    out = {}
    for key, value in obj.items():
        for prefix in ("_orig_mod.", "module."):  # torch.compile / DDP wrappers
            key = key.removeprefix(prefix)
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Official files: the derived buffers they carry are checked, then dropped.


def official_key_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official state dict that corresponds to one of our models."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if isinstance(model, VQVAE):
        shapes["quantize.ema_vocab_hit_SV"] = (len(model.cfg.patch_nums), model.cfg.vocab_size)
    elif isinstance(model, NextScaleTransformer):
        L = model.L
        shapes["lvl_1L"] = (1, L)
        shapes["attn_bias_for_masking"] = (1, 1, L, L)
        for i in range(model.cfg.depth):
            shapes[f"blocks.{i}.attn.zero_k_bias"] = (model.cfg.width,)
    return shapes


def derived_transformer_buffers(model: NextScaleTransformer) -> dict[str, torch.Tensor]:
    """The persistent buffers the reference stores, derived from the configuration."""
    lvl_L = model.levels(torch.device("cpu"))
    visible_LL = model.block_causal_mask(model.L, torch.device("cpu"))
    bias_LL = torch.zeros(model.L, model.L).masked_fill(~visible_LL, -math.inf)
    out = {"lvl_1L": lvl_L[None], "attn_bias_for_masking": bias_LL[None, None]}
    for i in range(model.cfg.depth):
        out[f"blocks.{i}.attn.zero_k_bias"] = torch.zeros(model.cfg.width)
    return out


def strip_official_transformer(
    model: NextScaleTransformer, sd: dict[str, torch.Tensor], where: str
) -> None:
    """Check an official transformer's derived buffers equal ours, then drop them."""
    for key, derived in derived_transformer_buffers(model).items():
        if key not in sd:
            raise CheckpointError(f"{where}: missing keys: {key}")
        stored = sd.pop(key)
        if stored.shape != derived.shape or not torch.equal(stored.to(derived.dtype), derived):
            raise CheckpointError(
                f"{where}: buffer {key} differs from the value derived from the config"
            )


def strip_official_vqvae(model: VQVAE, sd: dict[str, torch.Tensor], where: str) -> None:
    """Drop the codebook-usage statistics buffer (its first dim is the training schedule's S)."""
    ema = sd.pop("quantize.ema_vocab_hit_SV", None)
    if ema is None:
        raise CheckpointError(f"{where}: missing keys: quantize.ema_vocab_hit_SV")
    if ema.dim() != 2 or ema.shape[1] != model.cfg.vocab_size:
        raise CheckpointError(f"{where}: quantize.ema_vocab_hit_SV has shape {tuple(ema.shape)}")


def load_strict(model: nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    """Load float32 copies of `sd` into `model` after the key, shape and finite-value checks."""
    check_state_dict(
        {k: v.shape for k, v in model.state_dict().items()},
        {k: tuple(v.shape) for k, v in sd.items()},
        where,
    )
    check_finite(sd, where)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)


def load_official_vqvae(path: Path, cfg: VQVAEConfig | None = None) -> VQVAE:
    """The released `vae_ch160v4096z32.pth` (or any VQVAE state dict of the same layout)."""
    sd = _tensor_dict(read_torch_file(path), str(path))
    with torch.device("meta"):
        model = VQVAE(cfg or VQVAEConfig())
    strip_official_vqvae(model, sd, str(path))
    load_strict(model, sd, str(path))
    return model.eval()


def transformer_config_from_state(sd: Mapping[str, torch.Tensor]) -> TransformerConfig:
    """Infer depth, width, heads and conditioning from the tensors of an official VAR state dict."""
    try:
        width = sd["pos_1LC"].shape[2]
        depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        heads_1H11 = sd.get("blocks.0.attn.scale_mul_1H11")
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"not a VAR transformer state dict ({exc})") from exc
    heads = heads_1H11.shape[1] if heads_1H11 is not None else width // 64
    mlp_ratio = sd["blocks.0.ffn.fc1.weight"].shape[0] / width
    if "cond_proj.weight" in sd:
        cond_dim = sd["cond_proj.weight"].shape[1]
        return TransformerConfig(
            depth=depth,
            width=width,
            num_heads=heads,
            mlp_ratio=mlp_ratio,
            cond_dim=cond_dim,
            attn_l2_norm=heads_1H11 is not None,
        )
    if "class_emb.weight" in sd:
        return TransformerConfig(
            depth=depth,
            width=width,
            num_heads=heads,
            mlp_ratio=mlp_ratio,
            conditioning="class",
            num_classes=sd["class_emb.weight"].shape[0] - 1,
            attn_l2_norm=heads_1H11 is not None,
        )
    raise CheckpointError("state dict has neither cond_proj (VAR-CLIP) nor class_emb (VAR)")


def load_official_transformer(
    path: Path, patch_nums: tuple[int, ...] = PATCH_NUMS_256
) -> NextScaleTransformer:
    """A class-conditional `var_d*.pth`, or a VAR-CLIP training state (`trainer` → `var_wo_ddp`)."""
    raw = read_torch_file(path)
    if isinstance(raw, Mapping) and "trainer" in raw:
        trainer = raw["trainer"]
        if not isinstance(trainer, Mapping) or "var_wo_ddp" not in trainer:
            raise CheckpointError(f"{path}: training state without trainer.var_wo_ddp")
        raw = trainer["var_wo_ddp"]
    sd = _tensor_dict(raw, str(path))
    cfg = transformer_config_from_state(sd)
    with torch.device("meta"):
        model = NextScaleTransformer(
            cfg,
            vocab_size=sd["head.weight"].shape[0],
            z_channels=sd["word_embed.weight"].shape[1],
            patch_nums=patch_nums,
        )
    if sd["pos_1LC"].shape[1] != model.L:
        raise CheckpointError(
            f"{path}: pos_1LC has {sd['pos_1LC'].shape[1]} tokens, schedule has {model.L}"
        )
    strip_official_transformer(model, sd, str(path))
    load_strict(model, sd, str(path))
    return model.eval()
