"""CUDA graphs for inference on a GPU: each scale's pass of next-scale sampling (VAR, Tian et al.,
2024, arXiv 2404.02905) through every block and the head, and one image's VQVAE decode,
captured once and then replayed.

On a GPU a small batch spends its time in Python and kernel launches, not in the kernels: a d16
image at batch 1 launches dozens of kernels per block, 16 blocks, 10 scales, and an H100 took
0.162 s to sample it with the process's CPU busy throughout. Replaying a captured scale launches
all of its kernels at once (0.035 s for the same tokens; benchmarks/README.md, "CUDA graphs").
The decoder runs image by image at inference (VQVAE.decode_features), so it is launch-bound at
every batch size: its graph is captured for one image.

A scale capture holds one persistent `InferenceState` (AdaLN outputs, KV cache) and one static
input and output per scale. A request memoises its own AdaLN outputs as usual, copies them into
the captured state before the first scale, and its input into the scale's static buffer before
each replay. Its KV cache is the captured one: every slot a scale reads was written by an
earlier scale of the same request, so nothing of a previous request is ever read. The kernels
replayed are the ones the plain path launches, so the tokens and pixels are the same.

Letters: B images, l tokens of the scale, C width, V codebook size, Cvae latent channels,
h/w latent side.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from generation.engine.transformer import InferenceState, NextScaleTransformer

# Sampling time with graphs against without, on an H100 at d16 bf16: 4.6x faster at batch 1,
# 3.7x at 4, 2.0x at 16, 1.2x at 64, where the kernels themselves fill the GPU; above 16 the
# gain no longer pays for the KV cache and activations a capture holds.
MAX_GRAPH_BATCH = 16
# Batch sizes kept captured at once (a worker's micro-batches vary with its queue); each holds
# its own KV cache and activations (about 0.9 GB at d16 bf16 batch 16).
KEEP_BATCH_SIZES = 4

Replay = Callable[[], None]
Call = Callable[[], torch.Tensor]


class GraphBackend(Protocol):
    """Captures calls on fixed buffers; each replay re-runs one into its own output tensor."""

    def capture(self, calls: Sequence[Call]) -> list[tuple[Replay, torch.Tensor]]:
        """One (replay, output) pair per call, in order."""
        ...


class CudaGraphBackend:
    """torch.cuda.CUDAGraph capture, one graph per call, sharing one memory pool."""

    def __init__(self, device: torch.device):
        self.device = device

    def capture(self, calls: Sequence[Call]) -> list[tuple[Replay, torch.Tensor]]:
        """Warm every call up on a side stream (as torch.cuda.graph asks), then capture each."""
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for call in calls:
                    call()
            torch.cuda.current_stream().wait_stream(side)
            captured: list[tuple[Replay, torch.Tensor]] = []
            pool = None
            for call in calls:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    out = call()
                pool = graph.pool()
                captured.append((graph.replay, out))
        return captured


class EagerBackend:
    """No capture: each replay runs its call again and copies the result into the output that
    the first run made. What a CUDA graph must equal; checks the rest of this file on a CPU."""

    def __init__(self) -> None:
        self.captures = 0

    def capture(self, calls: Sequence[Call]) -> list[tuple[Replay, torch.Tensor]]:
        """One (replay, output) pair per call, in order."""
        self.captures += 1
        captured: list[tuple[Replay, torch.Tensor]] = []
        for call in calls:
            out = call()

            def replay(call: Call = call, out: torch.Tensor = out) -> None:
                out.copy_(call())

            captured.append((replay, out))
        return captured


class ScaleGraphs:
    """Every scale's `NextScaleTransformer.step` captured for one batch size."""

    def __init__(self, model: NextScaleTransformer, batch: int, backend: GraphBackend):
        self.model, self.batch = model, batch
        device = model.pos_1LC.device
        # Any condition will do for the capture: each request copies its own in.
        self.state, _ = model.start_inference(model.null_condition(batch, device))
        self.inputs_BlC = [
            model.pos_1LC.new_zeros(2 * batch, end - begin, model.pos_1LC.shape[-1])
            for begin, end in model.begin_ends
        ]
        calls = [
            lambda si=si, x=x: model.step(self.state, si, x) for si, x in enumerate(self.inputs_BlC)
        ]
        captured = backend.capture(calls)
        self.replays: list[Replay] = [replay for replay, _ in captured]
        self.outputs_BlV: list[torch.Tensor] = [out for _, out in captured]

    def step(self, state: InferenceState, si: int, x_BlC: torch.Tensor) -> torch.Tensor:
        """Same result as `model.step(state, si, x_BlC)`; the returned logits are overwritten by
        the next replay of scale `si`, so they must be used before the next request."""
        if state.cache is not self.state.cache:
            raise ValueError("this state was not started on the captured KV cache")
        if si == 0:  # the request's condition into the captured state
            for mine, theirs in zip(self.state.ada, state.ada, strict=True):
                for dst, src in zip(mine, theirs, strict=True):
                    dst.copy_(src)
            for dst, src in zip(self.state.head_ada, state.head_ada, strict=True):
                dst.copy_(src)
        self.inputs_BlC[si].copy_(x_BlC)
        self.replays[si]()
        return self.outputs_BlV[si]


class GraphCache:
    """ScaleGraphs for the last few batch sizes up to `max_batch`, captured on first use.

    A capture that fails (an operation torch cannot capture on this setup) is reported once as
    a warning and turns graphs off for this cache: sampling then runs the plain path. The model
    must not change once captured: a replay reads its weights' memory as it was."""

    def __init__(
        self,
        model: NextScaleTransformer,
        backend: GraphBackend,
        max_batch: int = MAX_GRAPH_BATCH,
        keep: int = KEEP_BATCH_SIZES,
    ):
        if max_batch < 1 or keep < 1:
            raise ValueError("max_batch and keep must be at least 1")
        self.model, self.backend = model, backend
        self.max_batch, self.keep = max_batch, keep
        self.by_batch: OrderedDict[int, ScaleGraphs] = OrderedDict()
        self.failed: str | None = None

    def for_batch(self, batch: int) -> ScaleGraphs | None:
        """The captured scales for this batch size, or None where graphs do not apply."""
        if self.failed is not None or batch > self.max_batch:
            return None
        graphs = self.by_batch.pop(batch, None)
        if graphs is None:
            while len(self.by_batch) >= self.keep:  # least recently used out first
                self.by_batch.popitem(last=False)
            try:
                with torch.inference_mode():
                    graphs = ScaleGraphs(self.model, batch, self.backend)
            except RuntimeError as exc:
                self.failed = str(exc)
                warnings.warn(
                    f"CUDA graph capture failed, sampling without graphs: {exc}", stacklevel=2
                )
                return None
        self.by_batch[batch] = graphs
        return graphs


class DecoderGraph:
    """One image's decode captured on first use; each call copies f_hat (1, Cvae, h, w) in,
    replays, and returns a copy of the image. A failed capture warns once and decodes plainly."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], backend: GraphBackend):
        self.decode, self.backend = decode, backend
        self.input_1Chw: torch.Tensor | None = None
        self.replay: Replay | None = None
        self.output: torch.Tensor | None = None
        self.failed: str | None = None

    def __call__(self, fhat_1Chw: torch.Tensor) -> torch.Tensor:
        if fhat_1Chw.shape[0] != 1:
            raise ValueError(f"DecoderGraph decodes one image, got {fhat_1Chw.shape[0]}")
        if self.failed is not None:
            return self.decode(fhat_1Chw)
        if self.input_1Chw is None or self.input_1Chw.shape != fhat_1Chw.shape:
            static_1Chw = self.input_1Chw = torch.zeros_like(fhat_1Chw)
            try:
                with torch.inference_mode():
                    [(self.replay, self.output)] = self.backend.capture(
                        [lambda: self.decode(static_1Chw)]
                    )
            except RuntimeError as exc:
                self.failed = str(exc)
                warnings.warn(
                    f"CUDA graph capture failed, decoding without graphs: {exc}", stacklevel=2
                )
                return self.decode(fhat_1Chw)
        assert self.replay is not None and self.output is not None
        self.input_1Chw.copy_(fhat_1Chw)
        self.replay()
        return self.output.clone()

    def reset(self) -> None:
        """Drop the capture (it replays the decoder's old weights); the next call captures."""
        self.input_1Chw = self.replay = self.output = None
