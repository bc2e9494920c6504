"""``hpsearch compare``: trials (or, with repeats, configurations) of one or more sweeps in one table.

Values come from the study (the mean over seeds for a repeated configuration, with each seed's value, its 95%
confidence interval and whether Welch's t-test tells it apart from its sweep's best: search/readback/seed_stats.py);
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

import optuna
from optuna.trial import TrialState

from search.errors import SpecError
from search.names import REPEAT_VALUES_ATTR, RUN_ID_ATTR, VALUE_STD_ATTR
from search.readback import run_metrics
from search.readback.seed_stats import distinct, half_width, welch_p
from search.readback.sweeps import load_study, objective_names, require_sweeps
from search.space.constraints import all_hold
from search.stores.store import Store

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
    names: list[str] | None = None  # its sweep's metric names, in the order of ``values``


def collect(store: Store, names: list[str]) -> tuple[list[Row], list[str], list[str]]:
    """Rows of every named sweep, best first (a trade-off's front first); also the metric names (of every
    sweep: sweeps that measure different metrics get a column each, never one another's) and the
    directions of the first sweep."""
    storage = require_sweeps(store, names)
    rows: list[Row] = []
    runs: list[list[str]] = []  # each row's runs, in the order of rows (with repeats, one per seed)
    metrics, directions = [], ["maximize"]
    order = {name: i for i, name in enumerate(names)}
    signs: dict[str, int] = {}  # each sweep's first direction: -1 ranks larger values first
    for i, name in enumerate(names):
        study = load_study(store, name, storage)
        multi = len(study.directions) > 1
        own = objective_names(study)
        signs[name] = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        if i == 0:
            directions = [d.name.lower() for d in study.directions]
        metrics += [m for m in own if m not in metrics]
        on_front = {t.number for t in study.best_trials} if multi else set()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            seeds = [v for v in t.user_attrs.get(REPEAT_VALUES_ATTR, []) if v is not None and not multi]
            std = t.user_attrs.get(VALUE_STD_ATTR) if seeds else None
            run_ids = [v for k, v in t.user_attrs.items() if k.startswith(RUN_ID_ATTR)]
            value = t.values[0] if t.values else None
            row = Row(name, t.number, t.state.name, value, std, seeds, dict(t.params))
            runs.append(run_ids)
            row.values = list(t.values) if t.values else None
            row.names = own
            row.front = (t.number in on_front) if multi else None
            row.feasible = all_hold(t.constraints) if t.constraints else None
            rows.append(row)
    figures = run_metrics.latest(store, [r for ids in runs for r in ids], EXTRA_METRICS)
    for row, run_ids in zip(rows, runs):
        row.extra = _extra([figures.get(run_id, {}) for run_id in run_ids])
    return ranked(rows, signs, order), metrics, directions


def ranked(rows: list[Row], signs: dict[str, int], order: dict[str, int]) -> list[Row]:
    """Best first, each sweep by its own direction (``signs``: -1 where larger is better): sweeps on one metric
    in one ranking; sweeps on different metrics, which cannot be ranked together, each apart (in ``order``).
    A trade-off's front first, infeasible trials after feasible ones, trials without a value last."""
    shared = len({tuple(r.names or ()) for r in rows}) <= 1
    return sorted(
        rows,
        key=lambda r: (
            0 if shared else order[r.sweep],
            not r.front,
            r.feasible is False,
            r.value is None,
            signs[r.sweep] * (r.value or 0.0),
        ),
    )


Group = tuple[str, int, int, float | None, float | None]  # value, trials, complete, best, mean


def group_by(rows: list[Row], param: str) -> tuple[list[Row], list[Group]]:
    """The rows grouped by their value of ``param`` (a branch: ``--by model``), the groups in the order of
    their best row and each best first; and per group: its value, how many trials it has, how many of them
    completed, and the best and mean value of the first metric over those complete ones (each count says
    what it counts: a mean is never shown beside a count of other trials). A trial that does not set
    ``param`` is in the group ``-``."""
    if not any(param in r.params for r in rows):
        known = ", ".join(sorted({p for r in rows for p in r.params})) or "none"
        raise SpecError(f"no trial sets {param!r} (the trials' parameters: {known})", "--by")
    groups: dict[str, list[Row]] = {}
    for r in rows:  # rows come best first: a group's first row is its best
        groups.setdefault(_pretty(r.params[param]) if param in r.params else "-", []).append(r)
    summary = []
    for value, members in groups.items():
        done = [r.value for r in members if r.state == "COMPLETE" and r.value is not None]
        best, mean = (done[0], statistics.fmean(done)) if done else (None, None)
        summary.append((value, len(members), len(done), best, mean))
    return [r for members in groups.values() for r in members], summary


def _extra(each_run: list[dict[str, float]]) -> dict[str, float]:
    """Mean over the configuration's runs of the figures a trainable reports at the end."""
    values: dict[str, list[float]] = {}
    for metrics in each_run:
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
    header += [*(["± std", "± 95% CI", "p vs best", "distinct", "n", "seeds"] if repeated else []), *params, *extras]
    # each sweep's best configuration (rows come best first) is what its others are tested against
    best_seeds: dict[str, list[float]] = {}
    for r in rows:
        if r.seeds and r.state == "COMPLETE":
            best_seeds.setdefault(r.sweep, r.seeds)
    body = []
    for r in rows:
        own = dict(zip(r.names or metrics, r.values or []))  # a column holds only its own metric's values
        values = [own.get(m) for m in metrics]
        cells = [r.sweep, str(r.trial), r.state, *[_fmt(v) for v in values]]
        cells += [{True: "yes", False: "no", None: "-"}[getattr(r, m)] for m in marks]
        if repeated:
            best = best_seeds.get(r.sweep)
            p = None if best is None or r.seeds is best else welch_p(r.seeds, best)
            mark = "best" if best is not None and r.seeds is best else distinct(p)
            cells += [_fmt(r.std), _fmt(half_width(r.seeds)), _fmt(p), mark]
            cells += [str(len(r.seeds) or 1), " ".join(_fmt(v) for v in r.seeds)]
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
