"""The Ray side of the trainable contract: a Session that reports through ``ray.tune.report``."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from trainables import registry

CHECKPOINT_FILE = "checkpoint.pt"
FINAL_KEY = "final_report"  # in a result: the trainable's last report (never pruned there)


class RaySession:
    def __init__(self, device: torch.device, budget_s: float | None, report_interval_s: float | None) -> None:
        self.device = device
        self.report_interval_s = report_interval_s
        self.started = time.monotonic()
        self._deadline = None if budget_s is None else self.started + budget_s
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, final: bool = False
    ) -> None:
        # elapsed_s is the trial's own clock (from the session's start, after imports and data setup):
        # the trial budget is enforced on it.
        payload = {**metrics, "step": step, "elapsed_s": time.monotonic() - self.started, "node_id": self.node_id}
        if final:
            payload[FINAL_KEY] = True
        if checkpoint is None:
            tune.report(payload)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(checkpoint, Path(tmp) / CHECKPOINT_FILE)
            tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)

    def time_left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())


def trial_function(
    trainable_name: str,
    metric: str,
    cpus: float,
    gpus: float,
    budget_s: float | None,
    report_interval_s: float | None,
) -> Callable[[dict], None]:
    """The Ray Tune function trainable for one registered trainable (or a user's ``file.py:fn``).

    The driver's plugin modules and import path travel with the function, so a worker on any node finds
    the same trainables as the driver did, whatever its environment. A trial runs in the directory where
    ``hpsearch run`` was started (where that directory exists on the worker's node), so a relative path
    in a user's code or hyperparameters means what it meant to the user; Ray's trial directory holds
    the trial's results and logs, not its working directory.
    """
    plugins = registry.plugin_modules()
    launch_dir = os.getcwd()
    import_path = [launch_dir, *registry.user_import_dirs]

    def run_trial(config: dict) -> None:
        if Path(launch_dir).is_dir():
            os.chdir(launch_dir)
        sys.path[:0] = [p for p in import_path if p not in sys.path]
        registry.load_plugins(plugins)
        torch.set_num_threads(max(1, int(cpus)))
        device = torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")
        try:
            registry.get(trainable_name).run(config, RaySession(device, budget_s, report_interval_s), metric)
        finally:  # the driver copies the trial's stdout/stderr files when it ends: they must be complete
            sys.stdout.flush()
            sys.stderr.flush()

    run_trial.__name__ = registry.short_name(trainable_name)
    return run_trial
