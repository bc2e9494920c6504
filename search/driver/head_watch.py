"""Ray's head, watched from the driver while a sweep runs.

When the head's GCS server dies, every Ray call the driver makes blocks; Ray's own core worker gives up
after 60 s and ends the process from C++ (exit 1, a log line, no word of the sweep). A thread here probes
the GCS port once a second and, once it has stopped answering for longer than a restart could take, closes
what the sweep holds open as an interrupt does (``on_lost``: the running trials FAIL with ``stopped: Ray's
head lost``, their runs and the parent run KILLED; the stores answer, only Ray does not), then ends the
driver with one line saying what happened and that ``hpsearch resume`` runs them again and finishes the
sweep. Where the closing itself hangs, the driver ends all the same after ``CLOSE_S`` and resume closes
what is left (``benchmarks/faults.py``, "Ray's GCS killed").

A head this driver started, or the warm Ray of ``hpsearch up``, cannot come back: 2 s of silence is
enough. A cluster's head may be restarted (GCS fault tolerance) within Ray's own 60 s window: 45 s.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Callable

import ray

from search.driver import interrupts, warm_ray
from search.names import HEAD_LOST
from search.stores.infra import answers

# How long the GCS may not answer before the sweep is given up. A head this driver started (or the warm
# Ray) cannot come back; a cluster's head may be restarted (GCS fault tolerance) within Ray's 60 s window.
EMBEDDED_PATIENCE_S = 2.0
CLUSTER_PATIENCE_S = 45.0
CLOSE_S = 30.0  # the most the closing of a sweep whose head was lost may take before the driver ends


def started_here() -> bool:
    """Whether this driver started the Ray head it uses (the embedded default), not joined a cluster."""
    try:
        from ray._private import worker  # private: read only to choose the patience; a cluster's if absent

        return bool(worker._global_node is not None and worker._global_node.is_head())
    except Exception:  # noqa: BLE001
        return False


def gcs_address() -> tuple[str, int] | None:
    try:
        host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
        return host, int(port)
    except Exception:  # noqa: BLE001 - no address, nothing to watch
        return None


class HeadWatch:
    """While open, closes the sweep (``on_lost(reason)``) and ends the process with one line (exit 1) if
    Ray's GCS stops answering for ``patience`` seconds. ``name`` is the sweep's, for the line's advice."""

    def __init__(
        self,
        name: str,
        patience: float | None = None,
        interval: float = 1.0,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.address = gcs_address()
        self.embedded = started_here()
        self.warm = self.address is not None and _warm_address() == "%s:%d" % self.address
        local = self.embedded or self.warm
        self.patience = patience if patience is not None else EMBEDDED_PATIENCE_S if local else CLUSTER_PATIENCE_S
        self.interval = interval
        self.on_lost = on_lost
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hpsearch-head-watch", daemon=True)

    def __enter__(self) -> HeadWatch:
        if self.address is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._closed.set()

    def _watch(self) -> None:
        silent_since = None
        while not self._closed.wait(self.interval):
            if answers(self.address):
                silent_since = None
                continue
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= self.patience and not self._closed.is_set():
                self._give_up()

    def where(self) -> str:
        """Which head was lost, in the user's words."""
        host, port = self.address
        if self.warm:
            stopped = ", which hpsearch down stopped" if _warm_address() is None else ""
            return f"the warm Ray at {host}:{port} (hpsearch up){stopped}"
        if self.embedded:
            return f"the Ray head this sweep started, its GCS server at port {port}"
        return f"the Ray cluster's head at {host}:{port}"

    def _give_up(self) -> None:
        closed = self._close()
        what = (
            f"the trials that were running are closed (FAIL, stopped: {HEAD_LOST}), and `hpsearch resume {self.name}` "
            "runs them again and finishes it"
            if closed
            else f"`hpsearch resume {self.name}` closes the trials that were running and finishes it"
        )
        sys.stderr.write(
            f"error: Ray's head died mid-sweep ({self.where()}: not answering for {self.patience:g} s), so the sweep "
            f"stopped: what finished is kept, {what}\n"
        )
        sys.stderr.flush()
        if self.embedded:  # its raylet and workers would wait out Ray's 60 s before they notice
            try:
                from ray._private import worker

                worker._global_node.kill_all_processes(check_alive=False, allow_graceful=False)
            except Exception:  # noqa: BLE001 - they end by themselves, later
                pass
        interrupts.exit_now(1)

    def _close(self) -> bool:
        """``on_lost``, in a thread of its own and for ``CLOSE_S`` at most: whether it closed the sweep."""
        if self.on_lost is None:
            return False
        done = threading.Event()

        def close() -> None:
            try:
                self.on_lost(HEAD_LOST)
                done.set()
            except Exception:  # noqa: BLE001 - what it could not close, resume closes
                pass

        threading.Thread(target=close, name="hpsearch-close-on-head-lost", daemon=True).start()
        return done.wait(CLOSE_S)


def _warm_address() -> str | None:
    """The warm Ray's address as ``hpsearch up`` recorded it (None when there is none, or down stopped it)."""
    return (warm_ray.recorded() or {}).get("address")
