"""The training CLI: `all` builds a loadable checkpoint with its model card; `finetune` reads an
image-caption folder and refuses bad ones with the file and line."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.engine.pipeline import SamplingSettings, TextToImagePipeline
from generation.engine.synthetic import Attributes, render
from generation.engine.train import main
from generation.engine.training.folder_data import CaptionFolderError, read_caption_folder


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    out = root / "out"
    argv = ["all", "--recipe", "smoke", "--quiet", "--threads", "1", "--out", str(out)]
    assert main([*argv, "--work", str(root / "work")]) == 0
    return out


def test_all_writes_a_checkpoint_the_pipeline_loads(smoke_checkpoint: Path) -> None:
    pipe = TextToImagePipeline.from_pretrained(smoke_checkpoint)
    res = pipe.generate(["a small red circle on the left, blue background"], [0],
                        SamplingSettings(cfg=2.0, top_k=8, top_p=0.9))  # fmt: skip
    assert res.images.shape == (1, 64, 64, 3)


def test_model_card_records_data_settings_times_and_evaluation(smoke_checkpoint: Path) -> None:
    card = json.loads((smoke_checkpoint / "model_card.json").read_text())
    assert card["dataset"]["generator_version"] and card["dataset"]["held_out_shape_colour_pairs"]
    assert card["dataset"]["train_images"] == 64
    assert {"stage_clip", "stage_vqvae", "stage_var"} <= set(card["wall_seconds"])
    assert card["caption_tokens"]["median"] > 5
    assert {r["images"] for r in card["evaluation"]["rows"]} >= {
        "conditional", "unconditional (null)", "VQVAE reconstruction",
    }  # fmt: skip
    sums = (smoke_checkpoint / "SHA256SUMS").read_text()
    for name in ("config.json", "vqvae.safetensors", "transformer.safetensors"):
        assert card["files"][name]["sha256"] in sums
    assert (smoke_checkpoint / "samples.png").is_file()
    # The machine's speed beside the wall times: they compare across days only with it.
    speed = card["machine"]["fp32_matmul_gflops"]
    assert speed["start"] > 1 and speed["end"] > 1
    card_md = (smoke_checkpoint / "MODEL_CARD.md").read_text()
    assert f"GFLOP/s at start/end: {speed}" in card_md
    # The smoke recipe trains in float32; the card says so and why.
    assert card["precision"] == "auto" and isinstance(card["machine"]["bf16_native"], bool)
    assert "precision: stage 1 float32, stage 2 float32 (--precision auto" in card_md
    # The CLI keeps freed memory for reuse (training/heap.py), and the card says whether it did.
    assert card["machine"]["retain_freed_memory"] is (platform.libc_ver()[0] == "glibc")
    assert "freed heap memory kept for reuse (faster steps, same results): " in card_md


def make_folder(root: Path, lines: list[str], images: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        Image.fromarray(img).save(root / name)
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


SHAPE = render(Attributes("star", "yellow", "large", "centre", "blue"))


def test_finetune_on_a_folder_writes_a_new_checkpoint(
    smoke_checkpoint: Path, tmp_path: Path
) -> None:
    lines = ["a.png: a large yellow star in the centre, blue background", "b.png: star over blue"]
    data = make_folder(tmp_path / "data", lines, {"a.png": SHAPE, "b.png": SHAPE[:, ::-1].copy()})
    out = tmp_path / "tuned"
    argv = ["finetune", "--from", str(smoke_checkpoint), "--data", str(data), "--out", str(out)]
    argv += ["--steps", "2", "--batch-size", "2", "--quiet", "--work", str(tmp_path / "w")]
    assert main(argv) == 0
    assert (
        TextToImagePipeline.from_pretrained(out).config
        == TextToImagePipeline.from_pretrained(smoke_checkpoint).config
    )


@pytest.mark.parametrize(
    ("lines", "images", "message"),
    [
        (["a.png: a star"], {}, "captions.txt:1: image a.png not found"),
        (
            ["a.png: a star", "b.png:"],
            {"a.png": SHAPE},
            "captions.txt:2: missing caption for b.png",
        ),
        (["just words"], {}, "captions.txt:1: expected 'path: caption'"),
        (["a.png: a star"], {"a.png": SHAPE, "b.png": SHAPE}, "no caption for image b.png"),
        (["a.png: a star"], {"a.png": SHAPE[:32]}, "captions.txt:1: image a.png is 64x32"),
    ],
)
def test_bad_folders_are_refused_naming_file_and_line(
    tmp_path: Path, lines: list[str], images: dict[str, np.ndarray], message: str
) -> None:
    folder = make_folder(tmp_path, lines, images)
    with pytest.raises(CaptionFolderError, match=message.replace(".", r"\.")):
        read_caption_folder(folder, None, 64)


def test_unreadable_image_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["# comment", "", "a.png: a star"], {})
    (folder / "a.png").write_bytes(b"not a png")
    with pytest.raises(CaptionFolderError, match=r"captions\.txt:3: cannot read image a\.png"):
        read_caption_folder(folder, None, 64)


def test_finetune_cli_reports_a_bad_folder_and_exits_2(
    smoke_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_folder(tmp_path / "d", ["a.png:"], {"a.png": SHAPE})
    argv = [
        "finetune",
        "--from",
        str(smoke_checkpoint),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "captions.txt:1: missing caption for a.png" in capsys.readouterr().err


def test_re_evaluating_in_place_refreshes_the_model_card(smoke_checkpoint: Path) -> None:
    assert main(["evaluate", str(smoke_checkpoint), "--seen", "2", "--heldout", "1",
                 "--cfg", "2.5", "--top-k", "4", "--top-p", "0.6"]) == 0  # fmt: skip
    card = json.loads((smoke_checkpoint / "model_card.json").read_text())
    assert card["evaluation"]["sampling"]["cfg"] == 2.5
    assert card["evaluation"]["sampling"]["top_k"] == 4
    assert {r["n"] for r in card["evaluation"]["rows"] if r["images"] == "conditional"} == {2, 1}
    assert "--cfg 2.5" in card["evaluation_command"]
    text = (smoke_checkpoint / "MODEL_CARD.md").read_text()
    assert '"cfg": 2.5' in text
    assert "Re-evaluated with `python -m generation.engine.evaluate" in text
