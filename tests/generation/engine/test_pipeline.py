"""The text-to-image pipeline: outputs, per-image seeds, progress, previews and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from generation.engine import pipeline
from generation.engine.config import VarClipConfig
from generation.engine.errors import EngineInputError, SlowDtypeWarning
from generation.engine.pipeline import GenerationResult, SamplingSettings, TextToImagePipeline

SETTINGS = SamplingSettings(cfg=4.0, top_k=50, top_p=0.95)


def test_generate_returns_uint8_images_and_caption_facts(
    tiny_pipeline: TextToImagePipeline,
) -> None:
    long_caption = " ".join(["shape"] * 90)
    res = tiny_pipeline.generate(["a red circle", long_caption], [1, 2], SETTINGS)
    assert isinstance(res, GenerationResult)
    assert res.images.dtype == np.uint8 and res.images.shape == (2, 32, 32, 3)
    assert res.truncated == [False, True]
    assert res.token_counts == [5, 92]
    assert [idx.shape for idx in res.indices] == [(2, 1), (2, 4), (2, 9), (2, 16)]
    assert set(res.seconds) == {"text", "sample", "decode"}


def test_same_caption_and_seed_give_the_same_image_alone_or_in_a_mixed_batch(
    tiny_pipeline: TextToImagePipeline,
) -> None:
    alone = tiny_pipeline.generate(["a blue square"], [42], SETTINGS)
    batch = tiny_pipeline.generate(
        ["a green triangle", "a blue square", "two yellow stars"], [7, 42, 9], SETTINGS
    )
    for a, b in zip(alone.indices, batch.indices, strict=True):
        assert torch.equal(a[0], b[1])
    assert (alone.images[0] == batch.images[1]).all()


def test_different_seeds_give_different_tokens(tiny_pipeline: TextToImagePipeline) -> None:
    res = tiny_pipeline.generate(["a blue square"] * 2, [1, 2], SETTINGS)
    assert not all(torch.equal(idx[0], idx[1]) for idx in res.indices)


def test_progress_fires_after_every_scale_and_previews_decode_on_request(
    tiny_pipeline: TextToImagePipeline,
) -> None:
    calls: list[tuple[int, int]] = []
    res = tiny_pipeline.generate(
        ["a dog"], [0], SETTINGS, progress=lambda k, n: calls.append((k, n)), preview_scales=[2, 4]
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(res.previews) == [2, 4]
    assert (res.previews[4] == res.images).all()


def test_bfloat16_pipeline_generates_images(tiny_config: VarClipConfig) -> None:
    pipe = TextToImagePipeline.from_config(
        tiny_config, seed=0, dtype=torch.bfloat16, decoder_dtype=torch.bfloat16, channels_last=True
    )
    res = pipe.generate(["a dog"], [0], SETTINGS)
    assert res.images.shape == (1, 32, 32, 3)


def test_bfloat16_where_it_is_only_emulated_warns(
    tiny_config: VarClipConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CPU's instruction set is outside the project: pretend it lacks bf16 dot products.
    monkeypatch.setattr(pipeline, "bf16_native", lambda device: False)
    with pytest.warns(SlowDtypeWarning, match="transformer and text tower in bfloat16"):
        TextToImagePipeline.from_config(tiny_config, dtype=torch.bfloat16)
    with pytest.warns(SlowDtypeWarning, match="decoder in bfloat16"):
        TextToImagePipeline.from_config(tiny_config, decoder_dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TextToImagePipeline.from_config(tiny_config)  # float32: nothing to say
    monkeypatch.setattr(pipeline, "bf16_native", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TextToImagePipeline.from_config(tiny_config, dtype=torch.bfloat16)


def test_class_conditional_pipeline_generates_from_labels() -> None:
    cfg = VarClipConfig.from_preset("tiny", conditioning="class")
    pipe = TextToImagePipeline.from_config(cfg, seed=0)
    res = pipe.generate_from_condition(torch.tensor([1, 999]), [0, 1], SETTINGS)
    assert res.images.shape == (2, 32, 32, 3)
    with pytest.raises(EngineInputError, match="class-conditional"):
        pipe.generate(["a dog"], [0], SETTINGS)


@pytest.mark.parametrize(
    ("captions", "seeds", "error", "message"),
    [
        ([], [], EngineInputError, "empty"),
        ([""], [0], EngineInputError, "empty"),
        (["   "], [0], EngineInputError, "empty"),
        ([None], [0], TypeError, "str"),
        ("a bare string", [0], TypeError, "sequence"),
        (["a", "b"], [0], EngineInputError, "seeds"),
        (["a"], [2**63], EngineInputError, "outside"),
        (["a"], [-5], EngineInputError, "outside"),
        (["a"], [1.0], TypeError, "int"),
    ],
)
def test_bad_generate_input_raises_engine_input_error(
    tiny_pipeline: TextToImagePipeline, captions: object, seeds: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        tiny_pipeline.generate(captions, seeds, SETTINGS)  # type: ignore[arg-type]
    assert isinstance(info.value, EngineInputError)


def test_top_k_above_the_codebook_size_is_refused(tiny_pipeline: TextToImagePipeline) -> None:
    with pytest.raises(EngineInputError, match="top_k"):
        tiny_pipeline.generate(["a dog"], [0], SamplingSettings(top_k=65))


@pytest.mark.parametrize("device", ["tpu", "cuda:banana", "gpu0", 3])
def test_unknown_devices_are_refused(tiny_config: VarClipConfig, device: object) -> None:
    with pytest.raises(EngineInputError):
        TextToImagePipeline.from_config(tiny_config, device=device)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tiny_config: VarClipConfig) -> None:
    with pytest.raises(EngineInputError, match="CUDA is not available"):
        TextToImagePipeline.from_config(tiny_config, device="cuda")


@pytest.mark.parametrize("dtype", [torch.float64, torch.int8, "float32"])
def test_unsupported_dtypes_are_refused(tiny_config: VarClipConfig, dtype: object) -> None:
    with pytest.raises(EngineInputError):
        TextToImagePipeline.from_config(tiny_config, dtype=dtype)  # type: ignore[arg-type]


def test_float16_is_refused_on_cpu(tiny_config: VarClipConfig) -> None:
    with pytest.raises(EngineInputError, match="float16"):
        TextToImagePipeline.from_config(tiny_config, dtype=torch.float16)
