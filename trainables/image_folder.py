"""A user's own images: one folder per class, the layout torchvision's ``ImageFolder`` reads.

    DIR/train/<class>/*.png   (and optionally DIR/valid/ or DIR/val/, DIR/test/ laid out the same)
    DIR/<class>/*.png         (no split folders: valid and test are cut off by ratio with a fixed seed)

Images are decoded once, converted to grayscale or RGB, resized to ``size`` x ``size`` and kept as uint8
tensors, like every other dataset here. ``check`` runs before any trial: a folder without images, a
single class, a file that is not an image, or splits with different classes is one line naming the path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

Color = Literal["auto", "gray", "rgb"]
SPLIT_DIRS = {"train": ("train",), "valid": ("valid", "val"), "test": ("test",)}


class FolderError(ValueError):
    """A problem with a user's image folder; the message names the path."""


@dataclass(frozen=True)
class Layout:
    classes: list[str]
    files: dict[str, list[tuple[str, int]]]  # split -> (path, class index); a missing split is absent


def _split_folders(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def scan(root: Path) -> Layout:
    """Classes and files of every split folder, checked; no image is decoded here."""
    if not root.is_dir():
        raise FolderError(f"data_dir {str(root)!r}: no such folder")
    folders = _split_folders(root)
    if folders and "train" not in folders:
        raise FolderError(f"data_dir {str(root)!r}: has {', '.join(p.name for p in folders.values())}/ but no train/")
    folders = folders or {"train": root}
    layout_hint = "expected DIR/train/<class>/*.png or DIR/<class>/*.png"
    classes: list[str] | None = None
    files = {}
    for split, folder in folders.items():
        try:
            names, _ = find_classes(str(folder))
        except FileNotFoundError:
            raise FolderError(f"data_dir {str(folder)!r}: no class folders ({layout_hint})") from None
        if classes is None:
            classes = names
            if len(classes) < 2:
                raise FolderError(
                    f"data_dir {str(folder)!r}: only one class ({classes[0]!r}); a classifier needs at least two"
                )
        elif names != classes:
            extra, lacking = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
            differs = "; ".join(
                part
                for part in (f"not in train/: {', '.join(extra)}" if extra else "",
                             f"missing here: {', '.join(lacking)}" if lacking else "")
                if part
            )  # fmt: skip
            raise FolderError(f"data_dir {str(folder)!r}: its classes differ from train/'s ({differs})")
        try:
            files[split] = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, IMG_EXTENSIONS)
        except FileNotFoundError as e:
            empty = str(e).split("classes", 1)[-1].split(".")[0].strip()
            message = f"data_dir {str(folder)!r}: no images in class folder(s) {empty} ({layout_hint})"
            raise FolderError(message) from None
    return Layout(classes, files)


def check(root: Path) -> Layout:
    """``scan`` and open every file's header: an unreadable image fails here, not in a trial."""
    return _check(str(root.resolve()))


@functools.lru_cache(maxsize=8)  # preflight checks each model choice of a space with the same folder
def _check(root: str) -> Layout:
    layout = scan(Path(root))
    for split in layout.files.values():
        for path, _ in split:
            try:
                with Image.open(path) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise FolderError(f"{path!r} cannot be read as an image ({type(e).__name__}: {e})") from None
    return layout


def _decode(files: list[tuple[str, int]], size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = []
    for path, _ in files:
        with Image.open(path) as img:
            img = img.convert(mode).resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.from_numpy(np.stack(images)), labels


def _mode(files: list[tuple[str, int]], color: Color) -> str:
    if color != "auto":
        return "L" if color == "gray" else "RGB"
    for path, _ in files:
        with Image.open(path) as img:
            if img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                return "RGB"
    return "L"


def _cut(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int) -> tuple[tuple, tuple]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n = max(1, int(round(len(x) * fraction)))
    return (x[order[n:]], y[order[n:]]), (x[order[:n]], y[order[:n]])


def load(
    root: Path, size: int, color: Color = "auto", valid_ratio: float = 0.1, test_ratio: float = 0.1, seed: int = 0
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """train / valid / test tensors and the class names. Missing splits are cut from train with ``seed``
    (the same for every trial, whatever the trial's own seed)."""
    layout = scan(root)
    mode = _mode([f for split in layout.files.values() for f in split], color)
    splits = {name: _decode(files, size, mode) for name, files in layout.files.items()}
    train = splits["train"]
    if "test" not in splits:
        train, splits["test"] = _cut(*train, test_ratio, seed)
    if "valid" not in splits:
        train, splits["valid"] = _cut(*train, valid_ratio / (1 - test_ratio), seed + 1)
    splits["train"] = train
    return splits, layout.classes


def write_glyph_folder(root: Path, classes: str, per_class: int, size: int, seed: int = 0) -> Path:
    """A folder dataset of generated character images (seed C's kind of data), PNG files per class."""
    from trainables import glyphs

    rng = np.random.default_rng(seed)
    for split, fonts in (("train", glyphs.TRAIN_FONTS[:3]), ("valid", glyphs.VALID_FONTS[:1])):
        for char in classes:
            folder = root / split / (f"upper_{char}" if char.isupper() else char)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class if split == "train" else max(1, per_class // 3)):
                pixels = glyphs.render(char, fonts[i % len(fonts)], size, rng)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
