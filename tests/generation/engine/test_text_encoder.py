"""The CLIP text tower equals open_clip's text transformer and skips padding exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from open_clip.transformer import TextTransformer
from torch.testing import assert_close

from generation.engine.checkpoint import load_module, save_module
from generation.engine.config import TextEncoderConfig
from generation.engine.errors import CheckpointError
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.tokenizer import default_tokenizer

CFG = TextEncoderConfig(width=64, heads=2, layers=2, embed_dim=32)
CAPTIONS = ["a dog", "a red sports car parked on the street at night, rain", "x"]


def _open_clip_tower() -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(
        context_length=77, vocab_size=49408, width=64, heads=2, layers=2, output_dim=32
    ).eval()


def test_text_encoder_matches_open_clip_text_transformer_run_on_all_77_tokens() -> None:
    reference = _open_clip_tower()
    ours = ClipTextEncoder(CFG).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # same key names: a plain copy
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        expected = reference(ids)
        expected = expected / expected.norm(dim=-1, keepdim=True)
        got = ours.encode(ids)
    assert got.shape == (3, 32) and got.dtype == torch.float32
    assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert_close(got.norm(dim=-1), torch.ones(3))


def test_text_encoder_result_does_not_depend_on_the_rest_of_the_batch() -> None:
    ours = ClipTextEncoder(CFG).eval()
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        batch = ours.encode(ids)
        alone = ours.encode(ids[:1])
    assert_close(batch[:1], alone, rtol=1e-5, atol=1e-6)


def test_text_encoder_uses_exact_gelu_unless_quick_gelu_is_asked_for() -> None:
    assert isinstance(ClipTextEncoder(CFG).transformer.resblocks[0].mlp.gelu, torch.nn.GELU)
    quick = ClipTextEncoder(TextEncoderConfig(width=64, heads=2, layers=1, quick_gelu=True))
    assert type(quick.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_text_encoder_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    ours = ClipTextEncoder(CFG).eval()
    save_module(ours, tmp_path / "text.safetensors")
    with torch.device("meta"):
        loaded = ClipTextEncoder(CFG)
    load_module(
        loaded, tmp_path / "text.safetensors", device=torch.device("cpu"), dtype=torch.float32
    )
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        assert torch.equal(loaded.encode(ids), ours.encode(ids))


def test_quick_gelu_matches_open_clip() -> None:
    from open_clip.transformer import QuickGELU as OpenClipQuickGELU

    from generation.engine.text_encoder import QuickGELU

    x = torch.linspace(-6, 6, 101)
    assert torch.equal(QuickGELU()(x), OpenClipQuickGELU()(x))


def test_inference_path_does_not_import_open_clip() -> None:
    # open_clip imports torchvision: ~0.26 GB of resident memory that generation never uses.
    import os
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); import generation.worker; "
        "print(sorted(m for m in ('open_clip', 'torchvision') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    assert out.stdout.strip() == "[]"


def _rss_mb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def _load_token_table_mapped(
    cfg: TextEncoderConfig, path: Path, dtype: torch.dtype = torch.float32
) -> ClipTextEncoder:
    """A ClipTextEncoder built on the meta device and loaded as the pipeline loads it."""
    with torch.device("meta"):
        encoder = ClipTextEncoder(cfg)
    load_module(
        encoder,
        path,
        device=torch.device("cpu"),
        dtype=dtype,
        map_if=lambda key: key.startswith("token_embedding."),
    )
    return encoder


def test_mapped_token_embedding_loads_the_same_values_without_making_the_table_resident(
    tmp_path: Path,
) -> None:
    # 49,408 x 512 fp32 = 101 MB of embedding; the rest of the tower is ~13 MB.
    cfg = TextEncoderConfig(width=512, heads=8, layers=1, embed_dim=64)
    torch.manual_seed(0)
    ours = ClipTextEncoder(cfg).eval()
    save_module(ours, tmp_path / "text.safetensors")
    ids = default_tokenizer().encode(CAPTIONS).ids
    with torch.no_grad():
        expected = ours.encode(ids)
    del ours
    before = _rss_mb()
    mapped = _load_token_table_mapped(cfg, tmp_path / "text.safetensors")
    grown = _rss_mb() - before
    with torch.no_grad():
        assert torch.equal(mapped.encode(ids), expected)
    assert grown < 50, f"loading made {grown:.0f} MB resident; the table alone is 101 MB"


def test_mapped_tensors_are_still_checked_for_non_finite_values(tmp_path: Path) -> None:
    ours = ClipTextEncoder(CFG)
    with torch.no_grad():
        ours.token_embedding.weight[4000, 3] = float("nan")
    save_module(ours, tmp_path / "text.safetensors")
    with pytest.raises(CheckpointError, match=r"token_embedding\.weight"):
        _load_token_table_mapped(CFG, tmp_path / "text.safetensors")


def test_a_mapped_tensor_that_needs_converting_is_read_instead(tmp_path: Path) -> None:
    ours = ClipTextEncoder(CFG).eval()
    save_module(ours, tmp_path / "text.safetensors")
    loaded = _load_token_table_mapped(CFG, tmp_path / "text.safetensors", torch.bfloat16)
    assert loaded.token_embedding.weight.dtype == torch.bfloat16
    assert torch.equal(loaded.token_embedding.weight, ours.token_embedding.weight.bfloat16())
