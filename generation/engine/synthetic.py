"""Synthetic captioned shapes: the deterministic data set the bundled VAR-CLIP demo is trained on.
Stands in for ImageNet + BLIP-2 captions (VAR-CLIP §3) at 64x64 px so a 2-core CPU can train it."""

# Every image shows one filled shape (5 kinds, 8 colours, 2 sizes, 5 positions) on a plain
# background of another palette colour; captions come in four phrasings. A fixed set of
# shape-colour pairs never appears in training, so the evaluation can test composition.
# Rendering is supersampled 4x then box-filtered: smooth, reproducible edges.
# Shapes: N samples, H = W = 64 pixels.

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = "shapes-v2"
IMAGE_SIZE = 64
_SUPERSAMPLE = 4

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "cyan": (40, 200, 215),
    "yellow": (245, 225, 40),
    "green": (35, 165, 55),
    "blue": (35, 75, 225),
    "purple": (140, 55, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SIZES: tuple[str, ...] = ("small", "large")
# Half-extent of the shape in pixels: large shapes cover ~1.8x the area of small ones. v1 drew
# small shapes at 9.5 px: a 16x16-latent tokenizer rebuilt their stars, triangles and crosses
# as circles (55 % shape right on small, 89 % on large), and the transformer followed.
SIZE_RADIUS: dict[str, float] = {"small": 12.0, "large": 16.0}
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (17.0, 32.0),
    "right": (47.0, 32.0),
    "top": (32.0, 17.0),
    "bottom": (32.0, 47.0),
    "centre": (32.0, 32.0),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
# Pairs never rendered in the training split; every shape and colour still appears elsewhere.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("star", "red"),
    ("triangle", "blue"),
    ("cross", "green"),
    ("square", "yellow"),
    ("circle", "purple"),
)
TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {position}, {background} background",
    "{size} {colour} {shape} {position} over {background}",
    "a {colour} {shape}, {size}, {position} on a {background} background",
    "{background} background with a {size} {colour} {shape} {position}",
)
_JITTER_PX = 1.0
_JITTER_RADIUS = 0.5


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What one image shows; the oracle reads the same five fields back from pixels."""

    shape: str
    colour: str
    size: str
    position: str
    background: str

    @property
    def held_out(self) -> bool:
        return (self.shape, self.colour) in HELD_OUT_PAIRS

    def caption(self, template: int = 0) -> str:
        """The caption in phrasing `template` (an index into TEMPLATES)."""
        return TEMPLATES[template].format(
            size=self.size,
            colour=self.colour,
            shape=self.shape,
            position=POSITION_PHRASES[self.position],
            background=self.background,
        )


@dataclasses.dataclass(frozen=True)
class ShapesDataset:
    """Rendered images (N,64,64,3) uint8 with their captions and attributes."""

    images_NHW3: np.ndarray
    captions: list[str]
    attributes: list[Attributes]
    seed: int
    split: str
    version: str = GENERATOR_VERSION

    def __len__(self) -> int:
        return len(self.captions)


def all_attributes(split: str) -> list[Attributes]:
    """Every attribute combination of `split`: "train" (seen), "heldout", or "all"."""
    combos = [
        Attributes(shape, colour, size, position, background)
        for shape in SHAPES
        for colour in COLOURS
        for size in SIZES
        for position in POSITIONS
        for background in COLOURS
        if background != colour
    ]
    if split == "all":
        return combos
    if split == "train":
        return [a for a in combos if not a.held_out]
    if split == "heldout":
        return [a for a in combos if a.held_out]
    raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of `shape` centred at (cx, cy) with half-extent r (circle: a 64-gon)."""
    if shape == "circle":
        return [
            (cx + r * math.cos(2 * math.pi * k / 64), cy + r * math.sin(2 * math.pi * k / 64))
            for k in range(64)
        ]
    if shape == "square":
        s = r * 0.9  # a full-extent square looks much heavier than the other shapes
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "star":
        # Five points, inner radius 0.45: fat enough to stay star-like at 15 px.
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            ang = -math.pi / 2 + math.pi * k / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang) + r * 0.1))
        return pts
    if shape == "cross":
        a = r / 3  # arm half-width: arms are as wide as a third of the span
        return [
            (cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a),
            (cx + r, cy + a), (cx + a, cy + a), (cx + a, cy + r), (cx - a, cy + r),
            (cx - a, cy + a), (cx - r, cy + a), (cx - r, cy - a), (cx - a, cy - a),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}")


def render(
    attrs: Attributes, dx: float = 0.0, dy: float = 0.0, dr: float = 0.0, size: int = IMAGE_SIZE
) -> np.ndarray:
    """Draw one image (size,size,3) uint8; dx/dy/dr jitter centre and radius in pixels."""
    # 1. Draw at 4x on the background colour.
    ss = size * _SUPERSAMPLE
    scale = ss / IMAGE_SIZE
    canvas = Image.new("RGB", (ss, ss), PALETTE[attrs.background])
    cx, cy = POSITIONS[attrs.position]
    r = SIZE_RADIUS[attrs.size] + dr
    poly = shape_polygon(attrs.shape, (cx + dx) * scale, (cy + dy) * scale, r * scale)
    ImageDraw.Draw(canvas).polygon(poly, fill=PALETTE[attrs.colour])
    # 2. Box-filter down: anti-aliased edges without any randomness.
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def sample_attributes(
    rng: np.random.Generator, n: int, pool: Sequence[Attributes]
) -> list[Attributes]:
    """n attribute tuples drawn uniformly from pool, cycling through it before repeating."""
    out: list[Attributes] = []
    while len(out) < n:
        order = rng.permutation(len(pool))
        out.extend(pool[i] for i in order[: n - len(out)])
    return out


def make_dataset(seed: int, count: int, split: str = "train") -> ShapesDataset:
    """Render `count` captioned images of `split` deterministically from `seed`."""
    # 1. Attributes: every combination of the split appears before any repeats.
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    attrs = sample_attributes(rng, count, all_attributes(split))
    # 2. Per-image jitter and phrasing, drawn in one go so the stream is order-independent.
    jitter_N3 = rng.uniform(-1.0, 1.0, size=(count, 3)) * np.array(
        [_JITTER_PX, _JITTER_PX, _JITTER_RADIUS]
    )
    templates_N = rng.integers(0, len(TEMPLATES), size=count)
    # 3. Render.
    images_NHW3 = np.stack(
        [
            render(a, float(j[0]), float(j[1]), float(j[2]))
            for a, j in zip(attrs, jitter_N3, strict=True)
        ]
    )
    captions = [a.caption(int(t)) for a, t in zip(attrs, templates_N, strict=True)]
    return ShapesDataset(images_NHW3, captions, attrs, seed, split)


def to_tensor_range(images_NHW3: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) -> float32 (N,3,H,W) in [-1, 1], the range the VQVAE sees."""
    return images_NHW3.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
