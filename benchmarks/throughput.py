"""Result throughput: 16 concurrent no-op trials (0.1 CPU each) report as fast as they can for 15 s, a
threshold pruner judging every step; how many steps reach both stores, hpsearch against Ray Tune with its
stock ``OptunaSearch`` and ``MLflowLoggerCallback``, one after the other in one command.

A step counts when it is in the study (an intermediate value) and in MLflow (a row of the metric's history);
for Ray Tune, which keeps no intermediate values in a study, the MLflow rows are counted. The ratio is
hpsearch's steps over Ray Tune's. Both run on one Ray started here, so neither pays Ray's start-up.

    python benchmarks/throughput.py               # 15 s of reporting each (about 2 minutes on 2 cores)
    python benchmarks/throughput.py --seconds 5
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import optuna
from rich.console import Console

HERE = Path(__file__).resolve().parent
TRIALS = 16


def flood(config: dict, session) -> None:
    """Report a step as fast as possible until the trial's time is up."""
    deadline = time.monotonic() + config["seconds"]
    step = 0
    while time.monotonic() < deadline:
        step += 1
        session.report(step, {"score": config["x"] * step})
    session.report(step + 1, {"score": config["x"] * (step + 1)}, final=True)


def mlflow_rows(folder: str, metric: str) -> int:
    with closing(sqlite3.connect(f"{folder}/mlflow.db")) as db:
        return db.execute("SELECT COUNT(*) FROM metrics WHERE key = ?", (metric,)).fetchone()[0]


def hpsearch(seconds: float, folder: str) -> dict[str, float]:
    from search.driver import plan, runner
    from search.space import loading
    from search.stores.store import Store

    raw = {
        "name": "throughput",
        "trainable": f"{HERE / 'throughput.py'}:flood",
        "metric": "score",
        "mode": "max",
        "config": {"seconds": seconds},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "threshold", "lower": -1.0},  # judges every step, never prunes
        "trials": TRIALS,
        "concurrency": TRIALS,
        "resources": {"cpu": 0.1},
    }
    store = Store.at(folder)
    started = time.monotonic()
    sweep = plan.prepare_spec(loading.validate(raw, "throughput"), "throughput")
    runner.run(sweep, store, console=Console(file=io.StringIO()))
    wall = time.monotonic() - started
    study = optuna.load_study(study_name="throughput", storage=store.optuna_url)
    in_study = sum(len(t.intermediate_values) for t in study.trials)
    return {"study": in_study, "mlflow": mlflow_rows(folder, "score"), "wall": wall}


def ray_tune(seconds: float, folder: str) -> dict[str, float]:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict) -> None:
        deadline = time.monotonic() + seconds
        step = 0
        while time.monotonic() < deadline:
            step += 1
            tune.report({"score": config["x"] * step})

    search = OptunaSearch(
        space={"x": optuna.distributions.FloatDistribution(0, 1)},
        metric="score",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    mlflow = MLflowLoggerCallback(tracking_uri=f"sqlite:///{folder}/mlflow.db", experiment_name="throughput")
    started = time.monotonic()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=TRIALS, max_concurrent_trials=TRIALS),
        run_config=tune.RunConfig(storage_path=folder, name="throughput", verbose=0, callbacks=[mlflow]),
    ).fit()
    wall = time.monotonic() - started
    return {"study": float("nan"), "mlflow": mlflow_rows(folder, "score"), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.driver.ray_start import ensure_ray

    ensure_ray()
    rows = {}
    for name, run in (("Ray Tune + OptunaSearch + MLflowLoggerCallback", ray_tune), ("hpsearch", hpsearch)):
        with tempfile.TemporaryDirectory() as tmp:
            rows[name] = run(args.seconds, tmp)
        print(f"{name}: {rows[name]}", flush=True)
    base = rows["Ray Tune + OptunaSearch + MLflowLoggerCallback"]["mlflow"]
    print(f"\n{TRIALS} trials reporting for {args.seconds:.0f} s each\n")
    print("| driver | steps in the study | steps in MLflow | per second of reporting | wall s | ratio |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        study = "-" if r["study"] != r["study"] else f"{r['study']:,.0f}"
        print(
            f"| {name} | {study} | {r['mlflow']:,} | {r['mlflow'] / args.seconds:,.0f} | {r['wall']:.0f} "
            f"| {r['mlflow'] / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
