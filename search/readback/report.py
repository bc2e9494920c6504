"""``hpsearch report``: hyperparameter importances and the standard Optuna plots for one sweep.

Each plot is written twice into ``<store>/reports/<sweep>/``: a PNG (matplotlib) and an interactive
HTML (plotly); both are logged as artifacts of the sweep's latest parent run in MLflow. A trade-off sweep
adds its Pareto front (infeasible trials drawn apart), and its other plots and importances are per
objective (Optuna draws one objective at a time); it has no intermediate-value plot, since Optuna keeps
none for such a study (its per-step vectors are the trials' ``intermediate.<step>`` attributes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import optuna
from matplotlib.colors import LogNorm, Normalize
from mlflow.tracking import MlflowClient
from optuna import visualization as vis
from optuna.trial import TrialState
from optuna.visualization import matplotlib as vis_mpl

from search.errors import SweepError
from search.names import REPEAT_VALUES_ATTR
from search.readback.branches import branches, study_of
from search.readback.sweeps import latest_parent_run, load_study, objective_names, require_sweeps
from search.stores.store import Store


@dataclass
class Report:
    importances: dict[str, float]
    files: list[Path]
    parent_run_id: str | None
    by_branch: dict[str, dict[str, float]] = field(default_factory=dict)  # a conditional sweep's, per choice


def _plots(study: optuna.Study, top: list[str]) -> dict[str, tuple[Callable, Callable, dict]]:
    names = objective_names(study)
    if len(study.directions) == 1:
        targets = {"": {}}
    else:  # one plot per objective, named after it
        targets = {f"_{name}": {"target": _objective(i), "target_name": name} for i, name in enumerate(names)}
    plots: dict[str, tuple[Callable, Callable, dict]] = {}
    for suffix, target in targets.items():
        plots[f"optimization_history{suffix}"] = (
            vis.plot_optimization_history, vis_mpl.plot_optimization_history, target
        )  # fmt: skip
        plots[f"slice{suffix}"] = (vis.plot_slice, vis_mpl.plot_slice, target)
        plots[f"parallel_coordinate{suffix}"] = (vis.plot_parallel_coordinate, vis_mpl.plot_parallel_coordinate, target)
        if len(top) >= 2:
            plots[f"contour{suffix}"] = (vis.plot_contour, vis_mpl.plot_contour, {"params": top[:2], **target})
    if len(study.directions) == 1:
        plots["intermediate_values"] = (vis.plot_intermediate_values, partial(curves_by_param, top=top), {})
    else:
        plots["pareto_front"] = (vis.plot_pareto_front, vis_mpl.plot_pareto_front, {"target_names": names})
    return plots


def tidy_ticks(ax) -> None:
    """Slanted, smaller tick labels on each panel: a log-scaled lr's labels (1e-05 ... 1e-01) overlap flat."""
    for panel in getattr(ax, "flat", [ax]):
        for label in panel.get_xticklabels():
            label.set_rotation(40)
            label.set_horizontalalignment("right")
            label.set_fontsize(7)


def curves_by_param(study: optuna.Study, top: list[str]) -> plt.Axes:
    """Each trial's intermediate values, coloured by its value of the most important numeric parameter that
    every trial sets (log-scaled where the space's is), with a colour bar; no legend, which at 30 trials
    squeezes the plot to nothing (Optuna's own has one entry per trial)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    numeric = [p for p in top if all(isinstance(t.params.get(p), (int, float)) for t in trials if p in t.params)]
    everywhere = [p for p in numeric if all(p in t.params for t in trials)]  # a branch's own: too few lines
    param = next(iter(everywhere or [p for p in numeric if any(p in t.params for t in trials)]), None)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = [t.params[param] for t in trials if param in t.params] if param else []
    dist = next((t.distributions[param] for t in trials if param in t.params), None)
    log = bool(values) and min(values) > 0 and getattr(dist, "log", False)  # as the space searched it
    norm = (LogNorm if log else Normalize)(min(values), max(values)) if values else None
    for t in trials:
        steps = sorted(t.intermediate_values)
        colour = plt.cm.viridis(norm(t.params[param])) if norm is not None and param in t.params else "gray"
        style = "--" if t.state == TrialState.PRUNED else "-"
        ax.plot(steps, [t.intermediate_values[s] for s in steps], style, color=colour, alpha=0.8, linewidth=1)
    if norm is not None:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=param)
    ax.set_xlabel("step")
    ax.set_ylabel(objective_names(study)[0])
    ax.set_title(f"{study.study_name}: intermediate values (dashed: pruned)", fontsize=9)
    return ax


def _objective(i: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    def target(trial: optuna.trial.FrozenTrial) -> float:
        return trial.values[i]

    return target


def importances_of(study: optuna.Study) -> dict[str, dict[str, float]]:
    """fANOVA importances per objective: {metric: {parameter: importance}}."""
    names = objective_names(study)
    if len(study.directions) == 1:
        return {names[0]: optuna.importance.get_param_importances(study)}
    return {name: optuna.importance.get_param_importances(study, target=_objective(i)) for i, name in enumerate(names)}


def report_dir(store: Store, name: str) -> Path:
    """``<store>/reports/<name>``; a study name that would lead elsewhere (``../x``, written into the store
    by other tools) is refused before anything is written."""
    return store.path_for("reports", name)


def make_report(store: Store, name: str) -> Report:
    storage = require_sweeps(store, [name])
    out_dir = report_dir(store, name)
    study = load_study(store, name, storage)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        raise SweepError(f"sweep {name!r} has {len(complete)} complete trial(s); a report needs at least 2", name)

    plt.switch_backend("agg")  # files only: no window, no display needed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        per_objective = importances_of(study)
        importances = next(iter(per_objective.values()))  # the first objective's: what the table shows
        out_dir.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        for plot_name, (plotly_fn, mpl_fn, kwargs) in _plots(study, list(importances)).items():
            files += write_plot(study, plotly_fn, mpl_fn, kwargs, out_dir / plot_name)
        files += seed_errorbars(study, out_dir)
        by_branch, branch_files = per_branch(study, out_dir)
        files += branch_files
        files.append(out_dir / "plotly.min.js")
        text = out_dir / "importances.txt"
        if len(per_objective) == 1:
            text.write_text("".join(f"{k}\t{v:.4f}\n" for k, v in importances.items()))
        else:
            text.write_text(
                "".join(f"{metric}\t{k}\t{v:.4f}\n" for metric, imp in per_objective.items() for k, v in imp.items())
            )
        if by_branch:
            with text.open("a") as f:
                f.write("".join(f"{b}\t{k}\t{v:.4f}\n" for b, imp in by_branch.items() for k, v in imp.items()))
        files.append(text)

    client = MlflowClient(store.mlflow_url)
    parent = latest_parent_run(client, name)
    if parent is not None:
        client.log_artifacts(parent.info.run_id, str(out_dir), "report")
        for metric, imp in per_objective.items():
            prefix = "importance." if len(per_objective) == 1 else f"importance.{metric}."
            for k, v in imp.items():
                client.log_metric(parent.info.run_id, f"{prefix}{k}", v)
        for label, imp in by_branch.items():
            for k, v in imp.items():
                client.log_metric(parent.info.run_id, f"importance.{label.replace('=', '.')}.{k}", v)
    return Report(importances, files, parent.info.run_id if parent else None, by_branch)


def per_branch(study: optuna.Study, out_dir: Path) -> tuple[dict[str, dict[str, float]], list[Path]]:
    """A conditional sweep's importances and slice plot per branch (``model=vgg``), over that branch's
    complete trials (at least 3), of the first objective; nothing for a flat sweep."""
    by_branch: dict[str, dict[str, float]] = {}
    files: list[Path] = []
    target = {} if len(study.directions) == 1 else {"target": _objective(0), "target_name": objective_names(study)[0]}
    for branch in branches(study):
        trials = branch.trials(study)
        if len(trials) < 3:
            continue
        sub = study_of(study, trials)
        # the parameters every trial of the branch set, but the choice that defines it (one value here)
        shared = [k for k in trials[0].params if k != branch.parent and all(k in t.params for t in trials)]
        try:
            by_branch[branch.label] = optuna.importance.get_param_importances(
                sub, params=shared, **({"target": target["target"]} if target else {})
            )
        except (ValueError, RuntimeError):  # one value of every parameter: nothing to rank
            continue
        stem = "slice_" + "".join(c if c.isalnum() or c in "-_." else "-" for c in branch.label.replace("=", "-"))
        files += write_plot(sub, vis.plot_slice, vis_mpl.plot_slice, target, out_dir / stem)
    return by_branch, files


def write_plot(study: optuna.Study, plotly_fn: Callable, mpl_fn: Callable, kwargs: dict, stem: Path) -> list[Path]:
    """One plot twice: ``stem.png`` (matplotlib) and ``stem.html`` (plotly, with one local plotly.min.js
    beside the pages, so they show offline where a CDN link would not). A slice plot's labels slanted."""
    html, png = stem.parent / f"{stem.name}.html", stem.parent / f"{stem.name}.png"  # a stem may hold a "."
    plotly_fn(study, **kwargs).write_html(str(html), include_plotlyjs="directory")
    ax = mpl_fn(study, **kwargs)
    if stem.name.startswith("slice"):
        tidy_ticks(ax)
    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [png, html]


def seed_errorbars(study: optuna.Study, out_dir: Path) -> list[Path]:
    """With repeats: each configuration's mean over its seeds with a 95% confidence interval as error bars,
    best first (``seeds.png`` / ``.html``); none for a sweep without repeated seeds."""
    import plotly.graph_objects as go

    from search.readback.seed_stats import half_width

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seeds = [v for v in t.user_attrs.get(REPEAT_VALUES_ATTR, []) if isinstance(v, (int, float))]
        if len(seeds) >= 2 and t.value is not None:
            rows.append((t.number, t.value, half_width(seeds), seeds))
    if not rows:
        return []
    rows.sort(key=lambda r: -r[1] if study.direction == optuna.study.StudyDirection.MAXIMIZE else r[1])
    labels = [f"trial {n}" for n, *_ in rows]
    means, errors = [r[1] for r in rows], [r[2] for r in rows]
    metric = objective_names(study)[0]
    title = f"{study.study_name}: {metric}, mean of the seeds with 95% confidence intervals"
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 4))
    ax.errorbar(range(len(rows)), means, yerr=errors, fmt="o", capsize=4)
    for i, (_, _, _, seeds) in enumerate(rows):
        ax.scatter([i] * len(seeds), seeds, s=8, alpha=0.4, color="gray")
    ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    png, html = out_dir / "seeds.png", out_dir / "seeds.html"
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
    figure = go.Figure(go.Scatter(x=labels, y=means, error_y={"type": "data", "array": errors}, mode="markers"))
    figure.update_layout(title=title, yaxis_title=metric)
    figure.write_html(str(html), include_plotlyjs="directory")
    return [png, html]
