"""Commands that run a sweep: ``run`` and ``resume``, ``up`` and ``down`` (a warm Ray for the sweeps to come),
and how a sweep's end becomes an exit code."""

from __future__ import annotations

from contextlib import ExitStack, closing
from typing import Optional

import typer

from search.commands.app import (
    AddressOpt,
    SetOpt,
    StorageOpt,
    StoragePathOpt,
    StoreOpt,
    TrackingOpt,
    app,
    err,
    interrupts_end_in_one_line,
    open_store,
    out,
    serve_until_interrupted,
)

AcceptChangeOpt = typer.Option(
    False,
    "--accept-change",
    help="go on in the existing study although its search was defined otherwise (config, space, metric, ...); "
    "the change is recorded on the study and its later trials",
)


@app.command()
def run(
    space: str = typer.Argument(..., help="a space name under spaces/, or a path to a YAML file"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="number of trials (overrides the file)"),
    set_: Optional[list[str]] = SetOpt,
    store: str = StoreOpt,
    new: bool = typer.Option(False, "--new", help="archive the existing study of this name and start afresh"),
    accept_change: bool = AcceptChangeOpt,
    address: Optional[str] = AddressOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    storage_path: Optional[str] = StoragePathOpt,
    with_dashboard: bool = typer.Option(False, "--dashboard", help="run optuna-dashboard beside the sweep"),
    dashboard_port: int = typer.Option(8080, "--dashboard-port", min=1, max=65535),
    keep_dashboard: bool = typer.Option(False, "--keep-dashboard", help="leave the dashboard up after the sweep"),
) -> None:
    """Run a sweep: Ray Tune runs the trials, Optuna samples them, MLflow records them."""
    server = None
    # Ctrl-C or SIGTERM before the sweep holds them (imports, Ray's start): one line, nothing recorded.
    with interrupts_end_in_one_line("the sweep had not started; nothing was recorded"), ExitStack() as stack:
        from search.space import loading  # the space file first: a bad one costs no engine import
        from search.space.overrides import parse_override

        try:
            overrides = [parse_override(s) for s in set_ or []]
            if trials is not None:
                overrides.append(("trials", trials))
            spec, path = loading.load(space, overrides)
            # The sweep's MLflow writer, a process of its own, imports MLflow while this one imports the engine
            # (Ray, Optuna) and starts Ray: once the file is known to be good.
            from search.stores.mlflow_writer import MlflowWriter

            writer = stack.enter_context(closing(MlflowWriter()))
            from search.commands.servers import check_port_free, start_dashboard
            from search.driver import plan, runner, study_setup
            from search.stores.store import Store

            sweep = plan.prepare_spec(spec, str(path))
            c = sweep.spec.cluster  # flags and environment first, then the space file
            s = Store.at(store, storage or c.storage, tracking_uri or c.tracking_uri, storage_path or c.storage_path)
            address = address or c.address
            if with_dashboard:
                check_port_free("127.0.0.1", dashboard_port)
                study_setup.create_store(sweep, s, new, address, accept_change)
                server = start_dashboard(s.optuna_url, "127.0.0.1", dashboard_port)
                err.print(f"optuna-dashboard on {server.url}", highlight=False)
            outcome = runner.run(
                sweep,
                s,
                new=new,
                address=address,
                console=err,
                accept_change=accept_change,
                checked=with_dashboard,
                writer=writer,
            )
        except BaseException:
            if server:
                server.stop()  # no sweep ran, or it broke: its dashboard does not stay up
            raise
    if server and keep_dashboard:
        serve_until_interrupted(server)
    elif server:
        server.stop()
    if outcome.stopped_by_budget:
        err.print(
            f"sweep budget reached after {outcome.wall_s:.0f}s; trials still running were stopped", highlight=False
        )
    ended(outcome)


@app.command()
def resume(
    sweep: str = typer.Argument(..., help="a sweep name"),
    store: str = StoreOpt,
    address: Optional[str] = AddressOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    storage_path: Optional[str] = StoragePathOpt,
) -> None:
    """Finish a sweep whose driver died: reconcile the study and MLflow, re-run what was running, go on."""
    with interrupts_end_in_one_line(f"the resume had not started; {sweep} is as it was"):
        from search.driver.resume import resume as resume_sweep

        outcome = resume_sweep(open_store(store, storage, tracking_uri, storage_path), sweep, err, address)
    if outcome is not None:
        ended(outcome)


@app.command()
def up(
    cpus: Optional[int] = typer.Option(None, "--cpus", min=1, help="CPUs its trials may use (default: all)"),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=0, help="GPUs its trials may use (default: all)"),
) -> None:
    """Keep a local Ray up for the sweeps to come: each run attaches in a second; hpsearch down stops it."""
    from search.driver import warm_ray

    with interrupts_end_in_one_line("the warm Ray was not started"):
        where = warm_ray.start(cpus, gpus)
    out.print(f"a warm Ray is up at {where}: every sweep on this machine uses it; hpsearch down stops it")


@app.command()
def down() -> None:
    """Stop the warm Ray `hpsearch up` started (sweeps still running on it stop with it)."""
    from search.driver import warm_ray

    where = warm_ray.stop()
    out.print(f"the warm Ray at {where} is stopped" if where else "no warm Ray was up")


def ended(outcome) -> None:
    """How a sweep (run or resumed) ended, as an exit code: an interrupt says how to go on (130, 143); a
    sweep in which no trial completed gives the first reasons (1)."""
    if outcome.interrupted:
        finished = sum(outcome.counts.get(k, 0) for k in ("complete", "pruned"))
        err.print(
            f"interrupted: {finished} trial(s) of this run finished, {len(outcome.stopped)} stopped (FAIL, "
            f"stopped: interrupted); `hpsearch resume {outcome.study_name}` runs those again and finishes the sweep",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(128 + outcome.signal)
    if outcome.failed_fast:
        logs = next((logs for _, line, logs in outcome.failures if logs), None)
        err.print(
            f"error: the sweep stopped: {outcome.failed_fast} (fail_fast: 0 in the space file runs on regardless)"
            + (f"; logs: {logs}" if logs else ""),
            highlight=False,
            markup=False,  # the error's own text may hold brackets
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if outcome.nothing_completed:
        report_failures(outcome.failures)
        raise typer.Exit(1)


def report_failures(failures: list[tuple[int, str, str | None]], shown: int = 3) -> None:
    err.print(f"error: no trial completed; {len(failures)} failed. The first:", highlight=False)
    for number, line, logs in failures[:shown]:
        err.print(f"  trial {number}: {line}", highlight=False, soft_wrap=True)
        if logs:
            err.print(f"    logs: {logs}", highlight=False, soft_wrap=True)
