"""Text-to-image pipeline of VAR-CLIP (Zhang et al., 2024, arXiv 2408.01181): CLIP text embedding ->
next-scale sampling (Tian et al., 2024, arXiv 2404.02905) -> multi-scale VQVAE decoding.

Letters: B images, D text embedding width, Cvae latent channels, h/w latent side, H/W image side.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from generation.engine.checkpoint import MappedPages, load_module, save_module, sha256_of
from generation.engine.config import VarClipConfig
from generation.engine.cuda_graphs import CudaGraphBackend, DecoderGraph, GraphBackend, GraphCache
from generation.engine.errors import (
    CheckpointError,
    EngineInputError,
    EngineTypeError,
    SlowDtypeWarning,
)
from generation.engine.packed_linear import packing_available
from generation.engine.sampling import SampleOutput, SamplingSettings, check_seeds, sample_tokens
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.tokenizer import ClipTokenizer, default_tokenizer
from generation.engine.transformer import NextScaleTransformer, init_weights
from generation.engine.vqvae import VQVAE

__all__ = ["GenerationResult", "SamplingSettings", "TextToImagePipeline"]

CONFIG_FILE = "config.json"
VQVAE_FILE = "vqvae.safetensors"
TRANSFORMER_FILE = "transformer.safetensors"
TEXT_ENCODER_FILE = "text_encoder.safetensors"
ENCODER_PREFIXES = ("encoder.", "quant_conv.")
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")
SUPPORTED_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def resolve_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' as a torch.device; unknown names and absent GPUs are refused."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise EngineTypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise EngineInputError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise EngineInputError(f"unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineInputError(f"device {device!r} requested but CUDA is not available")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EngineInputError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)")
    return parsed


def resolve_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float32 or bfloat16 anywhere, float16 on CUDA only."""
    if not isinstance(dtype, torch.dtype):
        raise EngineTypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    if dtype not in SUPPORTED_DTYPES or (dtype == torch.float16 and device.type != "cuda"):
        raise EngineInputError(
            f"unsupported dtype {dtype} on {device.type}: use float32 or bfloat16"
        )
    return dtype


def bf16_native(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 matrix products natively. Without it (a CPU with neither
    AVX-512 nor AMX) oneDNN falls back to slow code: on an AVX2-only AMD EPYC a 1024³ bf16
    matmul ran at 0.7 GFLOP/s against 40 for float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:  # oneDNN's own test: AVX-512 (core) or newer
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def warn_if_emulated(dtype: torch.dtype, device: torch.device, what: str) -> None:
    """Warn (SlowDtypeWarning) when bfloat16 is asked for on a device that only emulates it."""
    if dtype == torch.bfloat16 and not bf16_native(device):
        warnings.warn(
            f"{what} in bfloat16 on {device.type}: this device has no native bfloat16, so it "
            "runs far slower than float32 (use float32 here)",
            SlowDtypeWarning,
            stacklevel=3,
        )


def to_uint8(img_B3HW: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] as uint8 (B, H, W, 3)."""
    img01 = (img_B3HW.float().clamp(-1, 1) + 1) / 2
    return (img01 * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # BCHW -> BHWC


def check_captions(captions: Sequence[str]) -> list[str]:
    """A non-empty sequence of non-blank strings."""
    if isinstance(captions, str | bytes) or not isinstance(captions, Sequence):
        raise EngineTypeError(
            "captions must be a sequence of str (wrap a single caption in a list)"
        )
    if len(captions) == 0:
        raise EngineInputError("captions must not be empty")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise EngineTypeError(f"caption {i} must be a str, got {type(caption).__name__}")
        if not caption.strip():
            raise EngineInputError(f"caption {i} is empty")
    return list(captions)


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """Images (B, H, W, 3) uint8 with per-caption truncation flags, token counts and provenance."""

    images: np.ndarray
    truncated: list[bool]
    token_counts: list[int]
    seeds: list[int]
    settings: SamplingSettings
    indices: list[torch.Tensor]
    previews: dict[int, np.ndarray]
    seconds: dict[str, float]


class TextToImagePipeline:
    """Caption(s) + seed(s) -> images, with every model held on one device."""

    def __init__(
        self,
        config: VarClipConfig,
        vqvae: VQVAE,
        transformer: NextScaleTransformer,
        text_encoder: ClipTextEncoder | None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        decoder_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        tokenizer: ClipTokenizer | None = None,
        pack_weights: bool = False,
        fast_convs: bool = False,
        cuda_graphs: bool | None = None,
    ):
        self.config = config
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if pack_weights and not packing_available(self.device, self.dtype):
            raise EngineInputError(
                f"pack_weights needs float32 on a CPU with oneDNN, not {self.dtype} on "
                f"{self.device.type}"
            )
        self.decoder_dtype = resolve_dtype(decoder_dtype or self.dtype, self.device)
        warn_if_emulated(self.dtype, self.device, "the transformer and text tower")
        if self.decoder_dtype != self.dtype:
            warn_if_emulated(self.decoder_dtype, self.device, "the decoder")
        self.tokenizer = tokenizer or default_tokenizer()
        self.transformer = transformer.to(self.device, self.dtype).eval().requires_grad_(False)
        # Packing replaces the transformer's per-scale linear layers in place (packed_linear.py).
        self.packed = pack_weights and self.transformer.pack_for_inference() > 0
        self.text_encoder = None
        if text_encoder is not None:
            self.text_encoder = (
                text_encoder.to(self.device, self.dtype).eval().requires_grad_(False)
            )
        # The quantizer's f_hat stays float32 whatever the model dtype, as in the reference.
        self.vqvae = vqvae.to(self.device).eval().requires_grad_(False)
        self.vqvae.prepare_decoder(self.decoder_dtype, channels_last, fast_convs)
        # Memory-mapped weights read once per request (from_pretrained sets these on the CPU):
        # each AdaLN projection's pages go back as soon as its output is memoised, the text
        # tower's block by block as the captions are encoded.
        self.per_request_pages = MappedPages(None, [])
        self.text_pages = MappedPages(None, [])
        # On a GPU, sampling scales and decodes replay captured kernels (cuda_graphs.py).
        if cuda_graphs and self.device.type != "cuda":
            raise EngineInputError(f"cuda_graphs needs a CUDA device, not {self.device.type}")
        self.graphs: GraphCache | None = None
        if (cuda_graphs is None and self.device.type == "cuda") or cuda_graphs:
            self.use_graphs(CudaGraphBackend(self.device))

    def use_graphs(self, backend: GraphBackend) -> None:
        """Replay captured kernels (cuda_graphs.py): the sampler's scales for batches of up to
        16, the decoder's one image. Same tokens and pixels as without."""
        self.graphs = GraphCache(self.transformer, backend)
        self.vqvae.decode_one = DecoderGraph(self.vqvae.decode_batch, backend)

    @classmethod
    def from_config(
        cls,
        config: VarClipConfig,
        seed: int = 0,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        decoder_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        with_encoder: bool = False,
        pack_weights: bool = False,
        fast_convs: bool = False,
        cuda_graphs: bool | None = None,
    ) -> TextToImagePipeline:
        """Deterministic random weights (VAR's transformer init) for tests, benchmarks and demos."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vqvae = VQVAE(config.vqvae, with_encoder=with_encoder)
            transformer = build_transformer(config)
            init_weights(transformer)
            text = ClipTextEncoder(config.text_encoder) if config.text_encoder is not None else None
        return cls(
            config,
            vqvae,
            transformer,
            text,
            device=device,
            dtype=dtype,
            decoder_dtype=decoder_dtype,
            channels_last=channels_last,
            pack_weights=pack_weights,
            fast_convs=fast_convs,
            cuda_graphs=cuda_graphs,
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        decoder_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        pack_weights: bool | None = None,
        fast_convs: bool | None = None,
        cuda_graphs: bool | None = None,
    ) -> TextToImagePipeline:
        """Load one of our checkpoint directories (strict keys, shapes, finite values).

        `pack_weights` (default: wherever it is available, i.e. float32 on a CPU) packs the
        transformer's per-scale linear weights once for oneDNN (packed_linear.py);
        `fast_convs` (default: a float32 decoder on a CPU) runs the decoder's wide 3x3 convs
        by Winograd and folds its upsampling convs (fast_conv.py), on channels_last maps
        whatever `channels_last` says; `cuda_graphs` (default: on a GPU) replays CUDA graphs
        of each scale's transformer pass (batches of up to 16) and of one image's decode
        (cuda_graphs.py)."""
        root = Path(path)
        if not (root / CONFIG_FILE).is_file():
            raise CheckpointError(f"{root}: no {CONFIG_FILE}")
        try:
            config = VarClipConfig.from_dict(json.loads((root / CONFIG_FILE).read_text()))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc
        target = resolve_device(device)
        resolve_dtype(dtype, target)
        decoder_dtype = resolve_dtype(decoder_dtype or dtype, target)
        with torch.device("meta"):
            vqvae = VQVAE(config.vqvae, with_encoder=False)
            transformer = build_transformer(config)
            text = ClipTextEncoder(config.text_encoder) if config.text_encoder is not None else None
        # The quantizer stays float32; the decoder is read straight into its own dtype so that
        # no second copy of its weights is made.
        decoder_overrides = dict.fromkeys(DECODER_PREFIXES, decoder_dtype)
        # The decoder's weights are mapped (where they need no conversion): those that the
        # fast convolutions replace by transformed copies are handed back below.
        decoder_pages = load_module(
            vqvae,
            root / VQVAE_FILE,
            device=target,
            dtype=torch.float32,
            skip_prefixes=ENCODER_PREFIXES,
            dtype_overrides=decoder_overrides,
            map_if=lambda key: key.startswith("decoder.") and key.endswith(".weight"),
        )
        # The AdaLN projections (a third of d16's weights) run once per request, on the
        # condition: mapped, and handed back once the sampler has memoised their outputs.
        ada_pages = load_module(
            transformer,
            root / TRANSFORMER_FILE,
            device=target,
            dtype=dtype,
            map_if=lambda key: ".ada_lin." in key,
        )
        text_pages = MappedPages(None, [])
        if text is not None:
            # The text tower runs once per request, before sampling: mapped, and its pages handed
            # back once the captions are encoded (0.3 GB at CLIP-L that would otherwise sit
            # through sampling and decoding). A caption reads a few dozen of the 49,408 token
            # embedding rows, so only those pages of the table ever become resident.
            text_pages = load_module(
                text,
                root / TEXT_ENCODER_FILE,
                device=target,
                dtype=dtype,
                map_if=lambda key: True,
            )
        pipe = cls(
            config,
            vqvae,
            transformer,
            text,
            device=target,
            dtype=dtype,
            decoder_dtype=decoder_dtype,
            channels_last=channels_last,
            pack_weights=packing_available(target, dtype) if pack_weights is None else pack_weights,
            fast_convs=(
                target.type == "cpu" and decoder_dtype == torch.float32
                if fast_convs is None
                else fast_convs
            ),
            cuda_graphs=cuda_graphs,
        )
        pipe.per_request_pages = ada_pages
        pipe.text_pages = text_pages
        # Inference reads the transformed copies of these only (0.19 GB at d16): their pages
        # go back, and come back from the file if anything reads them (saving, or the direct
        # convolutions when autograd is on or the fast paths are turned off).
        decoder_pages.release_tensors(vqvae.replaced_weights())
        return pipe

    def save_pretrained(self, path: str | Path) -> dict[str, str]:
        """Write config.json and one float32 safetensors file per model; return name -> SHA-256."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        digests = {CONFIG_FILE: sha256_of(root / CONFIG_FILE)}
        models = {VQVAE_FILE: self.vqvae, TRANSFORMER_FILE: self.transformer}
        if self.text_encoder is not None:
            models[TEXT_ENCODER_FILE] = self.text_encoder
        for name, module in models.items():
            digests[name] = save_module(module, root / name, dtype=torch.float32)
        return digests

    @torch.inference_mode()
    def encode_captions(
        self, captions: Sequence[str]
    ) -> tuple[torch.Tensor, list[bool], list[int]]:
        """Unit-norm text embeddings (B, D) with truncation flags and untruncated token counts."""
        if self.text_encoder is None:
            raise EngineInputError("this pipeline is class-conditional; it takes no captions")
        enc = self.tokenizer.encode(check_captions(captions))
        # Each block's mapped pages go back as soon as it is done, so that at most one block's
        # weights (27 MB at CLIP-L) are resident on top of the rest instead of the whole tower's
        # (0.3 GB), which set a d16 request's peak memory; then the embedding rows and the rest.
        text_BD = self.text_encoder.encode(enc.ids.to(self.device), self.text_pages.release_module)
        self.text_pages.release()
        return text_BD, enc.truncated, enc.token_counts

    def generate(
        self,
        captions: Sequence[str],
        seeds: Sequence[int],
        settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, immutable
        progress: Callable[[int, int], None] | None = None,
        preview_scales: Sequence[int] = (),
    ) -> GenerationResult:
        """Generate one image per caption; `preview_scales` (1-based) also decodes those scales."""
        # 1. Check inputs.
        captions = check_captions(captions)
        seeds = check_seeds(seeds, len(captions))
        if not isinstance(settings, SamplingSettings):
            raise EngineTypeError("settings must be a SamplingSettings")
        V = self.config.vqvae.vocab_size
        if settings.top_k > V:  # checked again by the sampler; failing here skips the text pass
            raise EngineInputError(f"top_k must be ≤ the codebook size {V}, got {settings.top_k}")
        # 2. Encode the captions.
        t0 = time.perf_counter()
        text_BD, truncated, counts = self.encode_captions(captions)
        t1 = time.perf_counter()
        # 3. Sample scale by scale, 4. decode, 5. return.
        result = self.generate_from_condition(text_BD, seeds, settings, progress, preview_scales)
        seconds = {"text": t1 - t0, **result.seconds}
        return dataclasses.replace(
            result, truncated=truncated, token_counts=counts, seconds=seconds
        )

    def generate_from_condition(
        self,
        cond: torch.Tensor,
        seeds: Sequence[int],
        settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, immutable
        progress: Callable[[int, int], None] | None = None,
        preview_scales: Sequence[int] = (),
    ) -> GenerationResult:
        """Generate from text embeddings (B, D) or, for class-conditional models, labels (B,)."""
        # 1. Check inputs.
        seeds = check_seeds(seeds, cond.shape[0])
        num_scales = len(self.config.vqvae.patch_nums)
        wanted = set(preview_scales)
        if not wanted <= set(range(1, num_scales + 1)):
            raise EngineInputError(f"preview_scales must be within 1..{num_scales}")
        previews: dict[int, np.ndarray] = {}

        def on_scale(si: int, fhat_BChw: torch.Tensor) -> None:
            if si + 1 in wanted:
                previews[si + 1] = to_uint8(self.vqvae.decode_features(fhat_BChw))

        # 2. Sample the token maps, 3. decode the final f_hat.
        t0 = time.perf_counter()
        cond = cond.to(self.device, self.dtype if cond.is_floating_point() else cond.dtype)
        out: SampleOutput = sample_tokens(
            self.transformer,
            self.vqvae.quantize,
            cond,
            seeds,
            settings,
            progress,
            on_scale,
            # One projection's pages at a time, so that at most one layer's AdaLN weights (25 MB
            # at d16) are resident on top of the rest, instead of all of them (403 MB).
            on_memoised=self.per_request_pages.release_module,
            graphs=self.graphs.for_batch(len(seeds)) if self.graphs is not None else None,
        )
        t1 = time.perf_counter()
        # From the tokens, image by image: pixels then depend only on an image's own tokens,
        # whatever batch it was sampled in (the sampler's f_hat sums in a batch-dependent order).
        with torch.inference_mode():
            images = to_uint8(self.vqvae.indices_to_image(out.indices))
        t2 = time.perf_counter()
        # 4. Return images with their provenance.
        return GenerationResult(
            images=images,
            truncated=[False] * len(seeds),
            token_counts=[0] * len(seeds),
            seeds=seeds,
            settings=settings,
            indices=[idx.cpu() for idx in out.indices],
            previews=previews,
            seconds={"sample": t1 - t0, "decode": t2 - t1},
        )


def build_transformer(config: VarClipConfig) -> NextScaleTransformer:
    """The transformer of a VarClipConfig (codebook, latent width and schedule from the VQVAE)."""
    vq = config.vqvae
    return NextScaleTransformer(
        config.transformer,
        vocab_size=vq.vocab_size,
        z_channels=vq.z_channels,
        patch_nums=vq.patch_nums,
    )
