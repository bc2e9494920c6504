"""A trial's own output: what it printed, its warnings, and its traceback when it failed.

Ray Tune writes a trial's stdout and stderr (``RunConfig(log_to_file=True)``) into the trial's working
directory under /tmp/ray, and its traceback (error.txt) into the trial directory in the store. At the
trial's end the driver copies the first two next to the third, so the store's trial directory
(``<store>/ray/<run>/trial-<number>-<id>/``) holds all three; the MLflow callback logs them as the run's
``logs/`` artifacts, and the progress line of a failed trial says where they are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ray.tune.experiment import Trial

STREAMS = ("stdout", "stderr")


def trial_dir(trial: Trial) -> Path | None:
    """The trial's directory in the store, when the store is a local folder."""
    path = getattr(trial, "path", None)
    if not path or "://" in str(path):
        return None
    return Path(path)


def collect(trial: Trial) -> list[Path]:
    """Copy the trial's stdout/stderr next to its error.txt; return the non-empty log files there."""
    target = trial_dir(trial)
    try:
        work = Path(trial.storage.trial_working_directory)
    except (AttributeError, RuntimeError):
        work = None
    files: list[Path] = []
    for name in STREAMS:
        source = work / name if work is not None else None
        if source is None or not source.is_file() or source.stat().st_size == 0:
            continue
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            files.append(Path(shutil.copyfile(source, target / f"{name}.txt")))
        else:
            files.append(source)
    if target is not None:
        # Ray writes the traceback to the trial's local directory first and syncs it to the store later: a
        # failed trial's error.txt is copied now, so its run's logs/ and the FAIL line's pointer have it.
        local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
        error = target / "error.txt"
        if local is not None and local.is_file() and local.resolve() != error.resolve():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, error)
        if error.is_file():
            files.append(error)
    return files
