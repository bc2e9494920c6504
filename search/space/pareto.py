"""Trade-offs: Pareto fronts, and pruning on them.

Optuna cannot prune a multi-objective study (``Trial.should_prune`` raises for one), and Ray Tune's
schedulers rank one metric. ``ParetoPruner`` does for a vector of objectives what Optuna's median pruner
does for one value, the way MOASHA (Syne Tune) ranks its rungs: at each step a trial reports, its vector
is sorted with the vectors the other trials reported at that same step into non-dominated fronts, and
the trial is pruned when the trials in better fronts already fill the fraction kept. A trial on the
first front (dominated by no trial at that step) is never pruned.

Vectors here are to be minimised (``signed`` turns a maximised objective round), so "better" is
"dominates". The driver owns the pruner: it records every step and asks it, and only the driver writes
the study; the vectors a continued study already holds are read back with ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

Vector = tuple[float, ...]
INTERMEDIATE_ATTR = "intermediate"  # user attribute "intermediate.<step>": a multi-objective trial's vector


def signed(values: Sequence[float], modes: Sequence[str]) -> Vector:
    """The vector to minimise: a maximised objective's sign flipped."""
    return tuple(-float(v) if m == "max" else float(v) for v, m in zip(values, modes))


def dominates(a: Vector, b: Vector) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (both minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def fronts(vectors: Sequence[Vector]) -> list[list[int]]:
    """Non-dominated sorting: indices of ``vectors`` by front, the first front dominated by none.

    Equal vectors share a front. O(n^2) comparisons, which is nothing next to a trial's step.
    """
    n = len(vectors)
    beaten_by = [0] * n  # how many vectors dominate i
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(vectors[i], vectors[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(vectors[j], vectors[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out: list[list[int]] = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        following = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def front_of(vectors: dict[int, Vector]) -> list[int]:
    """The keys of the non-dominated vectors (the first front), in key order."""
    keys = sorted(vectors)
    return sorted(keys[i] for i in (fronts([vectors[k] for k in keys]) or [[]])[0])


class ParetoPruner:
    """Prunes a trial whose vector at a step lies in the worst fronts of the vectors reported at that step.

    Args:
        n_startup_trials: no pruning until this many trials of the study have completed.
        n_warmup_steps: no pruning at steps below this (a trial's first epochs say little).
        interval_steps: judge every this many steps after the warm-up (1: every step).
        n_min_trials: no pruning at a step that fewer than this many other trials have reported.
        keep: the fraction of the trials at a step that is kept: a trial is pruned when the trials in
            strictly better fronts number at least ``ceil(keep * n)`` of the ``n`` at that step.
    """

    def __init__(
        self,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        n_min_trials: int = 1,
        keep: float = 0.5,
    ) -> None:
        for name, value, low in (
            ("n_startup_trials", n_startup_trials, 0),
            ("n_warmup_steps", n_warmup_steps, 0),
            ("interval_steps", interval_steps, 1),
            ("n_min_trials", n_min_trials, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low} (got {value!r})")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ValueError(f"keep must be a fraction in (0, 1] (got {keep!r})")
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.interval_steps = interval_steps
        self.n_min_trials = n_min_trials
        self.keep = float(keep)
        self._at_step: dict[int, dict[int, Vector]] = {}  # step -> trial number -> signed vector
        self._complete: set[int] = set()

    def record(self, number: int, step: int, vector: Vector) -> None:
        """A trial's (signed) vector at a step; a finite one only."""
        if all(math.isfinite(v) for v in vector):
            self._at_step.setdefault(step, {})[number] = vector

    def completed(self, number: int) -> None:
        self._complete.add(number)

    def seed(self, history: Iterable[tuple[int, bool, dict[int, Vector]]]) -> None:
        """What a continued study already holds: (trial number, completed, its signed vector by step)."""
        for number, complete, steps in history:
            for step, vector in steps.items():
                self.record(number, step, vector)
            if complete:
                self.completed(number)

    def should_prune(self, number: int, step: int) -> bool:
        if len(self._complete) < self.n_startup_trials or step < self.n_warmup_steps:
            return False
        if (step - self.n_warmup_steps) % self.interval_steps:
            return False
        at_step = self._at_step.get(step, {})
        if number not in at_step or len(at_step) - 1 < self.n_min_trials:
            return False
        numbers = sorted(at_step)
        better = 0
        for front in fronts([at_step[n] for n in numbers]):
            if any(numbers[i] == number for i in front):
                return better >= math.ceil(self.keep * len(numbers))
            better += len(front)
        return False


def history(trials: Iterable[Any], modes: Sequence[str], multi: bool) -> list[tuple[int, bool, dict[int, Vector]]]:
    """The signed vectors a continued study's ended trials (Optuna's frozen trials) reported at each step,
    for ``ParetoPruner.seed``: a trade-off's from its ``intermediate.<step>`` attributes, else the
    intermediate values."""
    out = []
    for t in trials:
        if t.state.name == "RUNNING":
            continue
        if multi:
            steps = {
                int(k.rpartition(".")[2]): signed(v, modes)
                for k, v in t.user_attrs.items()
                if k.startswith(INTERMEDIATE_ATTR + ".") and isinstance(v, list) and len(v) == len(modes)
            }
        else:
            steps = {step: signed([v], modes) for step, v in t.intermediate_values.items()}
        out.append((t.number, t.state.name == "COMPLETE", steps))
    return out
