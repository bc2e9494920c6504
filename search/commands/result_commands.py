"""Read-only commands on what sweeps left: the sweeps in a store, a comparison, a report, the best
configuration, its model exported. They import ``readback/`` and what it needs, nothing of Ray."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table

from search.commands.app import (
    StorageOpt,
    StoreOpt,
    TrackingOpt,
    app,
    err,
    open_store,
    out,
)
from search.errors import SpecError


@app.command()
def sweeps(store: str = StoreOpt, storage: Optional[str] = StorageOpt) -> None:
    """Every sweep in the store: trials by state, best value, when it last ran."""
    from search.readback.shown import fmt
    from search.readback.sweeps import list_sweeps

    s = open_store(store, storage)
    rows = list_sweeps(s)
    table = Table(title=f"sweeps in {s.shown_storage if s.storage else s.root}")
    for col in ("sweep", "done", "pruned", "failed", "running", "best", "last ran"):
        table.add_column(col, justify="left" if col == "sweep" else "right", overflow="fold")
    for r in rows:
        c = r.counts
        best = f"{fmt(r.best)} ({'max' if r.direction == 'maximize' else 'min'})" if r.best is not None else "-"
        if r.front is not None:
            best = f"front of {r.front}"
        table.add_row(
            r.name, str(c["complete"]), str(c["pruned"]), str(c["fail"]), str(c["running"]),
            best, f"{r.last_ran:%m-%d %H:%M}" if r.last_ran else "-",
        )  # fmt: skip
    out.print(table)


@app.command()
def compare(
    sweep_names: list[str] = typer.Argument(..., metavar="SWEEP...", help="one or more sweep names"),
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    format_: str = typer.Option("table", "--format", help="table | markdown | csv"),
    by: Optional[str] = typer.Option(
        None, "--by", metavar="PARAM", help="group the trials by this parameter's value (a branch: --by model)"
    ),
) -> None:
    """Trials (or configurations with their seeds, mean ± std) of one or more sweeps, best first."""
    from search.readback.compare import collect, columns, group_by, render
    from search.readback.shown import fmt

    if format_ not in ("table", "markdown", "csv"):
        raise SpecError(f"expected table, markdown or csv (got {format_!r})", "--format")
    rows, metrics, directions = collect(open_store(store, storage, tracking_uri), sweep_names)
    groups = []
    if by is not None:
        rows, groups = group_by(rows, by)
    if format_ != "table":
        sys.stdout.write(render(rows, metrics, format_))
        return
    header, body = columns(rows, metrics)
    goal = ", ".join(f"{m} ({d})" for m, d in zip(metrics, directions))
    first = "Pareto front first" if len(metrics) > 1 else "best first"
    table = Table(title=f"{' vs '.join(sweep_names)}: {goal}, {first}")
    for col in header:
        left = col in ("sweep", "state", "seeds", "front", "feasible")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    for row in body:
        table.add_row(*row)
    out.print(table)
    if groups:
        summary = Table(title=f"by {by}: {metrics[0]} of the complete trials")
        for col in (by, "trials", "complete", "best", "mean"):
            summary.add_column(col, justify="left" if col == by else "right")
        for value, n, complete, best_value, mean in groups:
            cells = ("-" if v is None else fmt(v) for v in (best_value, mean))
            summary.add_row(value, str(n), str(complete), *cells)
        out.print(summary)


@app.command()
def report(
    sweep: str = typer.Argument(..., help="a sweep name"),
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
) -> None:
    """Hyperparameter importances and plots (PNG + interactive HTML), logged on the sweep's parent run."""
    from search.readback.report import make_report

    result = make_report(open_store(store, storage, tracking_uri), sweep)
    tables = {f"hyperparameter importances of {sweep} (Optuna, fANOVA)": result.importances}
    # a conditional sweep: each branch's, on its own trials
    tables |= {f"in the trials with {label}": imp for label, imp in result.by_branch.items()}
    for title, importances in tables.items():
        table = Table(title=title)
        table.add_column("hyperparameter")
        table.add_column("importance", justify="right")
        for name, value in importances.items():
            table.add_row(name, f"{value:.3f}")
        out.print(table)
    for path in result.files:
        out.print(f"  {path}", highlight=False, soft_wrap=True)
    if result.parent_run_id:
        out.print(f"logged as artifacts under report/ of MLflow run {result.parent_run_id}", highlight=False)


@app.command()
def best(
    sweep: str = typer.Argument(..., help="a sweep name"),
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    format_: str = typer.Option("yaml", "--format", help="yaml | json"),
    trial: Optional[int] = typer.Option(None, "--trial", help="this trial instead of the best"),
) -> None:
    """The best configuration of a sweep (a trade-off's: its Pareto front), ready for `hpsearch train --from`,
    and where its checkpoint is."""
    from search.readback.results import best as best_of
    from search.readback.results import front, render, render_front

    if format_ not in ("yaml", "json"):
        raise SpecError(f"expected yaml or json (got {format_!r})", "--format")
    s = open_store(store, storage, tracking_uri)
    if trial is None:  # one trial, or a trade-off's whole front
        sys.stdout.write(render_front(front(s, sweep), format_))
        return
    sys.stdout.write(render(best_of(s, sweep, trial), format_))


@app.command()
def export(
    sweep: str = typer.Argument(..., help="a sweep name"),
    folder: str = typer.Argument(..., metavar="DIR", help="where to write the model"),
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    trial: Optional[int] = typer.Option(None, "--trial", help="this trial instead of the best"),
) -> None:
    """Write the best trial's model where it loads without hpsearch: model.pt (+ save_pretrained for text)."""
    from pathlib import Path

    from search.errors import SpecError
    from search.readback.results import best as best_of
    from search.readback.results import export_folder_problem, load_checkpoint, write_model

    if why := export_folder_problem(Path(folder)):
        raise SpecError(f"{folder} {why}: name a folder to write the model into", "DIR")
    s = open_store(store, storage, tracking_uri)
    result = best_of(s, sweep, trial)
    checkpoint = load_checkpoint(s, result)
    about = {
        "sweep": sweep,
        "trial": result.trial,
        "metric": result.metric,
        "value": result.value,
        "value_step": result.value_step,
        # the step whose weights these are, and what they scored there
        "step": result.checkpoint_step,
        "metrics": result.checkpoint_metrics,
    }
    try:
        files = write_model(result.trainable, checkpoint, result.config, Path(folder), about)
    except OSError as e:  # what no check could see beforehand: an immutable folder, a full disk
        raise SpecError(f"{folder}: the model could not be written ({e.strerror or e})", "DIR") from None
    at = f", weights of step {result.checkpoint_step}" if result.checkpoint_step is not None else ""
    out.print(f"trial {result.trial} of {sweep} ({result.metric} = {result.value:.6g}{at}):", highlight=False)
    for path in files:
        out.print(f"  {path}", highlight=False, soft_wrap=True)
    out.print(
        'load it:  torch.load("model.pt")  ->  state_dict, config, trainable, step, metrics',
        highlight=False,
        soft_wrap=True,
    )
    if any(path.suffix == ".ckpt" for path in files):
        out.print('or, with Lightning:  YourModule.load_from_checkpoint("model.ckpt")', highlight=False)
    if result.notice:
        err.print(f"note: {result.notice}", highlight=False, soft_wrap=True)
