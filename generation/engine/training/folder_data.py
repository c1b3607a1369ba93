"""Image-caption folders for fine-tuning VAR-CLIP (Zhang et al., 2024): a captions file of
`path: caption` lines, as in the reference's image_captions.txt, next to the images."""

# Unlike the reference loader, which silently drops malformed lines, every problem is an error
# that names the file and line: a line without "path: caption", an empty caption, an image
# that is missing or unreadable, an image of the wrong size, an image with no caption.

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class CaptionFolderError(ValueError):
    """A problem in a fine-tuning folder, with the file and line it was found at."""


@dataclasses.dataclass(frozen=True)
class CaptionedImages:
    """uint8 images (N,H,W,3) with one caption each and where each came from."""

    images_NHW3: np.ndarray
    captions: list[str]
    paths: list[Path]


def read_caption_folder(
    folder: Path, captions_file: Path | None, image_size: int
) -> CaptionedImages:
    """Read every `path: caption` line of captions_file (default folder/captions.txt)."""
    captions_file = captions_file or folder / "captions.txt"
    if not captions_file.is_file():
        raise CaptionFolderError(f"{captions_file}: captions file not found")
    images, captions, paths = [], [], []
    # 1. Parse the lines; image paths are relative to the folder.
    for lineno, raw in enumerate(captions_file.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{captions_file}:{lineno}"
        name, sep, caption = line.partition(":")
        name, caption = name.strip(), caption.strip()
        if not sep or not name:
            raise CaptionFolderError(f"{where}: expected 'path: caption', got {line!r}")
        if not caption:
            raise CaptionFolderError(f"{where}: missing caption for {name}")
        path = (folder / name).resolve()
        # 2. Load the image, refusing anything that is not exactly image_size square.
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except FileNotFoundError:
            raise CaptionFolderError(f"{where}: image {name} not found in {folder}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise CaptionFolderError(f"{where}: cannot read image {name}: {exc}") from None
        if rgb.shape[:2] != (image_size, image_size):
            h, w = rgb.shape[:2]
            raise CaptionFolderError(
                f"{where}: image {name} is {w}x{h}, the model needs {image_size}x{image_size}"
            )
        images.append(rgb)
        captions.append(caption)
        paths.append(path)
    # 3. Every image in the folder must have a caption.
    listed = set(paths)
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.resolve() not in listed:
            raise CaptionFolderError(
                f"{captions_file}: no caption for image {path.relative_to(folder)}"
            )
    if not images:
        raise CaptionFolderError(f"{captions_file}: no 'path: caption' lines")
    return CaptionedImages(np.stack(images), captions, paths)
