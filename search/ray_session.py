"""The Ray side of the trainable contract: a Session that reports through ``ray.tune.report``."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from trainables import registry

CHECKPOINT_FILE = "checkpoint.pt"


class RaySession:
    def __init__(self, device: torch.device, budget_s: float | None, report_interval_s: float | None) -> None:
        self.device = device
        self.report_interval_s = report_interval_s
        self.started = time.monotonic()
        self._deadline = None if budget_s is None else self.started + budget_s
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        # elapsed_s is the trial's own clock (from the session's start, after imports and data setup):
        # the trial budget is enforced on it.
        payload = {**metrics, "step": step, "elapsed_s": time.monotonic() - self.started, "node_id": self.node_id}
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
    trainable_name: str, cpus: float, gpus: float, budget_s: float | None, report_interval_s: float | None
) -> Callable[[dict], None]:
    """The Ray Tune function trainable for one registered trainable.

    The driver's plugin modules travel with the function, so a worker on any node registers the same
    trainables as the driver did, whatever its environment.
    """
    plugins = registry.plugin_modules()

    def run_trial(config: dict) -> None:
        registry.load_plugins(plugins)
        torch.set_num_threads(max(1, int(cpus)))
        device = torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")
        registry.get(trainable_name).run(config, RaySession(device, budget_s, report_interval_s))

    run_trial.__name__ = trainable_name.replace("-", "_")
    return run_trial
