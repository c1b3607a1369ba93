"""Every engine nn.Module on tiny sizes: output shape and dtype, and save-then-load identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from generation.engine.checkpoint import load_module, save_module
from generation.engine.config import VarClipConfig
from generation.engine.quantizer import MultiScaleQuantizer, Phi, PhiBank
from generation.engine.transformer import FFN, AdaLNBlock, AdaLNHead, MaskedAttend, SelfAttention
from generation.engine.vqvae import (
    AttnBlock,
    Decoder,
    Downsample,
    Encoder,
    Level,
    Mid,
    ResnetBlock,
    Upsample,
)

CFG = VarClipConfig.from_preset("tiny")
VQ, TR = CFG.vqvae, CFG.transformer
C = TR.width


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _ada(n: int) -> tuple[torch.Tensor, ...]:
    return tuple(0.1 * t for t in _x(2, 1, n, C).unbind(2))


# (name, build, run) with run(module) -> output tensor; expected shape checked by each case.
CASES: list[
    tuple[str, Callable[[], nn.Module], Callable[[nn.Module], torch.Tensor], tuple[int, ...]]
] = [
    ("ResnetBlock", lambda: ResnetBlock(32, 64, 32), lambda m: m(_x(2, 32, 8, 8)), (2, 64, 8, 8)),
    ("AttnBlock", lambda: AttnBlock(32, 32), lambda m: m(_x(2, 32, 4, 4)), (2, 32, 4, 4)),
    ("Downsample", lambda: Downsample(32), lambda m: m(_x(2, 32, 8, 8)), (2, 32, 4, 4)),
    ("Upsample", lambda: Upsample(32), lambda m: m(_x(2, 32, 4, 4)), (2, 32, 8, 8)),
    (
        "Level",
        lambda: Level([(32, 32)], attention=True, groups=32),
        lambda m: m.blocks(_x(1, 32, 4, 4)),
        (1, 32, 4, 4),
    ),
    ("Mid", lambda: Mid(32, True, 1), lambda m: m(_x(1, 32, 4, 4)), (1, 32, 4, 4)),
    ("Encoder", lambda: Encoder(VQ), lambda m: m(_x(1, 3, 32, 32)), (1, VQ.z_channels, 4, 4)),
    ("Decoder", lambda: Decoder(VQ), lambda m: m(_x(1, VQ.z_channels, 4, 4)), (1, 3, 32, 32)),
    ("Phi", lambda: Phi(8, 0.5), lambda m: m(_x(2, 8, 4, 4)), (2, 8, 4, 4)),
    ("PhiBank", lambda: PhiBank(8, 0.5, 4), lambda m: m.qresi_ls[3](_x(2, 8, 4, 4)), (2, 8, 4, 4)),
    (
        "MultiScaleQuantizer",
        lambda: MultiScaleQuantizer(VQ),
        lambda m: m.indices_to_fhat(m.f_to_indices(_x(2, VQ.z_channels, 4, 4))),
        (2, VQ.z_channels, 4, 4),
    ),
    (
        "SelfAttention",
        lambda: SelfAttention(TR),
        lambda m: m(_x(2, 5, C), None),
        (2, 5, C),
    ),
    ("FFN", lambda: FFN(TR), lambda m: m(_x(2, 5, C)), (2, 5, C)),
    (
        "AdaLNBlock",
        lambda: AdaLNBlock(TR, 0.0),
        lambda m: m(_x(2, 5, C), _ada(6), MaskedAttend(torch.ones(5, 5, dtype=torch.bool))),
        (2, 5, C),
    ),
    ("AdaLNHead", lambda: AdaLNHead(TR), lambda m: m(_x(2, 5, C), _ada(2)), (2, 5, C)),
]


@pytest.mark.parametrize(("name", "build", "run", "shape"), CASES, ids=[c[0] for c in CASES])
def test_module_has_expected_shape_dtype_and_survives_save_then_load(
    name: str,
    build: Callable[[], nn.Module],
    run: Callable[[nn.Module], torch.Tensor],
    shape: tuple[int, ...],
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    module = build().eval()
    with torch.no_grad():
        out = run(module)
    assert out.shape == shape and out.dtype == torch.float32
    save_module(module, tmp_path / f"{name}.safetensors")
    with torch.device("meta"):
        fresh = build()
    load_module(
        fresh, tmp_path / f"{name}.safetensors", device=torch.device("cpu"), dtype=torch.float32
    )
    with torch.no_grad():
        assert torch.equal(run(fresh.eval()), out)
