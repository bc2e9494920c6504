"""How fast a run's metric values reach MLflow's SQL store: MlflowClient.log_batch (1,000 a call, MLflow's
limit) against search/stores/metric_rows.py's bulk rows, one after the other in this process, each on a fresh
SQLite store, the same values.

    python benchmarks/metric_rows.py [--steps 2000] [--metrics 100]

Prints values a second for each and the ratio (bulk / log_batch). A trial that reported 10,000 steps of
100 metrics waited about 180 s for log_batch after it trained.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from search.stores.metric_rows import bulk_writer


def in_batches(client: MlflowClient):
    def write(run_id: str, metrics: list[Metric]) -> None:
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])

    return write


def timed(write, run_id: str, values: list[Metric]) -> float:
    started = time.perf_counter()
    write(run_id, values)
    return len(values) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--metrics", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    values = [Metric(f"m{k}", s * 0.001 * k, 1_000 + s, s) for s in range(args.steps) for k in range(args.metrics)]
    rates = {}
    for way in ("log_batch", "bulk"):
        with tempfile.TemporaryDirectory() as tmp:
            client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
            run_id = client.create_run(client.create_experiment("rate")).info.run_id

            write = bulk_writer(client) if way == "bulk" else in_batches(client)
            rates[way] = timed(write, run_id, values)
            print(f"{way:>9}: {rates[way]:>9,.0f} values a second ({len(values):,} values)", flush=True)
    print(f"ratio bulk / log_batch: {rates['bulk'] / rates['log_batch']:.1f}x")


if __name__ == "__main__":
    main()
