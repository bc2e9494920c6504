"""Generated character images in the spirit of seed experiment C: 52 classes, grayscale, 90x90.

Digits, upper-case letters, and the lower-case letters whose shapes differ from their capitals, drawn
from the TrueType fonts that ship inside matplotlib (DejaVu, STIX, Computer Modern), with small
rotations, shifts, scale changes and noise. Validation and test images come from fonts the training set
never saw, so a model must learn the shapes, not the fonts. Deterministic for a given seed.
"""

from __future__ import annotations

import os
import string
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# 10 digits + 26 capitals + 16 lower-case letters that do not look like small capitals = 52 classes.
LOWER_DISTINCT = "abdefghijlmnqrty"
CLASSES = string.digits + string.ascii_uppercase + LOWER_DISTINCT
assert len(CLASSES) == 52

TRAIN_FONTS = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
]
VALID_FONTS = ["DejaVuSerif-Bold.ttf", "STIXGeneralBol.ttf", "DejaVuSansMono-Oblique.ttf"]
TEST_FONTS = ["DejaVuSans-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf", "cmtt10.ttf"]


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def render(char: str, font: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One glyph, randomly rotated, shifted and scaled, with noise: uint8 (size, size), bright ink on a dark
    page (so the zero padding of a rotation or shift is background, not a black bar)."""
    scale = rng.uniform(0.55, 0.8)
    canvas = 2 * size
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    f = _font(font, max(8, int(size * scale)))
    left, top, right, bottom = draw.textbbox((0, 0), char, font=f)
    x = (canvas - (right - left)) / 2 - left
    y = (canvas - (bottom - top)) / 2 - top
    draw.text((x, y), char, fill=255, font=f)
    img = img.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    dx, dy = rng.uniform(-0.12, 0.12, size=2) * size
    box = (size / 2 - dx, size / 2 - dy, size / 2 - dx + size, size / 2 - dy + size)
    img = img.crop(tuple(int(round(v)) for v in box))
    ink = np.asarray(img, dtype=np.float32) / 255.0
    page = ink * rng.uniform(0.6, 1.0)  # ink of varying strength
    page += rng.normal(0, rng.uniform(0.02, 0.12), size=page.shape)  # scanner noise
    return (np.clip(page, 0, 1) * 255).astype(np.uint8)


def make_split(fonts: list[str], per_class_per_font: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, char in enumerate(CLASSES):
        for font in fonts:
            for _ in range(per_class_per_font):
                images.append(render(char, font, size, rng))
                labels.append(label)
    x = torch.from_numpy(np.stack(images)).unsqueeze(1)  # (N, 1, H, W) uint8
    return x, torch.tensor(labels)


def glyph_splits(
    train_per_class: int = 110, eval_per_class: int = 30, size: int = 90, seed: int = 0, cache_dir: str | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """train / valid / test tensors. Cached as a .pt file in ``cache_dir`` (rendering takes seconds)."""
    key = f"glyphs-{train_per_class}-{eval_per_class}-{size}-{seed}.pt"
    path = Path(cache_dir or os.environ.get("HPSEARCH_DATA", Path.home() / ".cache" / "hpsearch")) / key
    if path.is_file():
        return torch.load(path)
    per_font = max(1, train_per_class // len(TRAIN_FONTS))
    per_eval_font = max(1, eval_per_class // len(VALID_FONTS))
    splits = {
        "train": make_split(TRAIN_FONTS, per_font, size, seed),
        "valid": make_split(VALID_FONTS, per_eval_font, size, seed + 1),
        "test": make_split(TEST_FONTS, per_eval_font, size, seed + 2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # trials rendering at once each write their own file
    torch.save(splits, tmp)
    tmp.replace(path)
    return splits
