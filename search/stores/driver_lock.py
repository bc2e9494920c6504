"""One driver per sweep: the study and the MLflow runs have a single writer.

A driver (``hpsearch run`` or ``resume``) holds an exclusive ``flock`` on ``<store>/locks/<sweep>.lock``
for as long as it drives the sweep. The operating system releases it when the process ends, however it
ends (SIGKILL included), so a held lock means a live driver and a free one means none: ``resume`` and a
second ``run`` refuse while it is held, instead of marking a live driver's trials lost.

The lock lives in the local store directory, so it sees drivers on this machine (or on a shared file
system with working locks); drivers on different machines sharing only a database server are not seen.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from search.errors import SweepError
from search.stores.store import Store

_held: dict[Path, int] = {}  # lock files this process holds, with their file descriptors


def _open(path: Path) -> int:
    """A lock file in ``<store>/locks/``, opened (created if need be) for flock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def setting_up(store: Store) -> Iterator[None]:
    """Wait for, then hold, the store's set-up lock: two drivers starting together on a new store would
    otherwise both create the SQLite schemas (MLflow's migrations fail half-way, Optuna's tables clash)."""
    fd = _open(store.root / "locks" / "store-setup.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def sole_driver(store: Store, sweep: str) -> Iterator[None]:
    """Hold the sweep's driver lock (re-entrant within this process), or raise naming the live driver."""
    path = store.path_for("locks", sweep, ".lock")  # a study name that leads outside the store is refused
    if path in _held:  # resume holds it, then runs the sweep
        yield
        return
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise SweepError(
            f"sweep {sweep!r} is being driven by {holder}: wait for it to end, or stop it, then resume", sweep
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"hpsearch pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode(), 0)
    _held[path] = fd
    try:
        yield
    finally:
        del _held[path]
        os.close(fd)  # closing releases the lock
