"""The ``hpsearch`` command: the commands register on ``app`` (``app.py``) from their modules, imported here
in the order ``--help`` lists them: running sweeps, watching them, reading their results, trainables.

They are imported inside ``main``, not at the top: a Ctrl-C while they load (the first half second) is then
the same one line as any other interrupt before a command starts, not a traceback."""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from search.errors import NOT_STARTED

__all__ = ["main"]  # and, loaded on first use: app, Commands


def _commands() -> ModuleType:
    from search.commands import app as shared

    # isort: off
    from search.commands import sweep_commands, watch_commands, result_commands, trainable_commands  # noqa: F401

    # isort: on
    return shared


def __getattr__(name: str) -> Any:
    """``app`` and ``Commands`` for those that import them from here (tests, the CLI reference)."""
    if name in ("app", "Commands"):
        return getattr(_commands(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    # Downloading a checkpoint (best, export) is one small file: MLflow's progress bar is noise there.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        _commands().app()
    except SystemExit as e:
        if isinstance(e.code, (int, type(None))):
            _leave_ray_behind(e.code or 0)
        raise
    except KeyboardInterrupt:  # before a command's own handling (loading, parsing): one line all the same
        sys.stderr.write(f"{NOT_STARTED}\n")
        from search.driver.interrupts import exit_now, has_children

        if has_children():  # a server a command started: Python's own exit stops it
            sys.exit(130)
        # A library interrupted mid-import can take the process down with the signal while Python shuts
        # down; nothing was started, so the process ends here, with the shell's code for Ctrl-C.
        exit_now(130)


def _leave_ray_behind(code: int) -> None:
    """A command that ran Ray (run, resume) has closed its stores when it returns, yet Python's own exit
    then spends about 1.5 s more: Ray's exit hook waits half a second for worker output the driver does not
    print, then Python tears down Ray's and gRPC's objects one by one. Here Ray is shut down as that hook
    would (stopping a Ray of the sweep's own; leaving a warm Ray or a cluster up), and once no process of
    this one's is left (a dashboard the sweep keeps is one: Python's exit stops it) and every output is
    flushed, the process ends at once, with the command's code."""
    if "ray" not in sys.modules:
        return
    import ray

    from search.driver.interrupts import exit_now, has_children

    if ray.is_initialized():
        ray.shutdown()
    if has_children():
        return
    import logging

    logging.shutdown()
    exit_now(code)


if __name__ == "__main__":
    main()
