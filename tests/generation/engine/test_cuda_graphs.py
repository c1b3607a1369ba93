"""Replayed scale passes and decodes (cuda_graphs.py) give the plain path's tokens and pixels.
The CUDA capture itself needs a GPU: EagerBackend stands in for it, re-running each captured
call on the same buffers, which exercises everything of ours (the persistent state, the copies,
the cache of captures, the static decoder input)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from generation.engine.config import VarClipConfig
from generation.engine.cuda_graphs import (
    Call,
    DecoderGraph,
    EagerBackend,
    GraphCache,
    Replay,
    ScaleGraphs,
)
from generation.engine.errors import EngineInputError
from generation.engine.pipeline import SamplingSettings, TextToImagePipeline
from generation.engine.sampling import sample_tokens

SETTINGS = SamplingSettings(cfg=3.0, top_k=40, top_p=0.9)


class FailingCapture:
    def capture(self, calls: Sequence[Call]) -> list[tuple[Replay, torch.Tensor]]:
        raise RuntimeError("operation not permitted when stream is capturing")


def graphed(config: VarClipConfig) -> tuple[TextToImagePipeline, TextToImagePipeline]:
    """The same random weights twice: plain, and with replayed scales and decodes."""
    plain = TextToImagePipeline.from_config(config, seed=0)
    replayed = TextToImagePipeline.from_config(config, seed=0)
    replayed.use_graphs(EagerBackend())
    return plain, replayed


def test_replayed_scales_give_the_plain_tokens_and_images_request_after_request(
    tiny_config: VarClipConfig,
) -> None:
    plain, replayed = graphed(tiny_config)
    requests = [(["a red square", "two blue dots on white"], [3, 4]), (["a cat", "a dog"], [5, 5])]
    for captions, seeds in requests:
        want = plain.generate(captions, seeds, SETTINGS)
        got = replayed.generate(captions, seeds, SETTINGS)
        for si, (a, b) in enumerate(zip(want.indices, got.indices, strict=True)):
            assert torch.equal(a, b), f"scale {si} of {captions}"
        assert (want.images == got.images).all()
    # One capture of the scales at batch 2 and one of the decoder, for both requests.
    assert replayed.graphs is not None and replayed.graphs.backend.captures == 2  # type: ignore[attr-defined]


def test_class_conditional_models_replay_too() -> None:
    plain, replayed = graphed(VarClipConfig.from_preset("tiny", conditioning="class"))
    labels = torch.tensor([1, 999, 7])
    want = plain.generate_from_condition(labels, [0, 1, 2], SETTINGS)
    got = replayed.generate_from_condition(labels, [0, 1, 2], SETTINGS)
    assert all(torch.equal(a, b) for a, b in zip(want.indices, got.indices, strict=True))


def test_the_cache_keeps_the_latest_batch_sizes_and_skips_large_ones(
    tiny_pipeline: TextToImagePipeline,
) -> None:
    backend = EagerBackend()
    cache = GraphCache(tiny_pipeline.transformer, backend, max_batch=3, keep=2)
    one = cache.for_batch(1)
    assert one is not None and one.batch == 1 and cache.for_batch(1) is one
    assert cache.for_batch(4) is None
    cache.for_batch(2)
    cache.for_batch(3)  # evicts batch 1, the least recently used
    assert list(cache.by_batch) == [2, 3] and backend.captures == 3
    assert cache.for_batch(1) is not one and backend.captures == 4
    with pytest.raises(ValueError, match="at least 1"):
        GraphCache(tiny_pipeline.transformer, backend, keep=0)


def test_a_failed_capture_warns_once_and_sampling_goes_on_without_graphs(
    tiny_config: VarClipConfig,
) -> None:
    plain = TextToImagePipeline.from_config(tiny_config, seed=0)
    failing = TextToImagePipeline.from_config(tiny_config, seed=0)
    failing.use_graphs(FailingCapture())
    with pytest.warns(UserWarning, match="capture failed") as warned:
        got = failing.generate(["a cat", "a dog"], [9, 8], SETTINGS)
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2  # once each, though the batch has two images to decode
    assert any("sampling without graphs" in m for m in messages)
    assert any("decoding without graphs: operation not permitted" in m for m in messages)
    assert failing.graphs is not None and failing.graphs.failed is not None
    assert failing.graphs.for_batch(2) is None
    want = plain.generate(["a cat", "a dog"], [9, 8], SETTINGS)
    assert all(torch.equal(a, b) for a, b in zip(want.indices, got.indices, strict=True))
    assert (want.images == got.images).all()


def test_replays_refuse_a_state_batch_or_model_they_were_not_captured_for(
    tiny_config: VarClipConfig, tiny_pipeline: TextToImagePipeline
) -> None:
    model = tiny_pipeline.transformer
    cond_BD = torch.randn(2, tiny_pipeline.config.transformer.cond_dim)
    with torch.inference_mode():
        graphs = ScaleGraphs(model, 2, EagerBackend())
        other, x_BlC = model.start_inference(cond_BD)  # its own KV cache
        with pytest.raises(ValueError, match="captured KV cache"):
            graphs.step(other, 0, x_BlC)
        with pytest.raises(ValueError, match="does not fit"):
            model.start_inference(cond_BD[:1], cache=graphs.state.cache)
    quant = tiny_pipeline.vqvae.quantize
    with pytest.raises(ValueError, match="batch 2, not 1"):
        sample_tokens(model, quant, cond_BD[:1], [0], SETTINGS, graphs=graphs)
    twin = TextToImagePipeline.from_config(tiny_config, seed=0).transformer
    with pytest.raises(ValueError, match="another model"):
        sample_tokens(twin, quant, cond_BD, [0, 1], SETTINGS, graphs=graphs)


def test_cuda_graphs_are_off_on_a_cpu_and_refused_when_asked_for(
    tiny_config: VarClipConfig, tiny_pipeline: TextToImagePipeline
) -> None:
    assert tiny_pipeline.graphs is None
    with pytest.raises(EngineInputError, match="cuda_graphs needs a CUDA device"):
        TextToImagePipeline.from_config(tiny_config, seed=0, cuda_graphs=True)


def test_the_decoder_graph_gives_each_image_its_own_pixels_and_recaptures_after_a_change(
    tiny_pipeline: TextToImagePipeline,
) -> None:
    vq = tiny_pipeline.vqvae
    g = torch.Generator().manual_seed(1)
    cfg = tiny_pipeline.config.vqvae
    indices = [torch.randint(0, cfg.vocab_size, (3, pn * pn), generator=g) for pn in cfg.patch_nums]
    with torch.inference_mode():
        fhat = vq.quantize.indices_to_fhat(indices)
        want = torch.cat([vq.decode_batch(fhat[i : i + 1]) for i in range(3)])
        backend = EagerBackend()
        vq.decode_one = DecoderGraph(vq.decode_batch, backend)
        try:
            assert torch.equal(vq.decode_features(fhat), want)  # three images, one capture
            assert backend.captures == 1
            with pytest.raises(ValueError, match="one image"):
                vq.decode_one(fhat)
            vq.prepare_decoder(torch.float32, channels_last=True)  # the captured memory is stale
            vq.decode_features(fhat[:1])
            assert backend.captures == 2
        finally:
            vq.decode_one = None
            vq.prepare_decoder(torch.float32, channels_last=False)
