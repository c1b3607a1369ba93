"""Convert OpenAI's TorchScript CLIP archive (Radford et al., 2021) into the text tower VAR-CLIP
(Zhang et al., 2024) needs: `text_encoder.safetensors` (float32) plus `text_encoder.json`.

Usage: python -m generation.engine.convert_clip ViT-L-14.pt out_dir/
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from generation.engine.checkpoint import (
    check_finite,
    check_state_dict,
    load_module,
    save_module,
    sha256_of,
)
from generation.engine.config import TextEncoderConfig, dataclass_from_dict, to_plain_dict
from generation.engine.errors import CheckpointError
from generation.engine.text_encoder import ClipTextEncoder

TEXT_PREFIXES = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)


def text_tower_state(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text tower's tensors as float32 (drops `visual.*`, `logit_scale`, size scalars)."""
    return {k: v.float() for k, v in full.items() if k.startswith(TEXT_PREFIXES)}


def text_config_from_state(
    sd: dict[str, torch.Tensor], heads: int | None = None
) -> TextEncoderConfig:
    """Sizes of the tower; heads follow OpenAI's rule width/64 unless given."""
    try:
        vocab, width = sd["token_embedding.weight"].shape
        context = sd["positional_embedding"].shape[0]
        embed_dim = sd["text_projection"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"not a CLIP archive: missing {exc}") from exc
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    return TextEncoderConfig(
        context_length=context,
        vocab_size=vocab,
        width=width,
        heads=heads or max(1, width // 64),
        layers=layers,
        embed_dim=embed_dim,
    )


def text_encoder_from_state(
    full: dict[str, torch.Tensor], where: str, heads: int | None = None
) -> ClipTextEncoder:
    """The text tower of a whole CLIP state dict in OpenAI's names (also open_clip's for
    `ViT-L-14`), checked for keys, shapes and finite values; `where` names it in errors."""
    sd = text_tower_state(full)
    encoder = ClipTextEncoder(text_config_from_state(sd, heads))
    check_state_dict(
        {k: v.shape for k, v in encoder.state_dict().items()},
        {k: tuple(v.shape) for k, v in sd.items()},
        where,
    )
    check_finite(sd, where)
    encoder.load_state_dict(sd, strict=True)
    return encoder


def convert(archive: Path, out_dir: Path, heads: int | None = None) -> dict[str, str]:
    """Write the text tower of `archive`; return filename -> SHA-256 of what was written."""
    # Current torch refuses TorchScript archives in torch.load; torch.jit.load reads them
    # without running Python code from the file.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still works
            scripted = torch.jit.load(str(archive), map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{archive}: not a TorchScript archive ({exc})") from exc
    encoder = text_encoder_from_state(dict(scripted.state_dict()), str(archive), heads)
    cfg = encoder.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {
        "text_encoder.safetensors": save_module(encoder, out_dir / "text_encoder.safetensors")
    }
    config_path = out_dir / "text_encoder.json"
    config_path.write_text(json.dumps(to_plain_dict(cfg), indent=2) + "\n")
    digests["text_encoder.json"] = sha256_of(config_path)
    return digests


def load_converted(out_dir: Path) -> ClipTextEncoder:
    """The text tower written by `convert` (config from text_encoder.json, strict load)."""
    config_path = out_dir / "text_encoder.json"
    if not config_path.is_file():
        raise CheckpointError(f"{out_dir}: no text_encoder.json")
    cfg = dataclass_from_dict(TextEncoderConfig, json.loads(config_path.read_text()))
    with torch.device("meta"):
        encoder = ClipTextEncoder(cfg)
    load_module(
        encoder,
        out_dir / "text_encoder.safetensors",
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    return encoder.eval()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path, help="OpenAI CLIP TorchScript file, e.g. ViT-L-14.pt")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--heads", type=int, default=None, help="attention heads (default width/64)"
    )
    args = parser.parse_args(argv)
    try:
        digests = convert(args.archive, args.out_dir, args.heads)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, digest in digests.items():
        print(f"{digest}  {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
