"""What a sweep's ``OptunaBridge`` asks, judges and tells by, as one object built whole: by
``runner.bridge_settings`` from the sweep's plan, or field by field in a test. The bridge reads it, and
nothing configures the bridge after it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from optuna.distributions import BaseDistribution

from search.space.constraints import Constraint
from search.space.params import Param


@dataclass(frozen=True)
class BridgeSettings:
    distributions: dict[str, BaseDistribution]  # the searched parameters, as Optuna samples them
    metrics: list[str]  # one per objective (a trade-off has several), each with its mode
    modes: list[str]
    n_trials: int  # configurations to ask (each runs ``repeats`` seeds)
    fixed_config: dict[str, Any] = field(default_factory=dict)  # the space file's config: every trial gets it
    repeats: int = 1
    constraints: list[Constraint] = field(default_factory=list)
    value_rule: str | None = None  # best | last (a trade-off's is always last); None: best
    space: dict[str, Param] | None = None  # a conditional space: a trial sets only its active parameters
    fail_fast: int = 0  # stop once this many first configurations all raised the same error (0: never)
    # Fused trials: up to ``fuse`` configurations train as one Ray trial when ``fuse_key`` gives them the same
    # key; asked in rounds of ``round_size`` configurations, ``concurrency`` groups at a time.
    fuse: int = 1
    fuse_key: Callable[[dict[str, Any]], Any] | None = None
    round_size: int | None = None
    concurrency: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str) or isinstance(self.modes, str):
            raise TypeError("metrics and modes are lists: one entry per objective")
        if len(self.metrics) != len(self.modes):
            raise ValueError(f"{len(self.metrics)} metrics and {len(self.modes)} modes: one mode per metric")
        if self.value_rule not in (None, "best", "last"):
            raise ValueError(f"value_rule is best or last (got {self.value_rule!r})")

