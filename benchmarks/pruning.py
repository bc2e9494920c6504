"""Pruning benchmark: the addition learning-rate sweep four ways, as ratios against random search.

    (a) TPE + median pruning through hpsearch's Optuna bridge
    (b) TPE, no pruning
    (c) random search, no pruning            <- the baseline every ratio is against
    (d) Ray Tune's stock OptunaSearch (TPE) + ASHA

Same space, trial count and sampler seed for all four; median over sweep seeds. Each variant prints the
total epochs trained, the wall time, the best exact match, and the epochs and seconds (all trials
together) until the first trial reached 100%.

    python benchmarks/pruning.py            # 3 seeds x 16 trials (about 15 minutes on 2 cores)
    python benchmarks/pruning.py --quick    # 1 seed x 8 trials (about 3 minutes)
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import tempfile
import time
from dataclasses import dataclass

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from rich.console import Console

from search.driver import plan, ray_start, runner
from search.driver.ray_session import trial_function
from search.space import samplers
from search.space import spec as spec_mod
from search.stores.store import Store

METRIC = "exact_match"


LR_RANGE = [1e-5, 1e-1]  # addition-lr's range; --lr-range widens it


def space(seed: int, trials: int, epochs: int, sampler: str, pruner: dict) -> dict:
    return {
        "name": "bench-addition-lr",
        "trainable": "addition-cnn",
        "metric": METRIC,
        "mode": "max",
        "config": {"epochs": epochs, "embed_dim": 16, "conv_layers": 2, "channels": 32, "stop_at_exact_match": 1.0},
        "space": {"lr": {"type": "float", "low": LR_RANGE[0], "high": LR_RANGE[1], "log": True}},
        "sampler": {"name": sampler, "seed": seed} | ({"n_startup_trials": 5} if sampler == "tpe" else {}),
        "pruner": pruner,
        "trials": trials,
        "concurrency": 2,
    }


class Recorder(tune.Callback):
    """Every reported epoch of every trial, with the time since the sweep began."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, float]] = []
        self.t0 = 0.0

    def setup(self, **info) -> None:
        self.t0 = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.events.append((time.monotonic() - self.t0, trial.trial_id, float(result.get(METRIC, math.nan))))


@dataclass
class Figures:
    epochs: float
    wall_s: float
    best: float
    epochs_to_100: float
    seconds_to_100: float


def figures(rec: Recorder, wall_s: float) -> Figures:
    events = sorted(rec.events)
    first = next((i for i, e in enumerate(events) if e[2] >= 1.0), None)
    return Figures(
        epochs=len(events),
        wall_s=wall_s,
        best=max((e[2] for e in events), default=math.nan),
        epochs_to_100=first + 1 if first is not None else math.inf,
        seconds_to_100=events[first][0] if first is not None else math.inf,
    )


def run_hpsearch(raw: dict) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/space.yaml"
        import yaml

        with open(path, "w") as f:
            yaml.safe_dump(raw, f)
        rec = Recorder()
        t = time.monotonic()
        runner.run(plan.prepare(path), Store.at(f"{tmp}/store"), console=Console(file=io.StringIO()), callbacks=[rec])
        return figures(rec, time.monotonic() - t)


def run_stock_ray(raw: dict) -> Figures:
    """Ray's own Optuna integration + ASHA, on the very same trainable function."""
    spec = spec_mod.SweepSpec.model_validate(raw)
    epochs = raw["config"]["epochs"]
    searcher = OptunaSearch(
        space=samplers.distributions(spec),
        metric=METRIC,
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=raw["sampler"]["seed"], n_startup_trials=5),
    )
    # OptunaSearch suggests only the searched values; the fixed config rides along as param_space.
    rec = Recorder()
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            tune.with_resources(
                trial_function("addition-cnn", "exact_match", "max", "best", 1, 0, None, None), {"cpu": 1}
            ),
            param_space=dict(raw["config"]),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=ASHAScheduler(metric=METRIC, mode="max", max_t=epochs, grace_period=3, reduction_factor=3),
                num_samples=raw["trials"],
                max_concurrent_trials=2,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0, callbacks=[rec]),
        )
        t = time.monotonic()
        tuner.fit()
        return figures(rec, time.monotonic() - t)


VARIANTS = {
    "(a) TPE + median pruning (hpsearch bridge)": lambda s, n, e: run_hpsearch(
        space(s, n, e, "tpe", {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2})
    ),
    "(b) TPE, no pruning": lambda s, n, e: run_hpsearch(space(s, n, e, "tpe", {"name": "none"})),
    "(c) random, no pruning": lambda s, n, e: run_hpsearch(space(s, n, e, "random", {"name": "none"})),
    "(d) Ray OptunaSearch + ASHA": lambda s, n, e: run_stock_ray(space(s, n, e, "tpe", {"name": "none"})),
}


def ratio(x: float, base: float) -> float:
    if math.isinf(x) and math.isinf(base):
        return math.nan
    return x / base if base else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed x 8 trials x 20 epochs")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr-range", type=float, nargs=2, default=LR_RANGE, metavar=("LOW", "HIGH"))
    args = ap.parse_args()
    LR_RANGE[:] = args.lr_range
    seeds = args.seeds or (1 if args.quick else 3)
    trials = args.trials or (8 if args.quick else 16)
    epochs = args.epochs or (20 if args.quick else 30)

    ray_start.ensure_ray()
    results: dict[str, list[Figures]] = {name: [] for name in VARIANTS}
    for seed in range(seeds):
        for name, fn in VARIANTS.items():
            f = fn(seed, trials, epochs)
            results[name].append(f)
            print(
                f"seed {seed} {name}: epochs {f.epochs:.0f}, wall {f.wall_s:.1f}s, best {f.best:.4f}, "
                f"to 100%: {f.epochs_to_100} epochs / {f.seconds_to_100:.1f}s",
                flush=True,
            )

    base = results["(c) random, no pruning"]
    print(
        f"\naddition-lr sweep, lr log-uniform {LR_RANGE[0]:g}..{LR_RANGE[1]:g}, {trials} trials x up to {epochs}"
        f" epochs, 2 at a time; median over {seeds} seed(s);"
    )
    print("each cell: median value (median ratio to (c) random search)\n")
    cols = [
        ("total epochs", "epochs", "{:.0f}"),
        ("wall s", "wall_s", "{:.1f}"),
        ("best exact", "best", "{:.4f}"),
        ("epochs to 100%", "epochs_to_100", "{:.0f}"),
        ("s to 100%", "seconds_to_100", "{:.1f}"),
    ]
    print("| variant | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, runs in results.items():
        cells = []
        for _, attr, fmt in cols:
            values = [getattr(r, attr) for r in runs]
            ratios = [ratio(getattr(r, attr), getattr(b, attr)) for r, b in zip(runs, base)]
            cells.append(f"{fmt.format(statistics.median(values))} ({statistics.median(ratios):.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    a = statistics.median(ratio(r.epochs_to_100, b.epochs_to_100) for r, b in zip(results[next(iter(VARIANTS))], base))
    verdict = "met" if a <= 1 / 3 else "NOT met"
    print(f"\ntarget: (a) reaches a 100% trial with at most 1/3 of (c)'s epochs -> {a:.2f}x: {verdict}")


if __name__ == "__main__":
    main()
