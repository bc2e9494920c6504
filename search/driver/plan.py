"""A sweep, planned: the space file validated, its trainable looked up, its sampler, pruner and scheduler
built (the sampler rehearsed when it was given options), and nothing written anywhere. Every refusal of a
bad input happens here, before a store or Ray is touched; ``runner.run`` takes the plan and runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna

from search.driver.tune_glue import PruningScheduler, ReportingASHA, build_scheduler
from search.errors import SpecError
from search.space import samplers
from search.space.loading import load
from search.space.pareto import ParetoPruner
from search.space.spec import SweepSpec, too_many_rounds
from search.space.trainable_checks import objectives
from trainables.registry import TrainableSpec


@dataclass
class Sweep:
    """A validated sweep: everything needed to run it, nothing written anywhere yet."""

    spec: SweepSpec
    source: str
    trainable: TrainableSpec  # resolved once, here; the workers look it up by name in their own process
    metrics: list[str]  # one, or several for a trade-off
    modes: list[str]
    n_trials: int
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    scheduler: PruningScheduler | ReportingASHA  # its bridge is attached when the sweep runs
    front_pruner: ParetoPruner | None = None  # pruner: pareto (the bridge asks it, not the study)
    enqueued: list[dict[str, Any]] = field(default_factory=list)
    # (parameters, trial number): trials a lost or interrupted driver did not finish, run again first (resume)
    reruns: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    # rounds: the configurations asked together per round, fixed by the whole budget (a resumed sweep's
    # remaining trials go on in rounds of the same size)
    round_size: int | None = None

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    @property
    def directions(self) -> list[optuna.study.StudyDirection]:
        d = optuna.study.StudyDirection
        return [d.MAXIMIZE if m == "max" else d.MINIMIZE for m in self.modes]


def prepare(name_or_path: str, overrides: list[tuple[str, Any]] = (), trials: int | None = None) -> Sweep:
    if trials is not None:
        overrides = [*overrides, ("trials", trials)]
    spec, path = load(name_or_path, overrides)
    return prepare_spec(spec, str(path))


def prepare_spec(spec: SweepSpec, source: str) -> Sweep:
    trainable = spec.resolved  # looked up once, when the space was validated
    metrics, modes = objectives(spec, trainable)
    sweep = Sweep(
        spec=spec,
        source=source,
        trainable=trainable,
        metrics=metrics,
        modes=modes,
        n_trials=samplers.trial_count(spec, source),
        sampler=samplers.build_sampler(spec, source),
        pruner=samplers.build_pruner(spec, source),
        scheduler=build_scheduler(spec, source, metrics[0], modes[0]),
        front_pruner=samplers.build_front_pruner(spec, source),
    )
    if why := too_many_rounds(spec.rounds, sweep.n_trials):
        raise SpecError(why, source, "rounds")
    if spec.rounds is not None:
        sweep.round_size = math.ceil(sweep.n_trials / spec.rounds)
    samplers.rehearse(spec, source, modes)
    if spec.sampler.name == "ofat":
        sweep.enqueued = samplers.ofat_points(spec, source)
    if spec.sampler.name == "grid" and spec.conditional:
        sweep.enqueued = samplers.grid_points(spec, source)
    return sweep
