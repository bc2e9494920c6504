"""The ``hpsearch`` command: run a sweep, list what can be swept, train one trial in-process."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

from search.errors import SpecError, UserError
from trainables.registry import TrainableError


class Commands(TyperGroup):
    """Every command runs through ``invoke``: the one place a user error becomes ``error: ...`` and its exit
    code (2: nothing ran; 1: a sweep stopped on the way). Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, TrainableError) as e:  # TrainableError: the trainables' own (no search/ there)
            err.print(f"error: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 2)) from None
        except TyperException as e:  # click's (vendored by typer) usage errors: the same one line, not a box
            if getattr(e, "exit_code", None) != 2 or not hasattr(e, "format_message"):
                raise
            ctx_ = getattr(e, "ctx", None)
            command = f"hpsearch {ctx_.info_name}: " if ctx_ is not None and ctx_.parent is not None else ""
            err.print(f"error: {command}{e.format_message()}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=Commands, add_completion=False, no_args_is_help=True, help="Hyperparameter search for deep learning."
)
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

StoreOpt = typer.Option("./mlruns", "--store", help="directory holding optuna.db, mlflow.db, artifacts, Ray results")
# Scale-out: each part of the store can live on a team's own service instead (see docs/scale-out.md).
StorageOpt = typer.Option(
    None, "--storage", envvar="HPSEARCH_STORAGE", help="Optuna RDB URL, e.g. postgresql://user@db/hpsearch"
)
TrackingOpt = typer.Option(
    None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking server, e.g. http://mlflow:5000"
)
StoragePathOpt = typer.Option(
    None, "--storage-path", envvar="HPSEARCH_STORAGE_PATH", help="Ray results: a shared directory or s3://... URL"
)
AddressOpt = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="an existing Ray cluster (host:port, ray://)")
SetOpt = typer.Option(None, "--set", help="override a key by dotted path, e.g. config.epochs=50 (repeatable)")


def open_store(
    store: str, storage: str | None = None, tracking_uri: str | None = None, storage_path: str | None = None
):
    """The store named by --store, with the parts that live on services (--storage, ...) moved there."""
    from search.stores.infra import check_storage, check_tracking
    from search.stores.store import Store

    s = Store.at(store, storage, tracking_uri, storage_path)
    s.check()
    if s.storage is not None:  # the store's own optuna.db is made with its folder
        check_storage(s.storage)
    check_tracking(s.mlflow_url)
    return s


@app.command()
def run(
    space: str = typer.Argument(..., help="a space name under spaces/, or a path to a YAML file"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="number of trials (overrides the file)"),
    set_: Optional[list[str]] = SetOpt,
    store: str = StoreOpt,
    new: bool = typer.Option(False, "--new", help="archive the existing study of this name and start afresh"),
    accept_change: bool = typer.Option(
        False,
        "--accept-change",
        help="go on in the existing study although its search was defined otherwise (config, space, metric, ...); "
        "the change is recorded on the study and its later trials",
    ),
    address: Optional[str] = AddressOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    storage_path: Optional[str] = StoragePathOpt,
    with_dashboard: bool = typer.Option(False, "--dashboard", help="run optuna-dashboard beside the sweep"),
    dashboard_port: int = typer.Option(8080, "--dashboard-port", min=1, max=65535),
    keep_dashboard: bool = typer.Option(False, "--keep-dashboard", help="leave the dashboard up after the sweep"),
) -> None:
    """Run a sweep: Ray Tune runs the trials, Optuna samples them, MLflow records them."""
    from search.space import spec as spec_mod  # the space file first: a bad one costs no engine import
    from search.space.overrides import parse_override

    server = None
    # Ctrl-C or SIGTERM before the sweep holds them (imports, Ray's start): one line, nothing recorded.
    with interrupts_end_in_one_line("the sweep had not started; nothing was recorded"):
        try:
            overrides = [parse_override(s) for s in set_ or []]
            if trials is not None:
                overrides.append(("trials", trials))
            spec, path = spec_mod.load(space, overrides)
            # Ray, Optuna, MLflow: once the input is known to be good
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
                sweep, s, new=new, address=address, console=err, accept_change=accept_change, checked=with_dashboard
            )
        except BaseException:
            if server:
                server.stop()  # no sweep ran, or it broke: its dashboard does not stay up
            raise
    if server and not keep_dashboard:
        server.stop()
    if server and keep_dashboard:
        serve_until_interrupted(server)
    if outcome.stopped_by_budget:
        err.print(
            f"sweep budget reached after {outcome.wall_s:.0f}s; trials still running were stopped", highlight=False
        )
    ended(outcome)


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


@contextmanager
def interrupts_end_in_one_line(said: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM before a command's own handling of them (imports, Ray's start): one line saying
    what became of the work, and the shell's exit code for the signal (130, 143), not a traceback."""
    from search.driver import interrupts

    try:
        with interrupts.interruptible():
            yield
    except KeyboardInterrupt as e:
        err.print(f"interrupted: {said}", highlight=False, soft_wrap=True)
        code = 143 if isinstance(e, interrupts.Terminated) else 130
        if not interrupts.has_children():
            # Interrupted mid-import (Ray, gRPC, torch), a library left half made can still take the process
            # down with the signal while Python shuts down; nothing was written and nothing was started, so
            # the process ends here, with its code.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise typer.Exit(code) from None


HostOpt = typer.Option("127.0.0.1", "--host", help="address to bind; 127.0.0.1 keeps it on this machine")


def serve_until_interrupted(server) -> None:
    from search.commands.servers import sigterm_interrupts

    try:
        with sigterm_interrupts():
            out.print(f"{server.name} on {server.url}  (Ctrl-C stops it)", highlight=False)
            server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def serve_store(s, start) -> None:
    """Start a watch server on an existing store and keep it up until Ctrl-C or SIGTERM."""
    from search.commands.servers import sigterm_interrupts
    from search.readback.sweeps import require_store

    server = None
    try:
        with sigterm_interrupts():  # also while the server starts: it must not outlive us
            require_store(s)
            server = start(s)
            serve_until_interrupted(server)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()


@app.command()
def dashboard(
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    host: str = HostOpt,
) -> None:
    """optuna-dashboard on the store's studies (or --storage's): trials, intermediate values and plots, live."""
    from search.commands.servers import start_dashboard

    serve_store(open_store(store, storage), lambda s: start_dashboard(s.optuna_url, host, port))


@app.command()
def ui(
    store: str = StoreOpt,
    port: int = typer.Option(5000, "--port", min=1, max=65535),
    host: str = HostOpt,
) -> None:
    """The MLflow UI on the store's runs: one experiment per sweep, a child run per trial."""
    from search.commands.servers import start_mlflow_ui

    def start(s):
        server = start_mlflow_ui(s, host, port)
        from mlflow.tracking import MlflowClient

        for exp in MlflowClient(s.mlflow_url).search_experiments():
            if exp.name != "Default":
                out.print(f"  {exp.name}: {server.url}/#/experiments/{exp.experiment_id}/runs", highlight=False)
        return server

    serve_store(open_store(store), start)


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
) -> None:
    """Trials (or configurations with their seeds, mean ± std) of one or more sweeps, best first."""
    from search.readback.compare import collect, columns, render

    if format_ not in ("table", "markdown", "csv"):
        raise SpecError(f"expected table, markdown or csv (got {format_!r})", "--format")
    rows, metrics, directions = collect(open_store(store, storage, tracking_uri), sweep_names)
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
    table = Table(title=f"hyperparameter importances of {sweep} (Optuna, fANOVA)")
    table.add_column("hyperparameter")
    table.add_column("importance", justify="right")
    for name, value in result.importances.items():
        table.add_row(name, f"{value:.3f}")
    out.print(table)
    for path in result.files:
        out.print(f"  {path}", highlight=False, soft_wrap=True)
    if result.parent_run_id:
        out.print(f"logged as artifacts under report/ of MLflow run {result.parent_run_id}", highlight=False)


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


@app.command("list")
def list_() -> None:
    """Registered trainables with their hyperparameters, and the space files under spaces/."""
    import yaml
    from rich.padding import Padding

    from search.space.spec import SPACES_DIR, space_names
    from trainables.registry import all_trainables

    # One block per trainable, not a table: its hyperparameters wrap at any width (80 columns included).
    out.print("[bold]trainables[/bold]  (also your own: ./file.py:function, see docs/trainables.md)")
    for t in all_trainables():
        out.print(f"\n[bold]{t.name}[/bold]  {t.metric} ({t.mode})", highlight=False)
        params = ", ".join(f"{k}={v}" for k, v in t.defaults().items())
        out.print(Padding(f"{t.description}\n{params}", (0, 0, 0, 2)), highlight=False)
    spaces = Table(title=f"\nspace files ({SPACES_DIR})", title_justify="left")
    for col in ("name", "trainable", "what"):
        spaces.add_column(col, overflow="fold")
    for name in space_names():
        raw = yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text()) or {}
        spaces.add_row(name, str(raw.get("trainable", "?")), str(raw.get("description", "")))
    out.print(spaces)


def _train_target(target: str | None, from_: str | None, store: str, trial: int | None) -> tuple[str, dict[str, Any]]:
    """What ``train`` runs: (trainable reference, configuration) from a sweep's best, a saved best file,
    a space file, or a trainable named alone (its defaults)."""
    from pathlib import Path

    import yaml

    from search.space import spec as spec_mod
    from trainables.registry import is_reference

    if from_ is not None:
        if Path(from_).suffix in (".yaml", ".yml", ".json") and Path(from_).is_file():
            try:
                saved = yaml.safe_load(Path(from_).read_text()) or {}
            except yaml.YAMLError:
                saved = None  # several documents (a whole front), or not YAML at all
            if not isinstance(saved, dict) or "config" not in saved or "trainable" not in saved:
                raise SpecError(
                    "expected one trial written by `hpsearch best` (with trainable: and config:; of a front, "
                    "one trial: hpsearch best SWEEP --trial N)",
                    from_,
                )
            return target or saved["trainable"], dict(saved["config"])
        from search.readback.results import best

        b = best(open_store(store), from_, trial)
        return target or b.trainable, b.config
    if target is None:
        raise SpecError("name a trainable, a ./file.py:function, a space file, or --from SWEEP", "train")
    if is_reference(target):
        return spec_mod.resolve_reference(target, Path.cwd(), "train"), {}
    if Path(target).suffix in (".yaml", ".yml"):
        from search.space.samplers import baseline_notes

        space, _ = spec_mod.load(target)
        # The searched parameters too: a plain function has no defaults to fall back on. The point is
        # OFAT's baseline, a point of the space (config, else the trainable's default if the space holds
        # it, else the space's middle).
        point, notes = baseline_notes(space)
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        err.print(
            f"searched parameters at: {shown}" + (f"; {'; '.join(notes)}" if notes else ""),
            highlight=False,
            soft_wrap=True,
        )
        return space.trainable, {**dict(space.config), **point}
    return target, {}


@app.command()
def train(
    target: Optional[str] = typer.Argument(
        None, help="a trainable name (hpsearch list), ./file.py:function, module:function, or a space file"
    ),
    set_: Optional[list[str]] = SetOpt,
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
    from_: Optional[str] = typer.Option(
        None, "--from", help="a sweep's best configuration (a sweep name in --store, or a file from `hpsearch best`)"
    ),
    trial: Optional[int] = typer.Option(None, "--trial", help="with --from SWEEP: this trial instead of the best"),
    store: str = StoreOpt,
    save: Optional[str] = typer.Option(None, "--save", help="write the trained model here (as `hpsearch export`)"),
) -> None:
    """Run one trial in this process, no Ray: to try a trainable, or retrain a sweep's best (--from)."""
    from pathlib import Path

    from pydantic import ValidationError

    from search.space.overrides import parse_override
    from trainables.registry import get
    from trainables.session import CheckpointKeeper, LocalSession

    trainable, config = _train_target(target, from_, store, trial)
    config |= dict(parse_override(s) for s in set_ or [])
    spec = get(trainable)
    if spec.params is not None:
        try:
            shown = spec.params(**config).model_dump()
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(map(str, first["loc"]))
            msg = "unknown hyperparameter" if first["type"] == "extra_forbidden" else first["msg"]
            shown = f"{msg.removeprefix('Value error, ')} (got {first.get('input')!r})"
            raise SpecError(shown, f"--set {key}") from None
    else:
        shown = config
    # --save writes the weights of the best step by the trainable's declared metric, as a sweep keeps them
    # (a plain function declares none: its last checkpoint)
    keeper = CheckpointKeeper(spec.metric, spec.mode, "best" if spec.metric else "last")
    session = LocalSession(device, echo=lambda line: out.print(line, highlight=False), keeper=keeper)
    out.print(f"{trainable}: {shown}", highlight=False)
    spec.run(config, session)
    if save is not None:
        from search.readback.results import write_model

        if session.last_checkpoint is None:
            raise SpecError(f"{trainable} reported no checkpoint (session.report(..., checkpoint={{...}}))", "--save")
        about = {"source": "hpsearch train", "step": session.checkpoint_step}
        for path in write_model(trainable, session.last_checkpoint, config, Path(save), about):
            out.print(f"  wrote {path}", highlight=False, soft_wrap=True)


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

    from search.readback.results import best as best_of
    from search.readback.results import load_checkpoint, write_model

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
    files = write_model(result.trainable, checkpoint, result.config, Path(folder), about)
    at = f", weights of step {result.checkpoint_step}" if result.checkpoint_step is not None else ""
    out.print(f"trial {result.trial} of {sweep} ({result.metric} = {result.value:.6g}{at}):", highlight=False)
    for path in files:
        out.print(f"  {path}", highlight=False, soft_wrap=True)
    out.print(
        'load it:  torch.load("model.pt")  ->  state_dict, config, trainable, step, metrics',
        highlight=False,
        soft_wrap=True,
    )
    if result.notice:
        err.print(f"note: {result.notice}", highlight=False, soft_wrap=True)


@app.command()
def init(
    name: str = typer.Argument(..., help="a name for the trainable and its sweep (a Python identifier)"),
    folder: str = typer.Option(".", "--dir", help="where to write NAME.py and NAME.yaml"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
) -> None:
    """Write a trainable (NAME.py) and its space file (NAME.yaml) that run as they are: edit, then run."""
    from pathlib import Path

    from search.commands.scaffold import write

    files = write(name, Path(folder), force)
    for path in files:
        out.print(f"wrote {path}", highlight=False)
    out.print(f"try one trial:  hpsearch train {files[1]}", highlight=False)
    out.print(f"sweep it:       hpsearch run {files[1]}", highlight=False)


def main() -> None:
    # Downloading a checkpoint (best, export) is one small file: MLflow's progress bar is noise there.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
