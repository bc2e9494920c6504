"""The trainable registry: a name -> (function, hyperparameter model, default metric).

A registered trainable is a function ``fn(params, session)`` whose hyperparameters are a pydantic model,
so a space file can be checked against it before any trial starts (unknown names and wrong types are
caught at the edge) and ``hpsearch list`` can show every knob with its default.

A user's own code needs no registration: a *reference* ``./file.py:function`` or ``module:function``
names it directly. Such a function may be decorated with ``@trainable`` (then it is checked like a
built-in), or be a plain ``fn(config)`` / ``fn(config, session)`` that takes a dict, as Ray Tune's and
Optuna's objectives do; what it returns (a number or a dict of metrics) is reported as its last step.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import numbers
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

from trainables import plain_source
from trainables.errors import TrainableError
from trainables.session import Session


class Hyperparameters(BaseModel):
    """Base of every trainable's hyperparameters: unknown names are an error, not silently dropped, and so is
    a NaN or infinite number (``warmup_epochs: .inf``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed: int = 0


# Marks a hyperparameter that may name a local file or folder: the space loader makes it absolute, since
# Ray runs each trial in a directory of its own.
LOCAL_PATH = {"local_path": True}

TrainFn = Callable[[Any, Session], None]


HOW_TO_NAME = (
    "name your own function as ./file.py:function or package.module:function, or list its module in HPSEARCH_TRAINABLES"
)


@dataclass(frozen=True)
class TrainableSpec:
    name: str
    fn: TrainFn
    # None for a plain function: it takes a dict, and the space file's types are the only ones.
    params: type[Hyperparameters] | None
    metric: str | None  # None for a plain function: the space file names it
    mode: Literal["min", "max"] | None
    description: str
    reports_by_time: bool = False  # can evaluate at wall-clock intervals (budget-fair pruning)
    # A cheap check of fixed settings, run before any trial starts (e.g. that a dataset is on disk);
    # it raises ValueError or FileNotFoundError with a message for the user.
    preflight: Callable[[Any], None] | None = None
    # Writes a trained checkpoint in a form that loads without hpsearch (hpsearch export); the default
    # writes the state dict with its config (search/readback/results.py, ``export``).
    export: Callable[[dict[str, Any], Any, Path], list[Path]] | None = None
    # Fused trials (trainables/fused.py): ``fused(list of params, group session)`` trains several
    # configurations as one stacked model; ``fuse_key(params)`` is what members of one group share, and
    # ``cannot_fuse(params)`` says why a configuration cannot fuse (None when it can).
    fused: Callable[[list[Any], Any], None] | None = None
    fuse_key: Callable[[Any], tuple] | None = None
    cannot_fuse: Callable[[Any], str | None] | None = None
    # Every metric it may report, as names or shell patterns (``grad_norm.*``), some only at a trial's end
    # (``test_accuracy``): a space file's metric or constraint naming another is refused before anything
    # runs. Empty: not declared, and any name is taken (a user's own code).
    reports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.metric is not None and not self.may_report(self.metric):
            raise ValueError(f"trainable {self.name!r}: its metric {self.metric!r} is not among what it reports")

    @property
    def plain(self) -> bool:
        return self.params is None

    def may_report(self, metric: str) -> bool:
        """Whether ``metric`` is one it declares it reports (always, when it declares none)."""
        return not self.reports or any(fnmatch.fnmatchcase(metric, pattern) for pattern in self.reports)

    def defaults(self) -> dict[str, Any]:
        return {} if self.params is None else self.params().model_dump()

    def run(self, config: dict[str, Any], session: Session, metric: str | None = None) -> None:
        """Train once; ``metric`` names a plain function's returned number (the space file's metric)."""
        if self.params is not None:
            self.fn(self.params(**config), session)
            return
        tracked = _StepTracking(session)
        fn = self.fn.resolve() if isinstance(self.fn, Deferred) else self.fn  # a file read, imported now
        takes_session = len(inspect.signature(fn).parameters) >= 2
        returned = fn(dict(config), tracked) if takes_session else fn(dict(config))
        if returned is not None:
            tracked.report(tracked.last_step + 1, _as_metrics(returned, metric or self.metric), final=True)

    def run_group(self, configs: list[dict[str, Any]], session: Any) -> None:
        """Train several configurations as one fused group (``fused``), each validated as for ``run``."""
        if self.fused is None or self.params is None:
            raise TrainableError(f"{self.name} cannot train fused groups")
        self.fused([self.params(**c) for c in configs], session)


def fusable(
    name: str,
    fused: Callable[[list[Any], Any], None],
    key: Callable[[Any], tuple],
    cannot_fuse: Callable[[Any], str | None] | None = None,
) -> None:
    """Give a trainable registered with ``@trainable`` its fused form (after both are defined in its module)."""
    import dataclasses

    _REGISTRY[name] = dataclasses.replace(_REGISTRY[name], fused=fused, fuse_key=key, cannot_fuse=cannot_fuse)


class Deferred:
    """A function named ``module:attr``, imported when it is first called: a built-in's training code (torch,
    its models, its data) loads in the trial's worker, not in a command that only checks a space file or
    lists the trainables."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._fn: Callable | None = None

    def resolve(self) -> Callable:
        if self._fn is None:
            module, _, attr = self.target.partition(":")
            self._fn = getattr(importlib.import_module(module), attr)
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Deferred({self.target!r})"


class DeferredFile(Deferred):
    """A function in a user's ``.py`` file, imported when it is first called (``plain_source``: the driver
    reads the file, the trial's worker runs it)."""

    def __init__(self, path: Path, attr: str) -> None:
        super().__init__(f"{path}:{attr}")
        self.path, self.attr = path, attr

    def resolve(self) -> Callable:
        if self._fn is None:
            self._fn = getattr(import_file(self.path), self.attr)
        return self._fn


def declare(
    name: str,
    *,
    params: type[Hyperparameters],
    metric: str,
    mode: Literal["min", "max"],
    description: str,
    trains: str,
    reports: tuple[str, ...],
    reports_by_time: bool = False,
    preflight: str | None = None,
    export: str | None = None,
    fused: str | None = None,
    fuse_key: str | None = None,
    cannot_fuse: str | None = None,
) -> None:
    """Register a built-in from its hyperparameters' module (``trainables/hyperparameters/``), which imports
    no torch: what it trains with, and its optional parts, are ``module:function`` names, imported on first
    call. A user's own trainable uses ``@trainable`` instead."""
    if name in _REGISTRY:
        raise ValueError(f"trainable {name!r} is registered twice")

    def later(target: str | None) -> Deferred | None:
        return Deferred(target) if target else None

    _REGISTRY[name] = TrainableSpec(
        name, Deferred(trains), params, metric, mode, description, reports_by_time, later(preflight),
        later(export), later(fused), later(fuse_key), later(cannot_fuse), reports,
    )  # fmt: skip


class _StepTracking:
    """The session a plain function sees: remembers its last step, so a returned value comes after it."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.last_step = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, **kw) -> None:
        self.last_step = max(self.last_step, int(step))
        self._session.report(step, metrics, checkpoint, **kw)


def _as_metrics(returned: Any, metric: str | None) -> dict[str, float]:
    if isinstance(returned, dict):
        return dict(returned)
    if isinstance(returned, numbers.Real) and not isinstance(returned, bool) and metric is not None:
        return {metric: float(returned)}  # a numpy scalar too
    raise TypeError(
        f"a trainable returns a number or a dict of metrics (got {type(returned).__name__}); "
        "or it reports each step with session.report(step, metrics) and returns None"
    )


_REGISTRY: dict[str, TrainableSpec] = {}


def trainable(
    name: str,
    *,
    params: type[Hyperparameters],
    metric: str,
    mode: Literal["min", "max"],
    reports_by_time: bool = False,
    preflight: Callable[[Any], None] | None = None,
    export: Callable[[dict[str, Any], Any, Path], list[Path]] | None = None,
    reports: tuple[str, ...] = (),
) -> Callable[[TrainFn], TrainFn]:
    """Register ``fn`` under ``name``; its docstring's first line becomes the description. ``reports``, when
    given, lists every metric it may report (names or patterns), so a space file naming another is refused."""

    def register(fn: TrainFn) -> TrainFn:
        if name in _REGISTRY:
            raise ValueError(f"trainable {name!r} is registered twice")
        _REGISTRY[name] = TrainableSpec(
            name, fn, params, metric, mode, _first_line(fn), reports_by_time, preflight, export, reports=tuple(reports)
        )
        return fn

    return register


def _first_line(fn: Callable) -> str:
    doc = (fn.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


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
            if not Path(ref).is_file():
                raise TrainableError(f"{PLUGINS_ENV}: no such file {ref!r}")
            import_file(Path(ref))
        else:
            importlib.import_module(ref)


_files: dict[Path, Any] = {}
# Folders added to sys.path for a user's code: the search layer hands them to every trial's worker.
user_import_dirs: list[str] = []


def add_import_dir(folder: Path | str) -> None:
    folder = str(Path(folder).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if folder not in user_import_dirs:
        user_import_dirs.append(folder)


def import_file(path: Path) -> Any:
    """Import a user's .py file once (its folder on sys.path, so it can import its neighbours)."""
    path = path.resolve()
    if path in _files:
        return _files[path]
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(f"hpsearch_user_{path.stem}_{digest}", path)
    if spec is None or spec.loader is None:
        raise TrainableError(f"cannot import {path}: not a Python file")
    add_import_dir(path.parent)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[spec.name]
        raise TrainableError(f"importing {path} failed: {_where(e, path)}{type(e).__name__}: {e}") from e
    _files[path] = module
    return module


def _where(e: BaseException, path: Path) -> str:
    if isinstance(e, SyntaxError) and e.lineno:
        return f"line {e.lineno}: "
    frames = [f for f in inspect.getinnerframes(e.__traceback__) if Path(f.filename).resolve() == path]
    return f"line {frames[-1].lineno}: " if frames else ""


def is_reference(name: str) -> bool:
    """``./file.py:fn`` or ``package.module:fn``, as opposed to a registered name."""
    return ":" in name


def split_reference(ref: str) -> tuple[str, str]:
    target, _, attr = ref.rpartition(":")
    if not target or not attr.isidentifier():
        raise TrainableError(f"{ref!r} is not FILE.py:FUNCTION or MODULE:FUNCTION")
    return target, attr


def short_name(name: str) -> str:
    """A name fit for Ray's trainable and directory names: ``./nets/mnist.py:train`` -> ``mnist_train``."""
    if is_reference(name):
        target, attr = split_reference(name)
        name = f"{Path(target).stem if target.endswith('.py') else target.rsplit('.', 1)[-1]}_{attr}"
    return name.replace("-", "_")


def _same(registered: Any, fn: Callable) -> bool:
    return (registered.resolve() if isinstance(registered, Deferred) else registered) is fn


def from_reference(ref: str) -> TrainableSpec:
    """The trainable a reference names. A file path must already be absolute or relative to the cwd. A plain
    function is read from its file, not imported, where reading can tell (``plain_source``): the import
    happens in the trial's worker, which runs it."""
    target, attr = split_reference(ref)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise TrainableError(f"no such file {target!r} (from {ref!r})")
        path = path.resolve()
        add_import_dir(path.parent)  # its neighbours are found (by reading) and imported (by running) from here
        found = plain_source.read(path, attr) if path not in _files else None
        if found is not None:
            return _plain(ref, DeferredFile(path, attr), found.n_args, found.description)
        module = import_file(path)
    else:
        origin = _source_of(target)
        found = plain_source.read(origin, attr) if origin is not None else None
        if found is not None:
            return _plain(ref, Deferred(f"{target}:{attr}"), found.n_args, found.description)
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise TrainableError(f"cannot import module {target!r} (from {ref!r}): {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        defined = sorted(
            n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__
        )
        raise TrainableError(f"{target} has no function {attr!r} (it defines: {', '.join(defined) or 'none'})")
    registered = next((s for s in _REGISTRY.values() if _same(s.fn, fn)), None)
    if registered is not None:  # decorated with @trainable: checked like a built-in
        return registered
    return _plain(ref, fn, len(inspect.signature(fn).parameters), _first_line(fn))


def _plain(ref: str, fn: Callable, n_args: int, description: str) -> TrainableSpec:
    if n_args not in (1, 2):
        raise TrainableError(f"{ref}: a plain trainable takes (config) or (config, session), not {n_args} arguments")
    return TrainableSpec(ref, fn, None, None, None, description)


def _source_of(module: str) -> Path | None:
    """The ``.py`` file of a module not yet imported, found without running it (its parent packages are)."""
    if module in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


# Where each built-in trainable is declared: its hyperparameters' module, which imports no torch (a space
# file is checked and `hpsearch list` answers without loading the models); importing it declares it.
BUILTIN = {
    "addition-cnn": "trainables.hyperparameters.addition",
    "addition-transformer": "trainables.hyperparameters.addition",
    "image-classifier": "trainables.hyperparameters.image",
    "text-finetune": "trainables.hyperparameters.text",
    "seq-transformer": "trainables.hyperparameters.sequence",
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
    """A registered name, or a reference to a user's function (``./file.py:fn``, ``module:fn``)."""
    if is_reference(name):
        return from_reference(name)
    _load(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TrainableError(
            f"unknown trainable {name!r} (known: {', '.join(sorted(_REGISTRY))}); {HOW_TO_NAME}"
        ) from None


def all_trainables() -> list[TrainableSpec]:
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
