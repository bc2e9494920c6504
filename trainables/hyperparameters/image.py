"""The image classifier's hyperparameters (seeds B, C, E): the data set, the model of the zoo with the options
each architecture takes (checked here, before any trial), the optimizer, its schedule and the augmentation;
it trains in ``trainables/image_classify.py``, its models are ``trainables/image_models.py``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from trainables.hyperparameters.optim import LrScheduleParams, check_knobs
from trainables.registry import LOCAL_PATH, Hyperparameters, declare

AUGMENT_PRESETS = ("none", "basic", "extra", "glyph")  # trainables/augment.py

# name -> the options it takes beyond in_ch/num_classes/dropout/size, and their allowed values (None: any)
MODEL_OPTIONS: dict[str, dict[str, tuple[Any, ...] | None]] = {
    "alexnet": {},
    "vgg": {"depth": (16, 50), "kernel_size": (3, 5, 7), "batch_norm": (True, False)},
    "inception": {"depth": (22, 50), "reduce_1x1": (True, False)},
    "resnet": {"depth": (18, 50, 101)},
    "mnist1": {},
    "mnist2": {},
    "mnist3": {},
    "char-resnet": {"blocks": None, "width": None, "extra_channels": (0, 128, 256)},
}


# Short names for the seed's variants: a name fixes the depth, as "VGG-50" does in the seed tables.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "vgg16": ("vgg", {"depth": 16}),
    "vgg50": ("vgg", {"depth": 50}),
    "inception-v1": ("inception", {"depth": 22}),
    "inception50": ("inception", {"depth": 50}),
    "resnet18": ("resnet", {"depth": 18}),
    "resnet50": ("resnet", {"depth": 50}),
    "resnet101": ("resnet", {"depth": 101}),
}


def resolve(model: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An alias -> its architecture and the options it fixes (which must not be given again)."""
    if model not in ALIASES:
        return model, options
    arch, fixed = ALIASES[model]
    for key in fixed:
        if key in options and options[key] != fixed[key]:
            raise ValueError(f"model {model} fixes {key}={fixed[key]} (got {key}={options[key]!r})")
    return arch, {**options, **fixed}


def check_options(model: str, options: dict[str, Any]) -> None:
    """Raise ValueError naming the option an architecture does not take, or a value it does not allow."""
    if model in ALIASES:
        model, options = resolve(model, options)
    if model not in MODEL_OPTIONS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join([*MODEL_OPTIONS, *ALIASES])})")
    takes = MODEL_OPTIONS[model]
    for key, value in options.items():
        if key not in takes:
            taken = ", ".join(takes) or "no architecture options"
            raise ValueError(f"model {model} does not take {key!r} (it takes: {taken})")
        allowed = takes[key]
        if allowed is not None and value not in allowed:
            raise ValueError(f"model {model}: {key} must be one of {list(allowed)} (got {value!r})")


ARCH_OPTIONS = ("depth", "kernel_size", "batch_norm", "reduce_1x1", "blocks", "width", "extra_channels")


class ImageParams(Hyperparameters, LrScheduleParams):
    dataset: Literal["cifar10", "mnist", "digits", "glyphs", "folder"] = "digits"
    data_dir: str | None = Field(None, json_schema_extra=LOCAL_PATH)
    # dataset: folder (DIR/train/<class>/*.png, ...): images resized to image_size x image_size
    image_size: int = Field(32, ge=8)
    color: Literal["auto", "gray", "rgb"] = "auto"
    valid_ratio: float = Field(0.1, gt=0, lt=0.5)
    test_ratio: float = Field(0.1, gt=0, lt=0.5)
    download: bool = False
    verify_checksums: bool = True
    glyph_size: int = Field(90, ge=16)
    glyph_train_per_class: int = Field(110, ge=11)
    train_subset: int | None = Field(None, ge=1, description="train on the first N training images only")
    data_seed: int | None = Field(None, description="the seed of the batch order and augmentation (default: seed)")

    model: str = "mnist2"
    depth: int | None = None
    kernel_size: int | None = None
    batch_norm: bool | None = None
    reduce_1x1: bool | None = None
    blocks: list[int] | None = None
    width: float | None = Field(None, gt=0)
    extra_channels: int | None = None

    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: Literal[AUGMENT_PRESETS] = "none"  # type: ignore[valid-type]
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = False
    grad_norms: bool = False
    amp: bool = True  # mixed precision, on CUDA only
    save_model: bool = Field(True, description="the weights that scored the trial's value become its checkpoint")
    channels_last: bool = True  # on CUDA only

    @model_validator(mode="after")
    def _model_takes_its_options(self) -> "ImageParams":
        check_options(self.model, self.arch_options())
        check_knobs(self, "optimizer", {"sgd": ("momentum",)})  # adam takes none: a momentum would be ignored
        return self

    def arch_options(self) -> dict:
        return {k: getattr(self, k) for k in ARCH_OPTIONS if getattr(self, k) is not None}


# What an image trial reports at each step; grad_norm.LAYER with grad_norms: true, test_accuracy at its end.
IMAGE_METRICS = (
    "train_loss", "valid_loss", "valid_accuracy", "epoch", "seconds_per_epoch", "param_count", "grad_norm.*",
    "test_accuracy",
)  # fmt: skip

declare(
    "image-classifier",
    params=ImageParams,
    metric="valid_accuracy",
    mode="max",
    description="CNN zoo on CIFAR-10, MNIST, digits, glyphs or your own image folder (seeds B, C, E).",
    reports_by_time=True,
    reports=IMAGE_METRICS,
    trains="trainables.image_classify:image_classifier",
    preflight="trainables.image_classify:preflight",
    fused="trainables.image_classify:image_classifier_fused",
    fuse_key="trainables.image_classify:fuse_key",
    cannot_fuse="trainables.image_classify:cannot_fuse",
)
