"""The ``hpsearch`` command: the commands register on ``app`` (``app.py``) from their modules, imported here
in the order ``--help`` lists them: running sweeps, watching them, reading their results, trainables."""

from __future__ import annotations

import os
import sys

from search.commands.app import Commands, app, err

# isort: off
from search.commands import sweep_commands, watch_commands, result_commands, trainable_commands  # noqa: F401, E402
# isort: on

__all__ = ["Commands", "app", "main"]


def main() -> None:
    # Downloading a checkpoint (best, export) is one small file: MLflow's progress bar is noise there.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        app()
    except KeyboardInterrupt:  # before a command's own handling (parsing, its first imports): one line all the same
        err.print("interrupted: the command had not started; nothing was recorded", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
