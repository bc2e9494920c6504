"""The space file's schema (pydantic): every key, its type, default and range, and the checks across keys.
Reading a file into it is ``loading.py``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from search.errors import shorten
from search.names import flatten, mlflow_name_problem
from search.space import conditions
from search.space.constraints import Constraint
from search.space.params import Count, Param, Strict
from trainables import registry

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


def too_many_rounds(rounds: int | None, n_trials: int) -> str | None:
    """Why ``rounds`` cannot split ``n_trials`` (a round asks one trial or more), or None."""
    if rounds is not None and rounds > n_trials:
        return f"{rounds} rounds of {n_trials} trials: at most one round per trial"
    return None


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
    # Fused groups asked in rounds: the trials are split into this many rounds, each round's configurations
    # asked together (split into `concurrency` groups) once every trial of the rounds before has ended, so
    # the sampler learns from a round before it asks the next. Unset: a group is asked whenever Ray has room.
    rounds: Count | None = Field(None, ge=1, le=MAX_TRIALS)
    # A set-up that is broken (a misspelled key, a missing data folder) fails every trial alike: when the first
    # this many trials all raised the same error and none completed, the sweep stops. 0: never.
    fail_fast: Count = Field(3, ge=0, le=MAX_TRIALS)
    # The trainable ``validate`` resolved (looked up once); not part of the space, never dumped.
    _resolved: registry.TrainableSpec | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        if not self.space:
            raise ValueError("space is empty: name at least one hyperparameter to search")
        self.space = conditions.flatten(self.space)  # branches beside the rest, each with its `when`
        conditions.check(self.space)
        both = [k for k in self.config if k in self.space]
        if both and self.sampler.name != "ofat":
            raise ValueError(
                f"config.{both[0]}: also searched in space.{both[0]}, so the fixed value would be ignored: keep one "
                "(only an ofat sweep starts from a config value)"
            )
        self._check_objectives()
        self._check_mlflow_names()
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
        elif self.rounds is not None:
            raise ValueError(f"rounds: {self.rounds} rounds of fused groups, but fuse is 1: set fuse: N as well")
        if self.trials is not None and (why := too_many_rounds(self.rounds, self.trials)):
            raise ValueError(f"rounds: {why}")  # a grid's count is known later: plan.prepare_spec checks it
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

    def _check_mlflow_names(self) -> None:
        """Every name that becomes an MLflow key is one MLflow takes: the metrics (a trial's steps), the
        searched parameters and the config's keys (a trial run's parameters), and the space file's keys as the
        parent run records them (dotted: ``config.a.b``). MLflow refuses a whole batch for one bad key: a
        sweep that ran would lose every trial's steps, so it is refused here, before anything runs."""
        metrics = self.metric if isinstance(self.metric, list) else [] if self.metric is None else [self.metric]
        for metric in metrics:
            if why := mlflow_name_problem(metric):
                raise ValueError(f"metric: {shorten(metric)} cannot name a metric: {why}")
        for name in self.space:
            if why := mlflow_name_problem(name):
                raise ValueError(f"space: {shorten(name)} cannot name a parameter: {why}")
        recorded = self.model_dump(mode="json", include={"config", "space"})
        for key in flatten(recorded):
            if why := mlflow_name_problem(key):
                section = key.partition(".")[0]
                raise ValueError(f"{section}: {shorten(key)} cannot name a parameter in MLflow: {why}")

    @property
    def conditional(self) -> bool:
        """Some parameter is set only in some trials (``when:``, or a choice with its own parameters)."""
        return conditions.is_conditional(self.space)

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
