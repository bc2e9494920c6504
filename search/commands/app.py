"""What every command shares: the one place a user error becomes one line and its exit code
(``Commands.invoke``), the ``app`` the commands register on, the consoles, the options several commands
take, and opening a store."""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import click
import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import TyperException

from search.errors import NOT_STARTED, UserError
from trainables.errors import TrainableError


class Commands(TyperGroup):
    """Every command runs through ``invoke``: the one place a user error becomes ``error: ...`` and its exit
    code (2: nothing ran; 1: a sweep stopped on the way). Anything else is a bug and keeps its traceback."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # the options are parsed (typer imports pydantic for it): Ctrl-C here is one line as well
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted(None)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, TrainableError) as e:  # TrainableError: the trainables' own (no search/ there)
            err.print(f"error: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 2)) from None
        except KeyboardInterrupt as e:  # one the command does not handle itself (typer would exit 130 silently)
            started = any(_in_a_command(frame) for frame, _ in traceback.walk_tb(e.__traceback__))
            _interrupted(f"hpsearch {ctx.invoked_subcommand} stopped before it finished" if started else None)
        except TyperException as e:  # click's (vendored by typer) usage errors: the same one line, not a box
            if getattr(e, "exit_code", None) != 2 or not hasattr(e, "format_message"):
                raise
            ctx_ = getattr(e, "ctx", None)
            command = f"hpsearch {ctx_.info_name}: " if ctx_ is not None and ctx_.parent is not None else ""
            err.print(f"error: {command}{e.format_message()}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def _interrupted(said: str | None) -> NoReturn:
    err.print(f"interrupted: {said}" if said else NOT_STARTED, highlight=False)
    raise typer.Exit(130) from None


def _in_a_command(frame: Any) -> bool:
    """A frame of a command's own code (the commands live in ``*_commands.py``), not of parsing its options."""
    return frame.f_globals.get("__name__", "").endswith("_commands")


app = typer.Typer(
    cls=Commands, add_completion=False, no_args_is_help=True, help="Hyperparameter search for deep learning."
)

# Piped output is read by scripts and logs: a table's numbers stay whole on their line, not folded at 80
# columns as rich does off a terminal.
out = Console(emoji=False, width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, emoji=False, width=None if sys.stderr.isatty() else 1000)

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

HostOpt = typer.Option("127.0.0.1", "--host", help="address to bind; 127.0.0.1 keeps it on this machine")


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
        if interrupts.abandoned() or not interrupts.has_children():
            # Interrupted mid-import (Ray, gRPC, torch), a library left half made can still take the process
            # down with the signal while Python shuts down; nothing was written and nothing was started, so
            # the process ends here, with its code.
            interrupts.exit_now(code)
        raise typer.Exit(code) from None


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
