"""What defines a search, so that one sweep name means one search.

A study that goes on under the same name (``hpsearch run`` again) must be the same search: the same
trainable, fixed config, searched space, metrics and modes, value rule, constraints, seeds per
configuration and trial budget. Those decide what a trial's value means; the trial count, concurrency,
sampler, pruner, resources and where it runs do not. The study keeps its definition as the user attribute
``definition``; a run whose definition differs is refused with each difference named (``config.epochs:
3 -> 1``), unless ``--new`` (archive, start afresh) or ``--accept-change`` (go on in this study: the
change is appended to the study's ``definition_changes``, and each trial from then on carries
``definition_version``, the number of changes made before it was asked).

Optuna's ``load_if_exists`` and Ray's restore would mix the two searches silently.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

DEFINITION_ATTR = "definition"
CHANGES_ATTR = "definition_changes"
VERSION_ATTR = "definition_version"


def definition(space: dict[str, Any], metrics: list[str], modes: list[str]) -> dict[str, Any]:
    """The defining part of a space as recorded (``SweepSpec.model_dump(mode="json")``), with its metrics and
    modes resolved (a file may leave them to the trainable)."""
    multi = len(metrics) > 1
    budget = space.get("budget") or {}
    return {
        "trainable": space.get("trainable"),
        "config": space.get("config") or {},
        "space": space.get("space") or {},
        "metric": list(metrics),
        "mode": list(modes),
        "value": "last" if multi else (space.get("value") or "best"),
        "constraints": list(space.get("constraints") or []),
        "repeats": space.get("repeats") or 1,
        "trial_budget": budget.get("trial"),
    }


def recorded(user_attrs: dict[str, Any], metric_names: list[str] | None, modes: list[str]) -> dict[str, Any] | None:
    """A study's definition: as recorded, or for a study from before definitions were kept, rebuilt from the
    space it recorded; None for a study hpsearch never ran (nothing to compare with)."""
    if isinstance(user_attrs.get(DEFINITION_ATTR), dict):
        return user_attrs[DEFINITION_ATTR]
    space = user_attrs.get("space")
    if not isinstance(space, dict):
        return None
    metric = space.get("metric")
    metrics = metric_names or (metric if isinstance(metric, list) else [metric])
    return definition(space, list(metrics), modes)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Each key whose value differs, dotted (``space.lr.high: 0.1 -> 0.5``); a key one side lacks shows as
    ``(none)``."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {_shown(a.get(k))} -> {_shown(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def change_record(changes: list[str], trials_before: int) -> dict[str, Any]:
    return {"at": datetime.now().isoformat(timespec="seconds"), "changes": changes, "trials_before": trials_before}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):  # an empty one adds no key: `config: {}` is no config
            out |= _flat(v, f"{key}.")
        else:
            out[key] = _normal(v)
    return out


def _normal(v: Any) -> Any:
    """One form for equal values: 1 and 1.0, a tuple and a list, compare equal as JSON sees them."""
    return json.loads(json.dumps(v))


def _shown(v: Any) -> str:
    if v is None:
        return "(none)"
    return json.dumps(v) if not isinstance(v, str) else v
