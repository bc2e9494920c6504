"""Ray's head, watched from the driver while a sweep runs.

When the head's GCS server dies, every Ray call the driver makes blocks; Ray's own core worker gives up
after 60 s and ends the process from C++ (exit 1, a log line, no word of the sweep). A thread here probes
the GCS port once a second and, once it has stopped answering for longer than a restart could take, ends
the driver itself with one line saying what happened and that ``hpsearch resume`` finishes the sweep. The
stores are left as a killed driver leaves them, which is what resume repairs (``benchmarks/faults.py``,
"Ray's GCS killed"): nothing in the driver can be closed cleanly once Ray no longer answers.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from types import TracebackType

import ray

# How long the GCS may not answer before the sweep is given up. A head this driver started cannot come
# back; a cluster's head may be restarted (GCS fault tolerance) within Ray's own 60 s reconnect window.
EMBEDDED_PATIENCE_S = 2.0
CLUSTER_PATIENCE_S = 45.0


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


def answers(address: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


class HeadWatch:
    """While open, ends the process with one line (exit 1) if Ray's GCS stops answering for ``patience``
    seconds. ``name`` is the sweep's, for the line's advice."""

    def __init__(self, name: str, patience: float | None = None, interval: float = 1.0) -> None:
        self.name = name
        self.embedded = started_here()
        self.patience = (
            patience if patience is not None else EMBEDDED_PATIENCE_S if self.embedded else CLUSTER_PATIENCE_S
        )
        self.interval = interval
        self.address = gcs_address()
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

    def _give_up(self) -> None:
        host, port = self.address
        where = "the Ray head this sweep started" if self.embedded else f"the Ray cluster's head at {host}"
        sys.stderr.write(
            f"error: Ray's head died mid-sweep ({where}: its GCS server at port {port} has not answered for "
            f"{self.patience:g} s), so the sweep stopped: what finished is kept, and `hpsearch resume "
            f"{self.name}` closes the trials that were running and finishes it\n"
        )
        sys.stderr.flush()
        if self.embedded:  # its raylet and workers would wait out Ray's 60 s before they notice
            try:
                from ray._private import worker

                worker._global_node.kill_all_processes(check_alive=False, allow_graceful=False)
            except Exception:  # noqa: BLE001 - they end by themselves, later
                pass
        os._exit(1)
