"""Linear layers with their weights pre-packed once for oneDNN (CPU, float32 inference).

A plain `F.linear` on the CPU goes to MKL, which re-packs the whole weight matrix into its
blocked layout on every call. Next-scale sampling calls each layer once per scale with few rows
(2 to 512 at d16 batch 1), so that packing is a large share of the work: on the AVX2 AMD EPYC
of 2026-11-27 a 1024→4096 layer ran at 11 GFLOP/s for 8 rows and 30 for 32, against 38 and 60
with the weight packed once (the machine's 2048³ matmul: 69). oneDNN's packed products also give
each row the same result whatever the number of rows, which MKL did not for 3 of 17 row counts
tried; per-image seeds rely on that (an image's tokens must not depend on its batch).

The packed weight replaces the dense one (no second copy in memory); `state_dict` unpacks it,
bit for bit, so a packed model still saves like any other.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN picks its blocked layout for a typical row count; 512 rows (d16's last scale with CFG)
# gave the best speed for every row count from 2 to 512.
PACK_FOR_ROWS = 512


def packing_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this torch build can pack float32 linear weights for oneDNN on `device`."""
    mkldnn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    if device.type != "cpu" or dtype != torch.float32 or not mkldnn:
        return False
    ops = torch.ops.mkldnn
    try:
        return bool(ops._reorder_linear_weight and ops._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


class PackedLinear(nn.Module):
    """`nn.Linear` for inference with a weight packed once; forward may override the bias."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        if not packing_available(weight.device, weight.dtype):
            raise ValueError(f"only float32 CPU weights are packed, got {weight.dtype}")
        # An opaque oneDNN tensor: kept as a plain attribute (it has no storage to save).
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_FOR_ROWS)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.bias if bias is None else bias
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, b, "none", [], "")  # type: ignore[no-any-return]

    def gelu_tanh(self, x: torch.Tensor) -> torch.Tensor:
        """GELU(tanh approximation) of the layer's output, applied by oneDNN as the product's
        rows are written instead of by a second pass over them."""
        op = torch.ops.mkldnn._linear_pointwise
        return op(x, self.packed, self.bias, "gelu", [], "tanh")  # type: ignore[no-any-return]

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.packed.to_dense()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a packed linear layer is for inference: load the weights, then pack")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


def linear(layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`layer` applied to x with `bias` in place of its own (packed or plain `nn.Linear`)."""
    if isinstance(layer, PackedLinear):
        return layer(x, bias)  # type: ignore[no-any-return]
    assert isinstance(layer, nn.Linear)
    return F.linear(x, layer.weight, bias)


@functools.cache
def fused_gelu_pays() -> bool:
    """Whether oneDNN's fused tanh-GELU beats a separate pass on this CPU: it does with AVX-512
    (the Intel Xeon of 2026-11-27: sampling 2.90 -> 2.82 s per d16 image), not with AVX2 only
    (the Zen 3 AMD EPYC of 2026-11-27: 46.7 against 38.9 ms for 512 rows of fc1, 32.4 against
    25.3 for 338; the Zen 1 EPYC: 144 against 136 ms)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def linear_gelu_tanh(layer: nn.Module, x: torch.Tensor, fuse: bool | None = None) -> torch.Tensor:
    """GELU(tanh approximation) of `layer`(x); for a packed layer, fused into the product when
    `fuse` (default: where `fused_gelu_pays`), else a second pass over its output (8 MB at d16's
    last scale) by `gelu_tanh_by_sigmoid`. The forms differ by at most a few float32 roundings
    (2.4e-7 between oneDNN's and torch's)."""
    if isinstance(layer, PackedLinear):
        if fused_gelu_pays() if fuse is None else fuse:
            return layer.gelu_tanh(x)
        return gelu_tanh_by_sigmoid(layer(x))
    assert isinstance(layer, nn.Linear)
    return F.gelu(layer(x), approximate="tanh")


# GELU's tanh form 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), is x·σ(2u) exactly.
_TWO_U_LINEAR = 2 * math.sqrt(2 / math.pi)
_TWO_U_CUBIC = _TWO_U_LINEAR * 0.044715


def gelu_tanh_by_sigmoid(h: torch.Tensor) -> torch.Tensor:
    """GELU(tanh approximation) of h as h·σ(2u), in one scratch tensor.

    torch's tanh is slow on AVX2 CPUs (the Zen 3 EPYC of 2026-11-28: 6.1 ms for 512 × 4,096
    values against 1.8 ms for the sigmoid), so this form took d16's GELUs from 0.204 to 0.162 s
    per image (median of six alternating runs, same tokens). Against float64 its error is
    5.2e-7 where torch's GELU has 4.3e-7 (values up to 12)."""
    t = h * h
    return t.mul_(_TWO_U_CUBIC).add_(_TWO_U_LINEAR).mul_(h).sigmoid_().mul_(h)


def pack_linears(model: nn.Module, names: tuple[str, ...]) -> int:
    """Replace every `nn.Linear` whose attribute name is in `names` by a PackedLinear; returns
    how many were packed. The model must be on the CPU in float32 and not be trained after."""
    # Only (parent, name) pairs are kept while replacing, so that each dense weight is freed
    # as soon as its packed copy exists (holding the old layers would double the memory).
    targets = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if name in names and type(child) is nn.Linear
    ]
    for parent, name in targets:
        setattr(parent, name, PackedLinear(getattr(parent, name)))
    return len(targets)
