"""``hpsearch compare``: trials (or, with repeats, configurations) of one or more sweeps in one table.

Values come from the study (the mean over seeds for a repeated configuration, with each seed's value);
parameter counts and seconds per epoch from the trials' MLflow runs, where the trainable reported them.
A trade-off sweep has a column per objective and marks each trial on the study's Pareto front; a sweep
with constraints marks each trial feasible or not (an infeasible trial is never best).
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.constraints import all_hold
from search.store import Store
from search.sweeps import load_study, objective_names, require_sweeps

# The seed reports' own figures beside the metric: test accuracy, final training loss, size and speed.
EXTRA_METRICS = ("test_accuracy", "train_loss", "loss", "param_count", "seconds_per_epoch")


@dataclass
class Row:
    sweep: str
    trial: int
    state: str
    value: float | None
    std: float | None
    seeds: list[float]
    params: dict[str, Any]
    extra: dict[str, float] = field(default_factory=dict)
    values: list[float] | None = None  # every objective's value (a trade-off has several)
    front: bool | None = None  # on its study's Pareto front (trade-offs only)
    feasible: bool | None = None  # every constraint holds (sweeps with constraints only)


def collect(store: Store, names: list[str]) -> tuple[list[Row], list[str], list[str]]:
    """Rows of every named sweep, best first (a trade-off's front first); also the metric names and
    directions of the first sweep."""
    require_sweeps(store, names)
    client = MlflowClient(store.mlflow_url)
    rows: list[Row] = []
    metrics, directions = [], ["maximize"]
    for i, name in enumerate(names):
        study = load_study(store, name)
        multi = len(study.directions) > 1
        if i == 0:
            directions = [d.name.lower() for d in study.directions]
            metrics = objective_names(study)
        on_front = {t.number for t in study.best_trials} if multi else set()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            seeds = [v for v in t.user_attrs.get("repeat_values", []) if v is not None and not multi]
            std = t.user_attrs.get("value_std") if seeds else None
            run_ids = [v for k, v in t.user_attrs.items() if k.startswith("mlflow_run_id")]
            value = t.values[0] if t.values else None
            row = Row(name, t.number, t.state.name, value, std, seeds, dict(t.params), _extra(client, run_ids))
            row.values = list(t.values) if t.values else None
            row.front = (t.number in on_front) if multi else None
            row.feasible = all_hold(t.constraints) if t.constraints else None
            rows.append(row)
    sign = -1 if directions[0] == "maximize" else 1
    rows.sort(key=lambda r: (not r.front, r.feasible is False, r.value is None, sign * (r.value or 0.0)))
    return rows, metrics, directions


def _extra(client: MlflowClient, run_ids: list[str]) -> dict[str, float]:
    """Mean over the configuration's runs of the figures a trainable reports at the end."""
    values: dict[str, list[float]] = {}
    for run_id in run_ids:
        metrics = client.get_run(run_id).data.metrics
        for key in EXTRA_METRICS:
            if key in metrics:
                values.setdefault(key, []).append(metrics[key])
    return {k: statistics.fmean(v) for k, v in values.items()}


def columns(rows: list[Row], metrics: list[str], raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and cells; ``raw`` writes numbers as Python prints them (for CSV: no rounding or separators)."""
    _fmt = _raw if raw else _pretty
    params = sorted({p for r in rows for p in r.params})
    extras = [k for k in EXTRA_METRICS if k not in metrics and any(k in r.extra for r in rows)]
    repeated = any(r.seeds for r in rows)
    marks = [m for m in ("front", "feasible") if any(getattr(r, m) is not None for r in rows)]
    header = ["sweep", "trial", "state", *metrics, *marks]
    header += [*(["± std", "n", "seeds"] if repeated else []), *params, *extras]
    body = []
    for r in rows:
        values = ((r.values or []) + [None] * len(metrics))[: len(metrics)]  # none for a trial without values
        cells = [r.sweep, str(r.trial), r.state, *[_fmt(v) for v in values]]
        cells += [{True: "yes", False: "no", None: "-"}[getattr(r, m)] for m in marks]
        if repeated:
            cells += [_fmt(r.std), str(len(r.seeds) or 1), " ".join(_fmt(v) for v in r.seeds)]
        cells += [_fmt(r.params.get(p, "")) for p in params]
        cells += [_fmt(r.extra.get(k)) for k in extras]
        body.append(cells)
    return header, body


def render(rows: list[Row], metrics: list[str], fmt: str) -> str:
    header, body = columns(rows, metrics, raw=fmt == "csv")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"
    raise ValueError(fmt)


def _pretty(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def _raw(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)
