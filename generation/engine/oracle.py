"""Pixel-logic oracle: reads shape, colour, size, position and background back from an image.
Scores generated shapes images against their captions with no learned model in the loop."""

# 1. background = the palette colour nearest the median border pixel;
# 2. foreground colour = the commonest palette colour among pixels far from the background;
# 3. shape mask = pixels nearer the foreground colour than the background (alpha > 0.5);
# 4. position = nearest anchor to the mask centroid; size = robust bounding-box span;
# 5. shape = template with the best IoU after both masks are scaled to the same box.
# Shapes: H = W = 64 pixels, P palette colours, T template side.

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from generation.engine.synthetic import (
    COLOURS,
    PALETTE,
    POSITIONS,
    SHAPES,
    Attributes,
    render,
)

FIELDS: tuple[str, ...] = ("background", "colour", "shape", "size", "position")
_PALETTE_P3 = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
_TEMPLATE_SIDE = 24
# Pixels this far (RGB distance) from the background count as foreground candidates.
_FOREGROUND_DIST = 60.0
_MIN_PIXELS = 6
# Bounding-box span (pixels) between small (measured 20-26 px) and large (28-34 px) shapes.
_SIZE_SPLIT = 27.0


@dataclasses.dataclass(frozen=True)
class Reading:
    """What the oracle sees in one image; shape is "none" when no foreground is found."""

    background: str
    colour: str
    shape: str
    size: str
    position: str

    def matches(self, target: Attributes) -> dict[str, bool]:
        """Per-field verdict against the attributes the caption asked for."""
        return {f: getattr(self, f) == getattr(target, f) for f in FIELDS}


def _nearest_colour(rgb_N3: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest palette colour for each row."""
    d_NP = ((rgb_N3[:, None, :] - _PALETTE_P3[None, :, :]) ** 2).sum(-1)
    return np.asarray(d_NP.argmin(1))


def _crop_to_template(mask_HW: np.ndarray) -> np.ndarray:
    """The mask's bounding box rescaled to (T,T) float in [0,1]."""
    ys, xs = np.nonzero(mask_HW)
    crop = mask_HW[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    img = Image.fromarray(crop * 255.0).resize(
        (_TEMPLATE_SIDE, _TEMPLATE_SIDE), Image.Resampling.BILINEAR
    )
    return np.asarray(img, dtype=np.float32) / 255.0


def _despeckle(mask_HW: np.ndarray) -> np.ndarray:
    """The mask without pixels that have fewer than two set 8-neighbours."""
    pad = np.pad(mask_HW, 1).astype(np.int32)
    h, w = mask_HW.shape
    neighbours_HW = sum(
        pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if dy or dx
    )
    return mask_HW & (neighbours_HW >= 2)


@lru_cache(maxsize=1)
def _templates() -> np.ndarray:
    """(S,T,T) binary masks of each shape, rendered large at the centre."""
    out = []
    for shape in SHAPES:
        img = render(Attributes(shape, "white", "large", "centre", "black"))
        out.append(_crop_to_template(img.astype(np.float32).mean(-1) > 127.5) > 0.5)
    return np.stack(out)


def read_image(img_HW3: np.ndarray) -> Reading:
    """The oracle's reading of one uint8 (H,W,3) image."""
    px_HW3 = img_HW3.astype(np.float32)
    h, w, _ = px_HW3.shape
    # 1. Background: median of the 2-pixel border, snapped to the palette.
    border = np.concatenate(
        [px_HW3[:2].reshape(-1, 3), px_HW3[-2:].reshape(-1, 3),
         px_HW3[:, :2].reshape(-1, 3), px_HW3[:, -2:].reshape(-1, 3)]
    )  # fmt: skip
    bg_rgb = np.median(border, axis=0)
    bg = int(_nearest_colour(bg_rgb[None])[0])
    # 2. Foreground colour: vote among pixels clearly unlike the measured background.
    flat_N3 = px_HW3.reshape(-1, 3)
    far_N = np.linalg.norm(flat_N3 - bg_rgb, axis=1) > _FOREGROUND_DIST
    labels_N = _nearest_colour(flat_N3[far_N]) if far_N.any() else np.zeros(0, dtype=np.int64)
    labels_N = labels_N[labels_N != bg]
    if labels_N.size < _MIN_PIXELS:
        return Reading(COLOURS[bg], "none", "none", "none", "none")
    fg = int(np.bincount(labels_N, minlength=len(COLOURS)).argmax())
    # 3. Shape mask: alpha of each pixel along the background -> foreground line.
    fg_rgb = _PALETTE_P3[fg]
    axis = fg_rgb - bg_rgb
    alpha_N = ((flat_N3 - bg_rgb) @ axis) / max(float(axis @ axis), 1e-6)
    mask_HW = (alpha_N > 0.5).reshape(h, w)
    if mask_HW.sum() < _MIN_PIXELS:
        return Reading(COLOURS[bg], COLOURS[fg], "none", "none", "none")
    # 4. Drop isolated speckles (fewer than 2 of 8 neighbours set) a generator may leave far
    # from the shape, then position from the centroid and size from the bounding-box span.
    mask_HW = _despeckle(mask_HW)
    if mask_HW.sum() < _MIN_PIXELS:
        return Reading(COLOURS[bg], COLOURS[fg], "none", "none", "none")
    ys, xs = np.nonzero(mask_HW)
    cx, cy = xs.mean() * 64.0 / w, ys.mean() * 64.0 / h
    position = min(
        POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2
    )
    span = max(int(np.ptp(xs)), int(np.ptp(ys))) + 1
    size = "large" if span * 64.0 / max(h, w) > _SIZE_SPLIT else "small"
    # 5. Shape: best IoU against the templates in a common box.
    crop_TT = _crop_to_template(mask_HW) > 0.5
    tmpl_STT = _templates()
    inter_S = (tmpl_STT & crop_TT).sum((1, 2))
    union_S = (tmpl_STT | crop_TT).sum((1, 2))
    shape = SHAPES[int((inter_S / np.maximum(union_S, 1)).argmax())]
    return Reading(COLOURS[bg], COLOURS[fg], shape, size, position)


def score(images_NHW3: np.ndarray, targets: Sequence[Attributes]) -> dict[str, float]:
    """Fraction of images whose reading matches the target, per field and for all fields."""
    hits = {f: 0 for f in (*FIELDS, "all")}
    for img, target in zip(images_NHW3, targets, strict=True):
        verdict = read_image(img).matches(target)
        for f, ok in verdict.items():
            hits[f] += int(ok)
        hits["all"] += int(all(verdict.values()))
    n = max(len(targets), 1)
    return {f: v / n for f, v in hits.items()}
