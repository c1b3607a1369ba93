"""Pre-packed linear weights (oneDNN, CPU float32): same tokens as plain layers, batch-invariant
rows, weights that save bit for bit, and clear refusals where packing does not apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from generation.engine.config import VarClipConfig
from generation.engine.errors import EngineInputError
from generation.engine.packed_linear import (
    PackedLinear,
    fused_gelu_pays,
    gelu_tanh_by_sigmoid,
    linear_gelu_tanh,
    pack_linears,
    packing_available,
)
from generation.engine.pipeline import SamplingSettings, TextToImagePipeline

pytestmark = pytest.mark.skipif(
    not packing_available(torch.device("cpu"), torch.float32), reason="torch built without oneDNN"
)
SETTINGS = SamplingSettings(cfg=4.0, top_k=50, top_p=0.95)
CAPTIONS = ["a red circle", "two yellow stars over a green square", "a dog"]


@pytest.fixture(scope="module")
def packed_pipeline(tiny_config: VarClipConfig) -> TextToImagePipeline:
    return TextToImagePipeline.from_config(tiny_config, seed=0, pack_weights=True)


def test_a_packed_layer_computes_what_the_plain_one_does() -> None:
    torch.manual_seed(0)
    plain = nn.Linear(96, 160)
    packed = PackedLinear(plain)
    x = torch.randn(2, 7, 96)
    torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)
    bias = torch.randn(160)
    torch.testing.assert_close(packed(x, bias), nn.functional.linear(x, plain.weight, bias))
    # Rows do not depend on how many other rows come with them.
    rows = torch.randn(40, 96)
    assert torch.equal(packed(rows)[:3], packed(rows[:3]))


def test_the_fused_gelu_is_the_separate_one_and_keeps_rows_independent() -> None:
    torch.manual_seed(0)
    plain = nn.Linear(96, 384)
    packed = PackedLinear(plain)
    x = torch.randn(2, 7, 96) * 3  # spread over GELU's curved part and both tails
    expected = nn.functional.gelu(plain(x), approximate="tanh")
    fused = linear_gelu_tanh(packed, x, fuse=True)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    # Exact GELU differs by up to ~1e-3 here, so this checks that the tanh form is the one fused.
    exact = nn.functional.gelu(plain(x))
    assert (fused - exact).abs().max() > 1e-4
    assert torch.equal(linear_gelu_tanh(plain, x), expected)  # unpacked: the separate GELU
    separate = linear_gelu_tanh(packed, x, fuse=False)  # by the sigmoid
    assert torch.equal(separate, gelu_tanh_by_sigmoid(packed(x)))
    torch.testing.assert_close(separate, expected, rtol=1e-5, atol=1e-5)
    rows = torch.randn(40, 96)
    for fuse in (True, False):
        head = linear_gelu_tanh(packed, rows[:3], fuse=fuse)
        assert torch.equal(linear_gelu_tanh(packed, rows, fuse=fuse)[:3], head)


def test_gelu_by_sigmoid_is_the_tanh_form_to_float32_rounding() -> None:
    x = torch.cat((torch.linspace(-12, 12, 20_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])))
    exact = nn.functional.gelu(x.double(), approximate="tanh")
    ours = gelu_tanh_by_sigmoid(x.clone())
    assert ours.dtype == torch.float32
    # Within a few float32 roundings of the value, as torch's own float32 GELU (4.3e-7 here).
    assert (ours.double() - exact).abs().max() < 6e-7
    torch.testing.assert_close(ours, nn.functional.gelu(x, approximate="tanh"), rtol=0, atol=1e-6)
    assert (ours[:5000] <= 0).all() and (ours[x > 0] > 0).all()  # the sign of each tail
    # The input is left alone (a scratch tensor carries the work).
    before = x.clone()
    gelu_tanh_by_sigmoid(x)
    assert torch.equal(x, before)


def test_the_gelu_is_fused_by_default_only_where_avx512_makes_it_pay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    packed = PackedLinear(nn.Linear(96, 384))
    x = torch.randn(5, 96)
    fused_calls = []
    fused_op = PackedLinear.gelu_tanh

    def recording(self: PackedLinear, x: torch.Tensor) -> torch.Tensor:
        fused_calls.append(x.shape)
        return fused_op(self, x)

    monkeypatch.setattr(PackedLinear, "gelu_tanh", recording)
    separate = gelu_tanh_by_sigmoid(packed(x))
    try:
        for capability in ("AVX512", "AVX2", "DEFAULT"):
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
            fused_gelu_pays.cache_clear()
            fused_calls.clear()
            fuses = capability == "AVX512"
            assert fused_gelu_pays() is fuses
            y = linear_gelu_tanh(packed, x)
            assert fused_calls == ([x.shape] if fuses else [])
            if not fuses:
                assert torch.equal(y, separate)
    finally:
        fused_gelu_pays.cache_clear()  # the real CPU's answer again for the other tests


def test_packing_replaces_the_per_scale_layers_and_keeps_the_state_dict(
    tiny_pipeline: TextToImagePipeline, packed_pipeline: TextToImagePipeline
) -> None:
    assert packed_pipeline.packed and not tiny_pipeline.packed
    block = packed_pipeline.transformer.blocks[0]
    assert all(
        isinstance(layer, PackedLinear)
        for layer in (block.attn.mat_qkv, block.attn.proj, block.ffn.fc1, block.ffn.fc2)
    )
    assert isinstance(packed_pipeline.transformer.head, PackedLinear)
    assert type(packed_pipeline.transformer.word_embed) is nn.Linear  # 32 inputs: not worth it
    plain_sd = tiny_pipeline.transformer.state_dict()
    packed_sd = packed_pipeline.transformer.state_dict()
    assert list(packed_sd) == list(plain_sd)
    assert all(torch.equal(packed_sd[k], plain_sd[k]) for k in plain_sd)


def test_packed_and_plain_pipelines_draw_the_same_tokens(
    tiny_pipeline: TextToImagePipeline, packed_pipeline: TextToImagePipeline
) -> None:
    plain = tiny_pipeline.generate(CAPTIONS, [1, 2, 3], SETTINGS)
    packed = packed_pipeline.generate(CAPTIONS, [1, 2, 3], SETTINGS)
    for a, b in zip(plain.indices, packed.indices, strict=True):
        assert torch.equal(a, b)
    assert abs(plain.images.astype(int) - packed.images.astype(int)).max() <= 1


def test_a_packed_pipeline_gives_an_image_the_same_tokens_alone_or_in_a_batch(
    packed_pipeline: TextToImagePipeline,
) -> None:
    alone = packed_pipeline.generate(["a blue square"], [42], SETTINGS)
    batch = packed_pipeline.generate([*CAPTIONS, "a blue square"], [7, 8, 9, 42], SETTINGS)
    for a, b in zip(alone.indices, batch.indices, strict=True):
        assert torch.equal(a[0], b[3])
    assert (alone.images[0] == batch.images[3]).all()


def test_from_pretrained_packs_by_default_on_cpu_float32_only(
    tiny_checkpoint_dir: Path, tmp_path: Path
) -> None:
    pipe = TextToImagePipeline.from_pretrained(tiny_checkpoint_dir)
    assert pipe.packed
    assert not TextToImagePipeline.from_pretrained(tiny_checkpoint_dir, pack_weights=False).packed
    bf16 = TextToImagePipeline.from_pretrained(tiny_checkpoint_dir, dtype=torch.bfloat16)
    assert not bf16.packed
    # A packed pipeline saves the same files as the one it was loaded from.
    digests = pipe.save_pretrained(tmp_path)
    for name in ("transformer.safetensors", "vqvae.safetensors", "text_encoder.safetensors"):
        assert (tmp_path / name).read_bytes() == (tiny_checkpoint_dir / name).read_bytes(), name
    assert len(digests) == 4


def test_packing_where_it_does_not_apply_is_refused(tiny_config: VarClipConfig) -> None:
    with pytest.raises(EngineInputError, match="pack_weights needs float32 on a CPU"):
        TextToImagePipeline.from_config(tiny_config, dtype=torch.bfloat16, pack_weights=True)
    with pytest.raises(ValueError, match="only float32 CPU weights"):
        PackedLinear(nn.Linear(4, 4).bfloat16())


def test_a_packed_model_refuses_to_load_weights() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    assert pack_linears(model, ("0",)) == 1
    with pytest.raises(RuntimeError, match="load the weights, then pack"):
        model.load_state_dict({"0.weight": torch.zeros(4, 4), "0.bias": torch.zeros(4)})
