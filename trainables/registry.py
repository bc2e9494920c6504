"""The trainable registry: a name -> (function, hyperparameter model, default metric).

A trainable is a plain function ``fn(params, session)``. Its hyperparameters are a pydantic model, so a
space file can be checked against it before any trial starts (unknown names and wrong types are caught
at the edge) and ``hpsearch list`` can show every knob with its default.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

from trainables.session import Session


class Hyperparameters(BaseModel):
    """Base of every trainable's hyperparameters: unknown names are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0


# Marks a hyperparameter that may name a local file or folder: the space loader makes it absolute, since
# Ray runs each trial in a directory of its own.
LOCAL_PATH = {"local_path": True}

TrainFn = Callable[[Any, Session], None]


@dataclass(frozen=True)
class TrainableSpec:
    name: str
    fn: TrainFn
    params: type[Hyperparameters]
    metric: str
    mode: Literal["min", "max"]
    description: str
    reports_by_time: bool = False  # can evaluate at wall-clock intervals (budget-fair pruning)
    # A cheap check of fixed settings, run before any trial starts (e.g. that a dataset is on disk);
    # it raises ValueError or FileNotFoundError with a message for the user.
    preflight: Callable[[Any], None] | None = None

    def defaults(self) -> dict[str, Any]:
        return self.params().model_dump()

    def run(self, config: dict[str, Any], session: Session) -> None:
        self.fn(self.params(**config), session)


_REGISTRY: dict[str, TrainableSpec] = {}


def trainable(
    name: str,
    *,
    params: type[Hyperparameters],
    metric: str,
    mode: Literal["min", "max"],
    reports_by_time: bool = False,
    preflight: Callable[[Any], None] | None = None,
) -> Callable[[TrainFn], TrainFn]:
    """Register ``fn`` under ``name``; its docstring's first line becomes the description."""

    def register(fn: TrainFn) -> TrainFn:
        if name in _REGISTRY:
            raise ValueError(f"trainable {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = TrainableSpec(
            name, fn, params, metric, mode, doc[0] if doc else "", reports_by_time, preflight
        )
        return fn

    return register


PLUGINS_ENV = "HPSEARCH_TRAINABLES"
_loaded_plugins: set[str] = set()


def plugin_modules() -> list[str]:
    """Extra trainables a user brings: module names or .py files in $HPSEARCH_TRAINABLES (os.pathsep-separated)."""
    refs = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if m.strip()]
    return [str(Path(m).resolve()) if m.endswith(".py") else m for m in refs]


def load_plugins(modules: list[str]) -> None:
    """Import each module (or .py file) once, so its @trainable decorators register it."""
    for ref in modules:
        if ref in _loaded_plugins:
            continue
        _loaded_plugins.add(ref)
        if ref.endswith(".py"):
            path = Path(ref)
            spec = importlib.util.spec_from_file_location(f"hpsearch_plugin_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise KeyError(f"{PLUGINS_ENV}: no such file {ref!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(ref)


# Where each built-in trainable lives, so a trial imports only its own module (a worker that runs the
# addition task need not import torchvision). Importing a module runs its @trainable decorators.
BUILTIN = {
    "addition-cnn": "trainables.addition",
    "addition-transformer": "trainables.addition",
    "image-classifier": "trainables.image_classify",
    "text-finetune": "trainables.text_finetune",
    "seq-transformer": "trainables.seq_transformer",
}


def _load(name: str | None = None) -> None:
    """Import what registers ``name`` (a built-in's own module, else the plugins); everything if None."""
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name])
        return
    load_plugins(plugin_modules())
    if name is None or name not in _REGISTRY:
        for module in sorted(set(BUILTIN.values())):
            importlib.import_module(module)


def get(name: str) -> TrainableSpec:
    _load(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown trainable {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def all_trainables() -> list[TrainableSpec]:
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
