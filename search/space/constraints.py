"""Constraints of a space file: ``"param_count <= 200000"``, ``"seconds_per_epoch <= 1.5"``.

A trial is feasible when every constraint holds on its final values (what its last report said of each
metric; with repeats, the mean over its seeds). Each constraint is handed to Optuna as a violation
amount (``Trial.set_constraint``: feasible at zero or below), so the samplers that use constraints
steer away from infeasible regions, ``study.best_trials`` keeps feasible trials only, and the plots draw
infeasible trials apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

_FORM = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


@dataclass(frozen=True)
class Constraint:
    text: str  # as the space file wrote it: the key it is recorded under
    metric: str
    op: str  # "<=" or ">="
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        m = _FORM.fullmatch(text)
        if m is None:
            hint = " (use <= or >=)" if re.search(r"[<>=!]", text) and not re.search(r"<=|>=", text) else ""
            raise ValueError(f"cannot read constraint {text!r}: write METRIC <= NUMBER or METRIC >= NUMBER{hint}")
        bound = float(m.group(3))
        if not math.isfinite(bound):
            raise ValueError(f"constraint {text!r}: the bound must be a finite number")
        return cls(text.strip(), m.group(1), m.group(2), bound)

    def violation(self, value: float) -> float:
        """How far ``value`` is past the bound; zero or below when the constraint holds."""
        return value - self.bound if self.op == "<=" else self.bound - value


def all_hold(amounts: Mapping[str, float]) -> bool:
    """Feasible: every constraint's violation is zero or below (no constraint at all: feasible)."""
    return all(v <= 0 for v in amounts.values())


def violations(constraints: list[Constraint], values: Mapping[str, float]) -> dict[str, float]:
    """Each constraint's violation on a trial's final values; a missing or non-finite metric raises KeyError
    naming it, since a trial whose feasibility cannot be told must not count as feasible."""
    out = {}
    for c in constraints:
        value = values.get(c.metric)
        if value is None or not math.isfinite(value):
            raise KeyError(c.metric)
        out[c.text] = c.violation(value)
    return out
