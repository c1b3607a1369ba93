"""Configuration of VAR-CLIP: VAR (Tian et al., 2024, arXiv 2404.02905) conditioned on CLIP text
(Zhang et al., 2024, arXiv 2408.01181). Dataclasses, named presets, and a strict JSON round trip.

Letters: V codebook size, Cvae latent channels, C transformer width, D condition width.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from generation.engine.errors import EngineInputError, EngineTypeError

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
GROUPNORM_GROUPS = 32
Conditioning = Literal["text", "class"]


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    """Multi-scale VQVAE: LDM-style encoder/decoder plus the residual multi-scale quantizer."""

    vocab_size: int = 4096  # V
    z_channels: int = 32  # Cvae
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    beta: float = 0.25  # commitment weight
    quant_resi: float = 0.5  # phi(h) = (1 - r) h + r conv(h)
    num_phi: int = 4  # partially shared phi convs
    quant_conv_ks: int = 3
    using_sa: bool = True  # attention at the lowest resolution
    using_mid_sa: bool = True
    # GroupNorm groups. The official 32 with ch=160 puts 5 channels in a group; with a narrow
    # ch it becomes per-channel (instance) normalisation, which erases flat colours: small
    # models on synthetic images want few groups (the demo uses 1).
    norm_groups: int = GROUPNORM_GROUPS

    def __post_init__(self) -> None:
        _require(self.vocab_size >= 2, "vqvae.vocab_size must be at least 2")
        _require(self.z_channels >= 1 and self.ch >= 1, "vqvae widths must be positive")
        _require(len(self.ch_mult) >= 1, "vqvae.ch_mult must not be empty")
        _require(self.norm_groups >= 1, "vqvae.norm_groups must be at least 1")
        for mult in self.ch_mult:
            _require(
                mult >= 1 and (self.ch * mult) % self.norm_groups == 0,
                f"vqvae.ch * ch_mult entries must be positive multiples of norm_groups "
                f"({self.norm_groups})",
            )
        _require(self.num_res_blocks >= 1, "vqvae.num_res_blocks must be at least 1")
        _require(len(self.patch_nums) >= 2, "vqvae.patch_nums needs at least two scales")
        _require(
            all(a < b for a, b in zip(self.patch_nums, self.patch_nums[1:], strict=False))
            and self.patch_nums[0] >= 1,
            "vqvae.patch_nums must be positive and strictly increasing",
        )
        _require(self.num_phi >= 2, "vqvae.num_phi must be at least 2 (partially shared phi)")
        _require(self.quant_conv_ks % 2 == 1, "vqvae.quant_conv_ks must be odd")

    @property
    def downsample(self) -> int:
        """Spatial reduction of the encoder (2 per level after the first)."""
        return int(2 ** (len(self.ch_mult) - 1))

    @property
    def image_size(self) -> int:
        """Side of the square images in pixels."""
        return self.patch_nums[-1] * self.downsample

    @property
    def num_tokens(self) -> int:
        """L: tokens over all scales."""
        return sum(pn * pn for pn in self.patch_nums)


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Next-scale transformer with AdaLN blocks; conditioned on text (VAR-CLIP) or a class (VAR)."""

    depth: int = 16
    width: int = 1024  # C
    num_heads: int = 16
    mlp_ratio: float = 4.0
    cond_dim: int = 768  # D of the text embedding; unused for class conditioning
    conditioning: Conditioning = "text"
    num_classes: int = 1000  # class conditioning only; row num_classes is the null class
    norm_eps: float = 1e-6
    attn_l2_norm: bool = True
    drop_path_rate: float = 0.0  # training only

    def __post_init__(self) -> None:
        _require(self.depth >= 1, "transformer.depth must be at least 1")
        _require(
            self.width >= 1 and self.num_heads >= 1 and self.width % self.num_heads == 0,
            "transformer.width must be a positive multiple of transformer.num_heads",
        )
        _require(self.mlp_ratio > 0, "transformer.mlp_ratio must be positive")
        _require(self.cond_dim >= 1, "transformer.cond_dim must be positive")
        _require(
            self.conditioning in ("text", "class"),
            "transformer.conditioning must be 'text' or 'class'",
        )
        _require(self.num_classes >= 1, "transformer.num_classes must be positive")
        _require(0.0 <= self.drop_path_rate < 1.0, "transformer.drop_path_rate must be in [0, 1)")

    @classmethod
    def for_depth(cls, depth: int, conditioning: Conditioning = "text") -> TransformerConfig:
        """VAR's sizing rule: width 64·depth, 64-wide heads, drop-path 0.1·depth/24."""
        return cls(
            depth=depth,
            width=64 * depth,
            num_heads=depth,
            conditioning=conditioning,
            drop_path_rate=0.1 * depth / 24,
        )


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig:
    """CLIP text tower in open_clip's layout (CLIP ViT-L/14 text tower by default)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 768
    heads: int = 12
    layers: int = 12
    mlp_ratio: float = 4.0
    embed_dim: int = 768  # D, output of text_projection
    quick_gelu: bool = False  # open_clip 'ViT-L-14' (what VAR-CLIP ran) uses exact GELU

    def __post_init__(self) -> None:
        _require(self.context_length >= 2, "text_encoder.context_length must be at least 2")
        _require(self.vocab_size >= 3, "text_encoder.vocab_size must be at least 3")
        _require(
            self.width >= 1 and self.heads >= 1 and self.width % self.heads == 0,
            "text_encoder.width must be a positive multiple of text_encoder.heads",
        )
        _require(self.layers >= 1 and self.embed_dim >= 1, "text_encoder sizes must be positive")


@dataclasses.dataclass(frozen=True)
class VarClipConfig:
    """Everything needed to build the three models of a VAR-CLIP pipeline."""

    vqvae: VQVAEConfig = dataclasses.field(default_factory=VQVAEConfig)
    transformer: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    text_encoder: TextEncoderConfig | None = dataclasses.field(default_factory=TextEncoderConfig)

    def __post_init__(self) -> None:
        if self.transformer.conditioning == "text":
            _require(self.text_encoder is not None, "text conditioning needs a text_encoder config")
            assert self.text_encoder is not None
            _require(
                self.text_encoder.embed_dim == self.transformer.cond_dim,
                "text_encoder.embed_dim must equal transformer.cond_dim",
            )

    @classmethod
    def from_preset(cls, name: str, conditioning: Conditioning = "text") -> VarClipConfig:
        """Build a named preset: 'tiny' (tests), 'd16', 'd20', 'd24', 'd30', or any 'd<N>'."""
        if not isinstance(name, str):
            raise EngineTypeError(f"preset name must be a str, got {type(name).__name__}")
        text = None if conditioning == "class" else TextEncoderConfig()
        if name == "tiny":
            tiny_text = TextEncoderConfig(width=64, heads=2, layers=2, embed_dim=32)
            return cls(
                vqvae=VQVAEConfig(
                    vocab_size=64,
                    z_channels=8,
                    ch=32,
                    ch_mult=(1, 1, 2, 2),
                    num_res_blocks=1,
                    patch_nums=(1, 2, 3, 4),
                ),
                transformer=TransformerConfig(
                    depth=2, width=64, num_heads=2, cond_dim=32, conditioning=conditioning
                ),
                text_encoder=None if conditioning == "class" else tiny_text,
            )
        match = re.fullmatch(r"d([1-9][0-9]?)", name)
        if match is None:
            raise EngineInputError(
                f"unknown preset {name!r}; use 'tiny', 'd16', 'd20', 'd24', 'd30' or 'd<N>'"
            )
        depth = int(match.group(1))
        return cls(
            vqvae=VQVAEConfig(),
            transformer=TransformerConfig.for_depth(depth, conditioning),
            text_encoder=text,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return _to_plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VarClipConfig:
        """Inverse of to_dict; unknown keys or wrong types raise EngineInputError naming them."""
        return dataclass_from_dict(cls, data)


_T = TypeVar("_T")


def dataclass_from_dict(cls: type[_T], data: Mapping[str, Any], where: str = "") -> _T:
    """Build dataclass `cls` from a plain mapping, refusing unknown keys and mistyped values."""
    if not isinstance(data, Mapping):
        raise EngineTypeError(
            f"{where or cls.__name__} must be a mapping, got {type(data).__name__}"
        )
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise EngineInputError(f"unknown keys in {where or cls.__name__}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        key: _coerce(hints[key], value, f"{where}{key}" if not where else f"{where}.{key}")
        for key, value in data.items()
    }
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [opt for opt in options if opt is not type(None)]
        return _coerce(inner, value, where)
    if dataclasses.is_dataclass(hint):
        return dataclass_from_dict(typing.cast(type[Any], hint), value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise EngineInputError(f"{where} must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise EngineTypeError(f"{where} must be a list, got {type(value).__name__}")
        return tuple(_coerce(typing.get_args(hint)[0], item, where) for item in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise EngineTypeError(f"{where} must be a bool, got {type(value).__name__}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EngineTypeError(f"{where} must be an int, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EngineTypeError(f"{where} must be a number, got {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise EngineTypeError(f"{where} must be a str, got {type(value).__name__}")
        return value
    raise TypeError(f"unsupported field type {hint!r} at {where}")  # a bug, not bad input


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_plain(item) for item in obj]
    return obj


def to_plain_dict(obj: Any) -> dict[str, Any]:
    """Any config dataclass as a JSON-ready dict."""
    return _to_plain(obj)  # type: ignore[no-any-return]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EngineInputError(message)
