"""The space file: its schema (pydantic) and its loading (``--set`` overrides: ``overrides.py``; the checks
against the trainable: ``trainable_checks.py``).

Everything a sweep needs is validated here, before anything is written to a store, so a bad file costs
one clear line and nothing else.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from search.errors import SpecError, shorten
from search.space.constraints import Constraint
from search.space.overrides import apply_overrides
from search.space.params import Count, Param, Strict
from search.space.trainable_checks import check_against_trainable, resolve_trainable, with_absolute_paths
from search.space.yaml_file import read_yaml
from trainables import registry

SPACES_DIR = Path(__file__).resolve().parents[2] / "spaces"
# The one list of samplers: each name with the Optuna class it builds (samplers.sampler_class); grid is
# that class under ask/tell, ofat enqueues its points for a random sampler.
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "ofat": "RandomSampler",
}
# pareto is hpsearch's own (search/space/pareto.py): it prunes on a front, where Optuna's prune on one value.
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "threshold", "patient", "pareto")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
Mode = Literal["min", "max"]


class SamplerSpec(BaseModel):
    """``name`` and ``seed``; every other key is passed to the Optuna sampler and checked against it."""

    model_config = ConfigDict(extra="allow")
    name: Literal[tuple(SAMPLERS)] = "tpe"  # type: ignore[valid-type]
    seed: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PrunerSpec(BaseModel):
    """``name``; every other key is passed to the Optuna pruner and checked against it."""

    model_config = ConfigDict(extra="allow")
    name: Literal[PRUNERS] = "none"  # type: ignore[valid-type]

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``90s``, ``20m``, ``1.5h``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh])\s*", str(value))
        if not m:
            raise ValueError(f"cannot parse {shorten(value)} as a duration (a number with s, m or h: 90s, 20m, 1h)")
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive and finite (got {shorten(value)})")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Budget(Strict):
    """``sweep``: the whole sweep stops at this time. ``trial``: each trial trains until this time is up.
    ``startup``: under a trial budget, how long a trial may take to make its first report (worker start,
    imports, data loading) before the driver starts its clock anyway: a trial that never reports is stopped
    at ``startup + trial`` (and a few seconds' grace)."""

    sweep: Duration | None = None
    trial: Duration | None = None
    startup: Duration = Field(60.0, gt=0)  # trial_budget.BudgetWatch.STARTUP_ALLOWANCE_S


class SchedulerSpec(BaseModel):
    """``fifo`` (trials run to the end unless the Optuna pruner stops them) or Ray's ``asha``."""

    model_config = ConfigDict(extra="allow")
    name: Literal["fifo", "asha"] = "fifo"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Resources(Strict):
    cpu: float = Field(1, gt=0, le=1024, allow_inf_nan=False)
    gpu: float = Field(0, ge=0, le=64, allow_inf_nan=False)
    # Ray custom resources a trial needs, e.g. {a100: 1} on a cluster whose nodes declare them.
    custom: dict[str, float] = Field(default_factory=dict)

    def ray(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu, **self.custom}

    @model_validator(mode="after")
    def _whole_or_fraction(self) -> "Resources":
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number (got {self.gpu})")
        for key in self.custom:
            if key.lower() in ("cpu", "gpu", "memory", "object_store_memory"):
                raise ValueError(f"custom.{key}: Ray's own resource; set it as resources.{key.lower()}")
        return self


class Cluster(Strict):
    """Where a sweep runs and writes when one machine is not enough (docs/scale-out.md). The flags
    --address, --storage, --tracking-uri, --storage-path and their environment variables win over these."""

    address: str | None = None  # Ray: host:port of the head, or ray://host:10001
    storage: str | None = None  # Optuna RDB URL, e.g. postgresql://user@db/hpsearch
    tracking_uri: str | None = None  # MLflow tracking server, e.g. http://mlflow:5000
    storage_path: str | None = None  # Ray Tune results and checkpoints: a shared path or s3://...


# Upper bounds that no real sweep reaches and that keep a typo (1e21 trials, 1e9 at once) from flooding a machine.
MAX_TRIALS = 100_000
MAX_CONCURRENCY = 1_000
MAX_REPEATS = 100
MAX_GRID = 100_000  # configurations a grid or ofat sweep may enumerate
MAX_FUSE = 1_024  # members of one fused group


class SweepSpec(Strict):
    # a file and directory name in the store and in Ray: letters, digits, . _ -, at most 100 characters
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    trainable: str
    description: str = ""
    # One metric, or a list of them for a trade-off (a multi-objective sweep) with one mode each.
    metric: str | list[str] | None = None
    mode: Mode | list[Mode] | None = None
    constraints: list[str] = []  # "METRIC <= NUMBER" / ">=": feasible when all hold on the final values
    # A trial's value: its best step's metric (one objective's default) or its last report's (a trade-off's
    # rule); the checkpoint a trial keeps is the one of that step.
    value: Literal["best", "last"] | None = None
    config: dict[str, Any] = {}
    space: dict[str, Param] = {}
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    trials: Count | None = Field(None, ge=1, le=MAX_TRIALS)
    concurrency: Count = Field(1, ge=1, le=MAX_CONCURRENCY)
    repeats: Count = Field(1, ge=1, le=MAX_REPEATS)  # seeds per configuration; the study's value is their mean
    resources: Resources = Resources()
    cluster: Cluster = Cluster()
    scheduler: SchedulerSpec = SchedulerSpec()
    budget: Budget = Budget()
    report: Literal["epoch", "time"] | None = None  # default: time when a trial budget is set
    report_interval: Duration | None = None  # under report: time; default trial budget / 20, at least 1s
    # Fused trials: up to this many configurations that differ only in fusible hyperparameters (lr, ...)
    # train together as one stacked model in one Ray trial, each still its own Optuna trial and MLflow run.
    fuse: Count = Field(1, ge=1, le=MAX_FUSE)
    # A set-up that is broken (a misspelled key, a missing data folder) fails every trial alike: when the first
    # this many trials all raised the same error and none completed, the sweep stops. 0: never.
    fail_fast: Count = Field(3, ge=0, le=MAX_TRIALS)
    # The trainable ``validate`` resolved (looked up once); not part of the space, never dumped.
    _resolved: registry.TrainableSpec | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        if not self.space:
            raise ValueError("space is empty: name at least one hyperparameter to search")
        both = [k for k in self.config if k in self.space]
        if both and self.sampler.name != "ofat":
            raise ValueError(
                f"config.{both[0]}: also searched in space.{both[0]}, so the fixed value would be ignored: keep one "
                "(only an ofat sweep starts from a config value)"
            )
        self._check_objectives()
        if self.scheduler.name == "asha" and self.pruner.name != "none":
            raise ValueError(
                f"scheduler asha and pruner {self.pruner.name} both stop trials: choose one (pruner: {{name: none}})"
            )
        if self.repeats > 1 and (self.pruner.name != "none" or self.scheduler.name == "asha"):
            raise ValueError("repeats cannot be combined with pruning: a configuration is judged on all its seeds")
        if self.fuse > 1:
            if self.repeats > 1:
                raise ValueError(
                    "fuse: repeats run each seed as a trial of its own; fuse the seeds instead (seed in space)"
                )
            if self.scheduler.name == "asha":
                raise ValueError("fuse: ASHA stops whole Ray trials; fused members are pruned by pruner: (median, ...)")
            if self.reports_by_time:
                raise ValueError("fuse: a fused group reports by epoch (report: epoch, no trial budget)")
        return self

    def _check_objectives(self) -> None:
        metrics = self.metric if isinstance(self.metric, list) else None
        if metrics is not None:
            if not metrics:
                raise ValueError("metric: the list is empty: name one metric, or several for a trade-off")
            if len(set(metrics)) < len(metrics):
                raise ValueError(f"metric: {shorten(metrics)} names a metric twice")
            if not isinstance(self.mode, list) or len(self.mode) != len(metrics):
                got = "none" if self.mode is None else shorten(self.mode)
                raise ValueError(f"mode: give one direction per metric, {len(metrics)} in all (got {got})")
        elif isinstance(self.mode, list):
            raise ValueError(f"mode: a list of directions needs a list of metrics (metric: {shorten(self.metric)})")
        for i, text in enumerate(self.constraints):
            try:
                Constraint.parse(text)
            except ValueError as e:
                raise ValueError(f"constraints.{i}: {e}") from None
        if not self.multi_objective:
            return
        if self.value == "best":
            raise ValueError(
                "value: best takes the best step of one metric; a trade-off's values are its last report's "
                "(value: last, or leave it out)"
            )
        if self.sampler.name in SINGLE_OBJECTIVE_SAMPLERS:
            raise ValueError(
                f"sampler.name: the {self.sampler.name} sampler optimizes one objective; for {len(metrics)} use "
                + ", ".join(s for s in SAMPLERS if s not in SINGLE_OBJECTIVE_SAMPLERS)
            )
        if self.scheduler.name == "asha":
            raise ValueError(
                "scheduler.name: ASHA ranks trials on one metric; a trade-off sweep prunes with pruner: {name: pareto}"
            )
        if self.pruner.name not in ("none", "pareto"):
            raise ValueError(
                f"pruner.name: the {self.pruner.name} pruner judges one value; a trade-off sweep "
                f"({len(metrics)} metrics) prunes with pruner: {{name: pareto}} (or none)"
            )

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, list) and len(self.metric) > 1

    @property
    def value_rule(self) -> str:
        """best | last: which step's metric is a trial's value (and whose checkpoint it keeps)."""
        return "last" if self.multi_objective else (self.value or "best")

    @property
    def constraint_list(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.constraints]

    @property
    def resolved(self) -> registry.TrainableSpec:
        """The trainable as ``validate`` resolved it; a spec built without ``validate`` resolves it here."""
        if self._resolved is None:
            self._resolved = registry.get(self.trainable)
        return self._resolved

    @property
    def reports_by_time(self) -> bool:
        return self.report == "time" or (self.report is None and self.budget.trial is not None)

    @property
    def report_interval_s(self) -> float | None:
        if not self.reports_by_time:
            return None
        if self.report_interval is not None:
            return self.report_interval
        return max(1.0, self.budget.trial / 20) if self.budget.trial else 10.0


def resolve_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of one under spaces/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError("no such space file", str(path))
        return path
    for base in (Path.cwd() / "spaces", SPACES_DIR):
        for suffix in (".yaml", ".yml"):
            if (candidate := base / f"{name_or_path}{suffix}").is_file():
                return candidate
    known = ", ".join(space_names()) or "none"
    raise SpecError(f"no space file named {name_or_path!r} under spaces/ (known: {known})", name_or_path)


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load(name_or_path: str, overrides: list[tuple[str, Any]] = ()) -> tuple[SweepSpec, Path]:
    """Read, override, validate. Raises SpecError with a one-line message on any problem."""
    path = resolve_path(name_or_path)
    source = str(path)
    raw = read_yaml(path, source)
    if not isinstance(raw, dict):
        raise SpecError(f"expected a mapping of keys at the top, got {type(raw).__name__}", source)
    raw = apply_overrides(raw, list(overrides))
    if isinstance(raw.get("trainable"), str) and registry.is_reference(raw["trainable"]):
        raw["trainable"] = resolve_reference(raw["trainable"], path.parent, source)
    return validate(raw, source), path


def resolve_reference(ref: str, space_dir: Path, source: str = "") -> str:
    """``./train.py:fn`` relative to the space file's folder, else to the working directory, made absolute
    (Ray runs trials elsewhere); for ``module:fn`` both folders go on the import path."""
    try:
        target, attr = registry.split_reference(ref)
    except registry.TrainableError as e:
        raise SpecError(str(e), source, "trainable") from None
    if not target.endswith(".py"):
        for folder in (Path.cwd(), space_dir):
            registry.add_import_dir(folder)
        return ref
    path = Path(target).expanduser()
    candidates = [path] if path.is_absolute() else [space_dir / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return f"{candidate.resolve()}:{attr}"
    looked = " or ".join(dict.fromkeys(str(c.resolve().parent) for c in candidates))  # one folder once
    raise SpecError(f"no such file {target!r} (looked in {looked})", source, "trainable")


def validate(raw: dict[str, Any], source: str) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        message, key = _first_error(e)
        raise SpecError(message, source, key) from None
    trainable = spec._resolved = resolve_trainable(spec, source)
    check_against_trainable(spec, trainable, source)
    return with_absolute_paths(spec, trainable)


def _first_error(e: ValidationError) -> tuple[str, str]:
    # A misspelled key usually explains the "missing" error beside it, so it is reported first.
    err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
    loc = [str(p) for p in err["loc"]]
    if len(loc) >= 3 and loc[0] == "space" and loc[2] in ("float", "int", "categorical"):
        del loc[2]  # the union tag pydantic puts in the path
    if loc and loc[0] in ("metric", "mode"):  # one name or a list: drop the union's tags, keep list indices
        loc = [loc[0], *(p for p in loc[1:] if p.isdigit())]
    msg = err["msg"].removeprefix("Value error, ")
    named = re.match(r"([a-z_]+)((?:\.\w+)*): ", msg)
    if not loc and named and named.group(1) in SweepSpec.model_fields:  # a check across keys names its key
        loc, msg = named.group(0)[:-2].split("."), msg[named.end() :]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "union_tag_invalid":
        msg = f"type must be one of float, int, categorical (got {err['input'].get('type')!r})"
        loc.append("type")
    elif err["type"] == "literal_error" and loc and loc[-1] == "name":
        msg = f"{msg} (got {shorten(err['input'])})"
    elif err["type"] not in ("value_error", "missing") and "input" in err:
        msg = f"{msg} (got {shorten(err['input'])})"
    return msg, ".".join(loc) or "(top)"
