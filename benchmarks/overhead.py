"""Driver overhead: the same no-op sweep (N trials of 10 reports) through plain Optuna on SQLite, Ray Tune
with its stock OptunaSearch, and hpsearch, in one command.

A trial does no work (benchmarks/noop.py), so what is measured is what each driver spends per trial and
before the first: per-trial overhead is the slope between N = 100 and N = 300 trials ((wall(300) -
wall(100)) / 200), start-up latency what is left of wall(100) after 100 of those. Ratios are against
plain Optuna. One trial at a time everywhere; the machine should be otherwise idle. Where each driver's time
goes is the second table: CPU per trial (the same slope) of this process, the MLflow writer, and Ray's
processes (its workers, raylet, GCS), read from /proc.

    python benchmarks/overhead.py             # N = 100 and 300 (about 2 minutes on 2 cores, 3 loaded)
    python benchmarks/overhead.py --quick     # N = 20 and 60
    python benchmarks/overhead.py --load 2    # with two busy-loop processes keeping the cores busy, as real
                                              # trials do: what each driver loses to a loaded machine
    python benchmarks/overhead.py --checkpoints   # every trial keeps a checkpoint at each of its steps (a
                                              # file in plain Optuna's; Ray Tune keeps one a trial, as hpsearch)
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import psutil
from rich.console import Console

HERE = Path(__file__).resolve().parent
STEPS = 10


CHECKPOINTS = False  # --checkpoints: each step keeps a checkpoint


def plain_optuna(n: int, folder: str) -> float:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, STEPS + 1):
            trial.report(x * step, step)
            if CHECKPOINTS:  # what a plain script does: the trial's file, written again
                Path(folder, f"trial-{trial.number}.json").write_text(json.dumps({"step": step}))
        return x * STEPS

    started = time.monotonic()
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{folder}/optuna.db", study_name="noop")
    study.optimize(objective, n_trials=n)
    return time.monotonic() - started


def ray_tune(n: int, folder: str) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    checkpoints = CHECKPOINTS  # read here: the trainable runs in Ray's worker, where the flag is not set

    def trainable(config: dict) -> None:
        for step in range(1, STEPS + 1):
            if not checkpoints:
                tune.report({"score": config["x"] * step})
                continue
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "checkpoint.json").write_text(json.dumps({"step": step}))
                tune.report({"score": config["x"] * step}, checkpoint=tune.Checkpoint.from_directory(tmp))

    started = time.monotonic()
    search = OptunaSearch(metric="score", mode="max", space={"x": optuna.distributions.FloatDistribution(0, 1)})
    # Ray Tune as it ships: it runs before hpsearch's first sweep in this process patches Tune (ray_patches)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=n, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=folder, name="noop", verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=1)
        ),
    )
    tuner.fit()
    return time.monotonic() - started


def hpsearch(n: int, folder: str) -> float:
    from search.driver import plan, runner
    from search.space import loading
    from search.stores.store import Store

    raw = {
        "name": "noop",
        "trainable": f"{HERE / 'noop.py'}:{'train_checkpointing' if CHECKPOINTS else 'train'}",
        "metric": "score",
        "mode": "max",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"name": "tpe", "seed": 0},
        "trials": n,
    }
    started = time.monotonic()
    sweep = plan.prepare_spec(loading.validate(raw, "overhead"), "overhead")
    runner.run(sweep, Store.at(folder), console=Console(file=io.StringIO()))
    return time.monotonic() - started


class CpuMeter:
    """CPU seconds of this process and of every process under it, by kind (the driver, the MLflow writer,
    Ray's), read every 0.1 s so that a process which ended keeps its last reading."""

    KINDS = ("driver process", "MLflow writer", "Ray's processes")

    def __init__(self, ignore: set[int]) -> None:
        self.ignore = ignore  # the busy loops: the load, not a driver's
        self.me = psutil.Process()
        self.last: dict[int, tuple[str, float]] = {}  # pid -> kind, CPU seconds at its last reading
        self.lock = threading.Lock()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while True:
            self.read()
            time.sleep(0.1)

    def read(self) -> Counter:
        with self.lock:
            for proc in [self.me, *self.me.children(recursive=True)]:
                if proc.pid in self.ignore:
                    continue
                try:
                    kind = self._kind(proc)
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                self.last[proc.pid] = (kind, times.user + times.system)
            total = Counter({k: 0.0 for k in self.KINDS})
            for kind, seconds in self.last.values():
                total[kind] += seconds
            return total

    def _kind(self, proc: psutil.Process) -> str:
        if proc.pid == self.me.pid:
            return "driver process"
        if "search.stores.mlflow_writer" in proc.cmdline():
            return "MLflow writer"
        return "Ray's processes"  # everything else under this process is Ray's: GCS, raylet, agents, workers


def spin() -> None:
    """A fixed CPU load: one core's worth, until the benchmark ends."""
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes running throughout")
    parser.add_argument("--checkpoints", action="store_true", help="every trial keeps a checkpoint at each step")
    args = parser.parse_args()
    global CHECKPOINTS
    CHECKPOINTS = args.checkpoints
    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for p in busy:
        p.start()
    small, large = (20, 60) if args.quick else (100, 300)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.driver.ray_start import ensure_ray

    ensure_ray()  # one Ray for both Ray-based drivers; its start-up is not a trial's
    meter = CpuMeter(ignore={p.pid for p in busy})
    rows, cpu = {}, {}
    for name, run in (
        ("plain Optuna (SQLite)", plain_optuna),
        ("Ray Tune + OptunaSearch", ray_tune),
        ("hpsearch", hpsearch),
    ):
        walls, used = [], []
        for n in (small, large):
            with tempfile.TemporaryDirectory() as tmp:
                before = meter.read()
                walls.append(run(n, tmp))
                time.sleep(0.3)  # a process that just ended was read once more
                after = meter.read()
                used.append({k: after[k] - before[k] for k in CpuMeter.KINDS})
        per_trial = (walls[1] - walls[0]) / (large - small)
        rows[name] = (walls, per_trial, walls[0] - small * per_trial)
        cpu[name] = {k: (used[1][k] - used[0][k]) / (large - small) for k in CpuMeter.KINDS}
        print(f"{name}: {small} trials {walls[0]:.1f}s, {large} trials {walls[1]:.1f}s", flush=True)
    for p in busy:
        p.terminate()
    base = rows["plain Optuna (SQLite)"][1]
    print(f"\nwith {args.load} busy-loop process(es) running" if args.load else "\nidle")
    if args.checkpoints:
        print("every trial keeping a checkpoint at each of its steps")
    print(f"\n| driver | wall {small} | wall {large} | per trial ms | ratio | start-up s |")
    print("|---|---|---|---|---|---|")
    for name, (walls, per_trial, startup) in rows.items():
        print(
            f"| {name} | {walls[0]:.1f} | {walls[1]:.1f} | {per_trial * 1000:.0f} | {per_trial / base:.2f}x "
            f"| {startup:.1f} |"
        )
    print("\nCPU per trial (ms), the same slope, by process:\n")
    print(f"| sweep | {' | '.join(CpuMeter.KINDS)} | all |")
    print("|---|" + "---|" * (len(CpuMeter.KINDS) + 1))
    for name, by_kind in cpu.items():
        cells = " | ".join(f"{by_kind[k] * 1000:.0f}" for k in CpuMeter.KINDS)
        print(f"| {name} | {cells} | {sum(by_kind.values()) * 1000:.0f} |")


if __name__ == "__main__":
    main()
