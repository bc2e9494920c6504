"""The ``hpsearch`` command: run a sweep, list what can be swept, train one trial in-process."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from search.errors import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter search for deep learning.")
out = Console()
err = Console(stderr=True)

StoreOpt = typer.Option("./mlruns", "--store", help="directory holding optuna.db, mlflow.db, artifacts, Ray results")
SetOpt = typer.Option(None, "--set", help="override a key by dotted path, e.g. config.epochs=50 (repeatable)")


def fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    space: str = typer.Argument(..., help="a space name under spaces/, or a path to a YAML file"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="number of trials (overrides the file)"),
    set_: Optional[list[str]] = SetOpt,
    store: str = StoreOpt,
    new: bool = typer.Option(False, "--new", help="archive the existing study of this name and start afresh"),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="an existing Ray cluster"),
) -> None:
    """Run a sweep: Ray Tune runs the trials, Optuna samples them, MLflow records them."""
    from search import runner
    from search import spec as spec_mod
    from search.store import Store

    try:
        overrides = [spec_mod.parse_override(s) for s in set_ or []]
        sweep = runner.prepare(space, overrides, trials)
        outcome = runner.run(sweep, Store.at(store), new=new, address=address, console=err)
    except SpecError as e:
        fail(str(e))
    if outcome.stopped_by_budget:
        err.print(
            f"sweep budget reached after {outcome.wall_s:.0f}s; trials still running were stopped", highlight=False
        )
    if outcome.interrupted:
        raise typer.Exit(130)


@app.command("list")
def list_() -> None:
    """Registered trainables with their hyperparameters, and the space files under spaces/."""
    from search.spec import SPACES_DIR, space_names
    from trainables.registry import all_trainables

    table = Table(title="trainables")
    for col in ("name", "metric", "hyperparameters (defaults)", "what"):
        table.add_column(col)
    for t in all_trainables():
        params = ", ".join(f"{k}={v}" for k, v in t.defaults().items())
        table.add_row(t.name, f"{t.metric} ({t.mode})", params, t.description)
    out.print(table)
    spaces = Table(title=f"space files ({SPACES_DIR})")
    for col in ("name", "trainable", "what"):
        spaces.add_column(col)
    import yaml

    for name in space_names():
        raw = yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text()) or {}
        spaces.add_row(name, str(raw.get("trainable", "?")), str(raw.get("description", "")))
    out.print(spaces)


@app.command()
def train(
    trainable: str = typer.Argument(..., help="a registered trainable name"),
    set_: Optional[list[str]] = SetOpt,
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
) -> None:
    """Run one trial in this process, no Ray: for debugging a model."""
    from pydantic import ValidationError

    from search.spec import parse_override
    from trainables.registry import get
    from trainables.session import LocalSession

    try:
        config: dict[str, Any] = dict(parse_override(s) for s in set_ or [])
        spec = get(trainable)
    except SpecError as e:
        fail(str(e))
    except KeyError as e:
        fail(str(e.args[0]))
    try:
        params = spec.params(**config)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(map(str, first["loc"]))
        msg = "unknown hyperparameter" if first["type"] == "extra_forbidden" else first["msg"]
        fail(f"--set {key}: {msg.removeprefix('Value error, ')} (got {first.get('input')!r})")
    session = LocalSession(device, echo=lambda line: out.print(line, highlight=False))
    out.print(f"{trainable}: {params.model_dump()}", highlight=False)
    spec.fn(params, session)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
