"""Image datasets as in-memory tensors: CIFAR-10 and MNIST (torchvision), digits (scikit-learn), glyphs,
and a user's own folder of images (``image_folder``).

Each loader returns uint8 images (N, C, H, W) and int64 labels for train / valid / test. They fit in
memory, so training keeps them as tensors on the trial's device and needs no per-batch worker; a space
that asks for a DataLoader (``num_workers``, ``pin_memory``) gets one over the same tensors.

CIFAR-10 and MNIST keep torchvision's real loading code (``download=`` included). Tests run it on
small stand-ins written in the same on-disk formats (``write_cifar10_standin``, ``write_mnist_standin``).
"""

from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torchvision import datasets

from trainables import glyphs, image_folder

Split = tuple[torch.Tensor, torch.Tensor]


class DatasetMissing(FileNotFoundError):
    """A dataset that is not on disk: the message says where it looked and how to get it."""


@dataclass
class ImageData:
    train: Split
    valid: Split
    test: Split
    num_classes: int
    classes: list[str] | None = None  # the class names, index order (what an exported model predicts)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]


# Where torchvision keeps each downloadable dataset under data_dir, and a file that proves it is there.
DOWNLOADABLE = {
    "cifar10": ("CIFAR-10", Path(datasets.CIFAR10.base_folder), "batches.meta", "cifar-10-batches-py"),
    "mnist": ("MNIST", Path("MNIST") / "raw", "train-images-idx3-ubyte", "MNIST/raw with the four *-ubyte files"),
}


def missing(name: str, root: Path) -> DatasetMissing:
    title, folder, _, holds = DOWNLOADABLE[name]
    return DatasetMissing(
        f"{title} not found in {root / folder}: set data_dir to the folder that holds {holds}, "
        "or download: true where there is network"
    )


def default_data_dir() -> Path:
    return Path(os.environ.get("HPSEARCH_DATA", Path.home() / ".cache" / "hpsearch"))


def _split_off(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n = int(round(len(x) * fraction))
    return (x[order[n:]], y[order[n:]]), (x[order[:n]], y[order[:n]])


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR-10; ``verify=False`` skips the md5 check so generated stand-ins load too."""

    def __init__(self, *args, verify: bool = True, **kwargs) -> None:
        self._verify = verify
        super().__init__(*args, **kwargs)

    def _check_integrity(self) -> bool:
        if self._verify:
            return super()._check_integrity()
        return all((Path(self.root) / self.base_folder / f).is_file() for f, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        if self._verify:
            return super()._load_meta()
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def load_cifar10(data_dir: Path, download: bool, verify: bool = True, valid_fraction: float = 0.1) -> ImageData:
    try:
        train = _CIFAR10(str(data_dir), train=True, download=download, verify=verify)
        test = _CIFAR10(str(data_dir), train=False, download=download, verify=verify)
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise
        raise missing("cifar10", data_dir) from None
    x = torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous()
    (tx, ty), valid = _split_off(x, torch.tensor(train.targets), valid_fraction, seed=0)
    test_x = torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous()
    return ImageData((tx, ty), valid, (test_x, torch.tensor(test.targets)), 10, list(train.classes))


def load_mnist(data_dir: Path, download: bool, valid_fraction: float = 1 / 12) -> ImageData:
    try:
        train = datasets.MNIST(str(data_dir), train=True, download=download)
        test = datasets.MNIST(str(data_dir), train=False, download=download)
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise
        raise missing("mnist", data_dir) from None
    (tx, ty), valid = _split_off(train.data.unsqueeze(1), train.targets, valid_fraction, seed=0)
    return ImageData((tx, ty), valid, (test.data.unsqueeze(1), test.targets), 10, list(train.classes))


def load_digits() -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (real data that ships with the package): 60/20/20."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy((d.images * (255 / 16)).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    rest, test = _split_off(x, y, 0.2, seed=0)
    train, valid = _split_off(*rest, 0.25, seed=1)
    return ImageData(train, valid, test, 10, [str(d) for d in range(10)])


def load_glyphs(data_dir: Path, size: int, train_per_class: int, seed: int = 0) -> ImageData:
    s = glyphs.glyph_splits(train_per_class=train_per_class, size=size, seed=seed, cache_dir=str(data_dir))
    return ImageData(s["train"], s["valid"], s["test"], len(glyphs.CLASSES), list(glyphs.CLASSES))


def load_folder(root: Path, size: int, color: image_folder.Color, valid_ratio: float, test_ratio: float) -> ImageData:
    splits, classes = image_folder.load(root, size, color, valid_ratio, test_ratio)
    return ImageData(splits["train"], splits["valid"], splits["test"], len(classes), list(classes))


def load(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    verify: bool = True,
    glyph_size: int = 90,
    glyph_train_per_class: int = 110,
    image_size: int = 32,
    color: image_folder.Color = "auto",
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
) -> ImageData:
    if name == "folder":
        return load_folder(Path(data_dir or "."), image_size, color, valid_ratio, test_ratio)
    root = Path(data_dir) if data_dir else default_data_dir()
    if name == "cifar10":
        return load_cifar10(root, download, verify)
    if name == "mnist":
        return load_mnist(root, download)
    if name == "digits":
        return load_digits()
    if name == "glyphs":
        return load_glyphs(root, glyph_size, glyph_train_per_class)
    raise ValueError(f"unknown dataset {name!r}")


def download_hosts(name: str) -> list[str]:
    """The URLs torchvision downloads a dataset from."""
    if name == "cifar10":
        return [datasets.CIFAR10.url]
    return list(datasets.MNIST.mirrors)


def reachable(url: str, timeout: float = 5.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_available(name: str, data_dir: str | None, download: bool) -> None:
    """Fail early, before any trial starts, when a dataset is not on disk and cannot be downloaded."""
    if name == "folder":
        if not data_dir:
            raise FileNotFoundError("dataset: folder needs data_dir (a folder of class folders of images)")
        image_folder.check(Path(data_dir))
        return
    root = Path(data_dir) if data_dir else default_data_dir()
    if name not in DOWNLOADABLE:
        return
    _, folder, marker, _ = DOWNLOADABLE[name]
    if (root / folder / marker).is_file():
        return
    if not download:
        raise missing(name, root)
    urls = download_hosts(name)
    if not any(reachable(url) for url in urls):
        hosts = ", ".join(sorted({urlparse(u).hostname or u for u in urls}))
        raise DatasetMissing(
            f"download: true, but {hosts} cannot be reached from here (no network?) and {root / folder} is empty: "
            "put the dataset there, or run where there is network"
        )


# ----------------------------------------------------------------------------- stand-ins, same on-disk formats


def write_cifar10_standin(root: Path, per_batch: int = 50, test: int = 100, seed: int = 0) -> Path:
    """A tiny CIFAR-10 in the python-pickle layout torchvision reads (cifar-10-batches-py/...)."""
    rng = np.random.default_rng(seed)
    folder = root / datasets.CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        # class-dependent colour so a model can learn something from the stand-in
        base = np.stack([labels * 25, (9 - labels) * 25, (labels % 3) * 80], 1)[:, :, None, None]
        img = np.clip(base + rng.normal(0, 30, (n, 3, 32, 32)), 0, 255).astype(np.uint8)
        return {"data": img.reshape(n, -1), "labels": labels.tolist()}

    for name, _ in datasets.CIFAR10.train_list:
        with open(folder / name, "wb") as f:
            pickle.dump(batch(per_batch), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test), f)
    with open(folder / "batches.meta", "wb") as f:
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        pickle.dump({"label_names": names}, f)
    return root


def write_mnist_standin(root: Path, train: int = 240, test: int = 60, seed: int = 0) -> Path:
    """A tiny MNIST in the idx-ubyte layout torchvision reads (MNIST/raw/*-ubyte)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, lab in enumerate(labels):  # a bright bar whose position is the label
            images[i, 4 + 2 * lab : 6 + 2 * lab, 4:24] = 255
        images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())
    return root
