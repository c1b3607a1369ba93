"""Checkpoint I/O: our directories, official .pth files, and the CLIP TorchScript converter."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from generation.engine import convert_clip
from generation.engine.checkpoint import (
    MappedPages,
    Opaque,
    derived_transformer_buffers,
    load_module,
    load_official_transformer,
    load_official_vqvae,
    read_torch_file,
)
from generation.engine.config import VarClipConfig
from generation.engine.errors import CheckpointError
from generation.engine.huge_pages import smaps_field
from generation.engine.pipeline import SamplingSettings, TextToImagePipeline
from generation.engine.text_encoder import ClipTextEncoder
from generation.engine.tokenizer import default_tokenizer

from .conftest import PARITY_DIR, parity_vqvae_config

PN = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
UNPICKLED: list[str] = []


class TrainingArgs:
    """Stands for the argparse-like object in a training state; must never be rebuilt."""

    def __setstate__(self, state: object) -> None:
        UNPICKLED.append("code from the file ran")


def _official_var_state() -> dict[str, torch.Tensor]:
    return load_file(str(PARITY_DIR / "var.safetensors"))


def test_official_vqvae_loads_with_a_differently_shaped_usage_buffer(tmp_path: Path) -> None:
    sd = load_file(str(PARITY_DIR / "vqvae.safetensors"))
    sd["quantize.ema_vocab_hit_SV"] = torch.zeros(14, 256)  # a 1024-px schedule's statistics
    torch.save(sd, tmp_path / "vae.pth")
    model = load_official_vqvae(tmp_path / "vae.pth", parity_vqvae_config())
    assert torch.equal(model.quantize.embedding.weight, sd["quantize.embedding.weight"])


def test_official_vqvae_with_nan_weights_is_refused(tmp_path: Path) -> None:
    sd = load_file(str(PARITY_DIR / "vqvae.safetensors"))
    sd["decoder.conv_out.bias"][0] = math.nan
    torch.save(sd, tmp_path / "vae.pth")
    with pytest.raises(CheckpointError, match=r"decoder\.conv_out\.bias"):
        load_official_vqvae(tmp_path / "vae.pth", parity_vqvae_config())


def test_varclip_training_state_loads_without_running_pickled_code(tmp_path: Path) -> None:
    sd = _official_var_state()
    state = {
        "epoch": 3,
        "trainer": {"var_wo_ddp": sd, "var_opt": {"step": torch.tensor(5.0)}, "config": {}},
        "args": TrainingArgs(),
        "namespace": argparse.Namespace(lr=1e-4),
    }
    torch.save(state, tmp_path / "ar-ckpt-last.pth")
    raw = read_torch_file(tmp_path / "ar-ckpt-last.pth")
    assert isinstance(raw["args"], Opaque) and UNPICKLED == []
    model = load_official_transformer(tmp_path / "ar-ckpt-last.pth", PN)
    assert model.cfg.depth == 2 and model.cfg.width == 128 and model.cfg.conditioning == "text"
    assert torch.equal(model.pos_1LC, sd["pos_1LC"])


def test_class_conditional_state_dict_is_detected_from_its_keys(tmp_path: Path) -> None:
    sd = _official_var_state()
    for key in ("noise.weight", "cond_proj.weight", "cond_proj.bias"):
        del sd[key]
    sd["class_emb.weight"] = torch.randn(11, 128)
    torch.save(sd, tmp_path / "var_d2.pth")
    model = load_official_transformer(tmp_path / "var_d2.pth", PN)
    assert model.cfg.conditioning == "class" and model.cfg.num_classes == 10


def test_official_transformer_with_a_wrong_mask_buffer_is_refused(tmp_path: Path) -> None:
    sd = _official_var_state()
    sd["attn_bias_for_masking"] = torch.zeros_like(sd["attn_bias_for_masking"])
    torch.save(sd, tmp_path / "var.pth")
    with pytest.raises(CheckpointError, match="attn_bias_for_masking"):
        load_official_transformer(tmp_path / "var.pth", PN)


def test_our_directories_hold_no_derived_buffers(tiny_pipeline: TextToImagePipeline) -> None:
    keys = set(tiny_pipeline.transformer.state_dict())
    assert not keys & set(derived_transformer_buffers(tiny_pipeline.transformer))


def test_save_pretrained_then_from_pretrained_gives_identical_images(
    tiny_pipeline: TextToImagePipeline, tmp_path: Path
) -> None:
    digests = tiny_pipeline.save_pretrained(tmp_path)
    assert set(digests) == {
        "config.json",
        "vqvae.safetensors",
        "transformer.safetensors",
        "text_encoder.safetensors",
    }
    assert all(len(d) == 64 for d in digests.values())
    loaded = TextToImagePipeline.from_pretrained(tmp_path)
    settings = SamplingSettings(top_k=50)
    a = tiny_pipeline.generate(["a red square"], [7], settings)
    b = loaded.generate(["a red square"], [7], settings)
    assert (a.images == b.images).all()


def resident_kib(address: int) -> int:
    """Resident KiB of this process's mapping that holds `address` (/proc/self/smaps)."""
    rss = smaps_field(address, "Rss")
    assert rss is not None, f"no mapping holds {address:#x}"
    return int(rss)


def test_released_tensors_give_their_pages_back_and_read_back_intact(tmp_path: Path) -> None:
    layer = nn.Linear(1024, 1024)  # a 4 MiB weight
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, tmp_path / "l.st")
    with torch.device("meta"):
        loaded = nn.Linear(1024, 1024)
    cpu, f32 = torch.device("cpu"), torch.float32
    pages = load_module(loaded, tmp_path / "l.st", device=cpu, dtype=f32, map_if="weight".__eq__)
    assert isinstance(pages, MappedPages) and len(pages.ranges) == 1
    address = loaded.weight.data_ptr()
    assert torch.equal(loaded.weight, layer.weight)  # reads every page
    assert resident_kib(address) >= 4096
    # The bias was read into memory, not mapped: left alone.
    assert pages.release_tensors([loaded.weight, loaded.bias]) == 1
    assert resident_kib(address) < 64  # at most the pages shared with the header or the bias
    assert torch.equal(loaded.weight, layer.weight)  # faulted back in from the file
    assert MappedPages(None, []).release_tensors([loaded.weight]) == 0


def test_adaln_weights_are_mapped_released_one_projection_at_a_time_and_read_back_intact(
    tiny_pipeline: TextToImagePipeline, tmp_path: Path
) -> None:
    tiny_pipeline.save_pretrained(tmp_path)
    loaded = TextToImagePipeline.from_pretrained(tmp_path)
    depth = tiny_pipeline.config.transformer.depth
    # Every block's and the head's AdaLN weight and bias.
    assert len(loaded.per_request_pages.ranges) == 2 * (depth + 1)
    released: list[int] = []
    release = loaded.per_request_pages.release_tensors

    def counting(tensors):  # type: ignore[no-untyped-def]
        released.append(release(tensors))
        return released[-1]

    loaded.per_request_pages.release_tensors = counting  # type: ignore[method-assign]
    settings = SamplingSettings(top_k=50)
    want = tiny_pipeline.generate(["a red square", "a blue circle"], [7, 8], settings)
    for run in (1, 2):  # the second run reads the released pages back from the file
        got = loaded.generate(["a red square", "a blue circle"], [7, 8], settings)
        assert (got.images == want.images).all()
        # One release per projection (each block's, then the head's), its weight and bias.
        assert released == [2] * (depth + 1) * run
    for key, value in tiny_pipeline.transformer.state_dict().items():
        assert torch.equal(loaded.transformer.state_dict()[key], value), key


def test_text_tower_weights_are_mapped_and_released_after_each_encoding(
    tiny_pipeline: TextToImagePipeline, tmp_path: Path
) -> None:
    tiny_pipeline.save_pretrained(tmp_path)
    loaded = TextToImagePipeline.from_pretrained(tmp_path)
    assert tiny_pipeline.text_encoder is not None
    # Every tensor of the tower is mapped (none needs a dtype conversion in float32).
    assert len(loaded.text_pages.ranges) == len(tiny_pipeline.text_encoder.state_dict())
    releases, per_block = [], []
    release, release_tensors = loaded.text_pages.release, loaded.text_pages.release_tensors
    loaded.text_pages.release = lambda: releases.append(1) or release()  # type: ignore[method-assign]
    loaded.text_pages.release_tensors = lambda ts: per_block.append(release_tensors(ts))  # type: ignore[method-assign,assignment,func-returns-value]
    want, _, _ = tiny_pipeline.encode_captions(["a red square", "two dogs"])
    block_tensors = len(tiny_pipeline.text_encoder.transformer.blocks[0].state_dict())
    layers = tiny_pipeline.config.text_encoder.layers  # type: ignore[union-attr]
    for _ in range(2):  # the second encoding reads the released pages back from the file
        got, _, _ = loaded.encode_captions(["a red square", "two dogs"])
        assert torch.equal(got, want)
    # Each block's pages as soon as it is done, then the rest once the captions are encoded.
    assert per_block == [block_tensors] * layers * 2
    assert releases == [1, 1]
    # A bfloat16 pipeline converts the weights while reading them: nothing is mapped.
    bf16 = TextToImagePipeline.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.text_pages.ranges == []


def test_loading_refuses_missing_unexpected_misshaped_and_nan_weights(
    tiny_pipeline: TextToImagePipeline, tmp_path: Path
) -> None:
    tiny_pipeline.save_pretrained(tmp_path)
    path = tmp_path / "transformer.safetensors"
    good = load_file(str(path))

    def broken(change: dict[str, torch.Tensor | None]) -> None:
        sd = dict(good)
        for key, value in change.items():
            if value is None:
                del sd[key]
            else:
                sd[key] = value
        save_file(sd, str(path))

    broken({"head.bias": None})
    with pytest.raises(CheckpointError, match=r"missing keys: head\.bias"):
        TextToImagePipeline.from_pretrained(tmp_path)
    broken({"head.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: head\.extra"):
        TextToImagePipeline.from_pretrained(tmp_path)
    broken({"head.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"head\.bias \(3,\)"):
        TextToImagePipeline.from_pretrained(tmp_path)
    broken({"head.bias": torch.full_like(good["head.bias"], math.inf)})
    with pytest.raises(CheckpointError, match=r"non-finite values in head\.bias"):
        TextToImagePipeline.from_pretrained(tmp_path)


def test_config_with_unknown_keys_is_refused(
    tiny_pipeline: TextToImagePipeline, tmp_path: Path
) -> None:
    tiny_pipeline.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["vqvae"]["colour"] = 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="colour"):
        TextToImagePipeline.from_pretrained(tmp_path)


class _FakeResblock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 1)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))


class _FakeClip(nn.Module):
    """The key layout of OpenAI's CLIP archives, with a vision tower that must be dropped."""

    def __init__(self, width: int = 64, layers: int = 2):
        super().__init__()
        self.token_embedding = nn.Embedding(49408, width)
        self.positional_embedding = nn.Parameter(torch.randn(77, width) * 0.01)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([_FakeResblock(width) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, 32) * 0.1)
        self.visual = nn.Module()
        self.visual.proj = nn.Parameter(torch.randn(8, 8))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_convert_clip_keeps_only_the_text_tower_of_a_torchscript_archive(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fake = _FakeClip().half()  # OpenAI's archives store fp16 weights
    torch.jit.save(torch.jit.script(fake), str(tmp_path / "ViT-fake.pt"))
    assert convert_clip.main([str(tmp_path / "ViT-fake.pt"), str(tmp_path / "out")]) == 0
    sd = load_file(str(tmp_path / "out" / "text_encoder.safetensors"))
    assert not any(k.startswith(("visual.", "logit_scale")) for k in sd)
    assert all(v.dtype == torch.float32 for v in sd.values())
    cfg = json.loads((tmp_path / "out" / "text_encoder.json").read_text())
    assert (cfg["width"], cfg["layers"], cfg["heads"], cfg["embed_dim"]) == (64, 2, 1, 32)
    encoder = ClipTextEncoder(convert_clip.text_config_from_state(sd))
    encoder.load_state_dict(sd, strict=True)
    assert torch.equal(encoder.token_embedding.weight, fake.token_embedding.weight.float())
    with torch.no_grad():
        assert encoder.encode(default_tokenizer().encode(["a dog"]).ids).shape == (1, 32)


def test_convert_clip_reports_a_file_that_is_not_torchscript(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not an archive")
    assert convert_clip.main([str(tmp_path / "junk.pt"), str(tmp_path / "out")]) == 2


def test_from_pretrained_on_a_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        TextToImagePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError):
        read_torch_file(tmp_path / "nowhere.pth")


def test_tiny_preset_builds_on_meta_for_every_size() -> None:
    for name in ("d16", "d20", "d24", "d30"):
        with torch.device("meta"):
            ClipTextEncoder(VarClipConfig.from_preset(name).text_encoder)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_pipeline_assembles_from_official_files_and_round_trips_through_our_format(
    tmp_path: Path,
) -> None:
    # 1. Official layouts: VQVAE state dict, VAR-CLIP training state, OpenAI TorchScript CLIP.
    torch.save(load_file(str(PARITY_DIR / "vqvae.safetensors")), tmp_path / "vae.pth")
    torch.save({"trainer": {"var_wo_ddp": _official_var_state()}}, tmp_path / "ar-ckpt.pth")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(_FakeClip()), str(tmp_path / "ViT-fake.pt"))
    convert_clip.convert(tmp_path / "ViT-fake.pt", tmp_path / "clip")
    # 2. Load each, assemble, save in our format, load back.
    vqvae = load_official_vqvae(tmp_path / "vae.pth", parity_vqvae_config())
    transformer = load_official_transformer(tmp_path / "ar-ckpt.pth", PN)
    text = convert_clip.load_converted(tmp_path / "clip")
    config = VarClipConfig(vqvae=vqvae.cfg, transformer=transformer.cfg, text_encoder=text.cfg)
    pipe = TextToImagePipeline(config, vqvae, transformer, text)
    pipe.save_pretrained(tmp_path / "ours")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "ours")
    settings = SamplingSettings(top_k=20)
    a = pipe.generate(["a dog"], [3], settings)
    b = loaded.generate(["a dog"], [3], settings)
    assert a.images.shape == (1, 256, 256, 3)
    assert (a.images == b.images).all()
