"""A trial's own output: what it printed, its warnings, and its traceback when it failed.

Ray Tune writes a trial's stdout and stderr (``RunConfig(log_to_file=True)``) into the trial's working
directory under /tmp/ray, and its traceback (error.txt) into the trial directory in the store. At the
trial's end the driver copies the first two next to the third, so the store's trial directory
(``<store>/ray/<run>/trial-<number>-<id>/``) holds all three; the MLflow callback logs them as the run's
``logs/`` artifacts, and the progress line of a failed trial says where they are.

The store's copy is the whole log; the run's artifact is that log cut to its first and last part when it is
larger than ARTIFACT_CAP (a trial that prints 50 MB would otherwise be stored twice, once per fused member
more), with a line where it was cut that says where the whole log is.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ray.tune.experiment import Trial

STREAMS = ("stdout", "stderr")
ARTIFACT_CAP = 1 << 20  # bytes of a log kept in its MLflow run: the first quarter and the last three


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


@contextmanager
def for_artifacts(files: list[Path], cap: int = ARTIFACT_CAP) -> Iterator[list[Path]]:
    """The log files to log as a run's artifacts: each as it is, or, when larger than ``cap`` bytes, a copy
    of the same name holding its first and last part and a line saying what was cut and where the whole
    log is. The copies live until the block ends; a trial whose logs are all small (most) makes none."""
    if all(path.stat().st_size <= cap for path in files):
        yield files
        return
    with tempfile.TemporaryDirectory(prefix="hpsearch-logs-") as tmp:
        yield [_capped(path, Path(tmp), cap) for path in files]


def _capped(path: Path, folder: Path, cap: int) -> Path:
    size = path.stat().st_size
    if size <= cap:
        return path
    head, tail = cap // 4, cap - cap // 4
    out = folder / path.name
    with path.open("rb") as source, out.open("wb") as target:
        target.write(source.read(head))
        cut = size - head - tail
        target.write(
            f"\n[hpsearch: {cut:,} bytes cut here, the log is {size:,} bytes; the whole log is {path}]\n".encode()
        )
        source.seek(size - tail)
        target.write(source.read())
    return out


def error_line(trial: Trial) -> str:
    """The last line of a failed trial's traceback: the exception and its message."""
    # Ray writes the trace to the trial's local directory first and syncs it to storage later.
    local = Path(trial.error_file) if trial.error_file else None
    if local is not None and local.is_file():
        text = local.read_text()
    else:
        error = trial.get_error()
        text = str(error) if error is not None else "the trial raised an error"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text
