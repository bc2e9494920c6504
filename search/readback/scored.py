"""Whether a trial's kept weights are the ones that scored its value, and the one line that says when not.

A trial's value is one step's metric (its best step, or its last report: ``value: best | last``) and its
checkpoint is the one its session kept (``trainables.session.CheckpointKeeper``). The built-in trainables
offer a checkpoint at every step, so the two are the same step. A plain function that saves only at its
end keeps weights from another step; ``best``, ``export`` and the final table then say so in one line,
never silently. The bridge records both steps on the study trial (of a repeated configuration, of its
first seed, whose run and checkpoint ``best`` takes): user attributes ``value_step``, ``checkpoint_step``
and ``checkpoint_metrics`` (what the kept step reported).
"""

from __future__ import annotations

import math
from typing import Any

from search.names import CHECKPOINT_METRICS_ATTR, CHECKPOINT_STEP_ATTR, REPEAT_VALUES_ATTR, VALUE_STEP_ATTR


def seed_values(trial: Any, names: list[str]) -> list[float] | None:
    """The values of the seed whose weights a trial keeps: the trial's own, or with repeats its first seed's."""
    per_seed = trial.user_attrs.get(REPEAT_VALUES_ATTR)
    if per_seed:
        first = per_seed[0]
        if first is None:
            return None
        return [float(v) for v in (first if isinstance(first, list) else [first])]
    return None if trial.values is None else [float(v) for v in trial.values][: len(names)]


def weights_notice(trial: Any, names: list[str]) -> str | None:
    """One line when the kept checkpoint's step scored other values than the trial's; None when they agree,
    or when the trial kept no checkpoint (or ran before hpsearch recorded its steps)."""
    attrs = trial.user_attrs
    step, scored = attrs.get(CHECKPOINT_STEP_ATTR), attrs.get(CHECKPOINT_METRICS_ATTR)
    values = seed_values(trial, names)
    if step is None or scored is None or values is None:
        return None
    for name, value in zip(names, values):
        at = scored.get(name)
        if at is not None and math.isclose(float(at), value, rel_tol=1e-9, abs_tol=1e-12):
            continue
        shown = "not reported" if at is None else f"{float(at):.4g}"
        return (
            f"weights from step {step}: {name} {shown}; the trial's value {value:.4g} is from step "
            f"{attrs.get(VALUE_STEP_ATTR, '?')} (report a checkpoint at every step, and the one that scored is kept)"
        )
    return None
