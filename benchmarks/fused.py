"""Fused-trials benchmark: the addition learning-rate sweep run as today and fused, in one command.

    (a) today: one Ray trial per configuration, 2 at a time, 1 CPU each   <- the baseline
    (b) fused: the same configurations in groups of --fuse (one stacked model per Ray trial), 2 at a time

Both sweep the same grid of log-spaced learning rates (--configs of them) for a fixed number of epochs
(no early stop), so both train exactly configs x epochs member-epochs. Printed: wall time, member-epochs
per second and its ratio against (a), and the largest difference between a configuration's exact match
in (b) and in (a) (its solo twin: same seed, same batches).

    python benchmarks/fused.py            # 32 configurations x 30 epochs, groups of 16 (about 4 minutes)
    python benchmarks/fused.py --quick    # 16 x 3, groups of 8 (about 1 minute)
    python benchmarks/fused.py --device cuda --gpu 0.25   # on a GPU: (a) packs 4 trials per GPU

Rounds (``rounds:``): the learning-rate discovery searched by TPE (log-uniform 1e-5 .. 1e-1, stop at 100%
exact match), fused in 2 groups at a time, once with every configuration asked at the start (two groups
of half the trials: TPE has learned nothing when it asks) and once per --rounds R (each round's trials
asked once the round before has ended), each for --seeds sampler seeds, on the same trial budget. Printed
per way: wall time, member-epochs trained (a member leaves at 100%), configurations that reached 100%,
the best exact match, means over the seeds.

    python benchmarks/fused.py --rounds 2 4 [--seeds 3]   # 32 trials x up to 30 epochs (about 15 minutes)
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time

import optuna
from optuna.trial import TrialState
from rich.console import Console

from search.driver import plan, ray_start, runner
from search.space import loading
from search.stores.store import Store


def space(configs: int, epochs: int, fuse: int, gpu: float) -> dict:
    lrs = [float(f"{10 ** (-4 + 3 * i / (configs - 1)):.6g}") for i in range(configs)]  # 1e-4 .. 1e-1
    return {
        "name": "bench-fused" if fuse > 1 else "bench-solo",
        "trainable": "addition-cnn",
        "metric": "exact_match",
        "mode": "max",
        "config": {"epochs": epochs, "embed_dim": 16, "conv_layers": 2, "channels": 32, "data_seed": 0},
        "space": {"lr": {"type": "categorical", "choices": lrs}},
        "sampler": {"name": "grid"},
        "concurrency": 2,
        "fuse": fuse,
        "resources": {"cpu": 1, "gpu": gpu},
    }


def tpe_space(trials: int, epochs: int, rounds: int | None, seed: int) -> dict:
    """addition-lr, fused: all at once (two groups of half the trials) or in rounds."""
    return {
        "name": f"bench-rounds-{rounds or 1}-{seed}",
        "trainable": "addition-cnn",
        "metric": "exact_match",
        "mode": "max",
        "config": {
            "epochs": epochs, "embed_dim": 16, "conv_layers": 2, "channels": 32, "batch_size": 128,
            "stop_at_exact_match": 1.0, "data_seed": 0,
        },
        "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
        "sampler": {"name": "tpe", "seed": seed, "n_startup_trials": 8},
        "trials": trials,
        "concurrency": 2,
        "fuse": math.ceil(trials / 2),  # without rounds: both groups asked at the start
        "resources": {"cpu": 1, "gpu": 0},
    } | ({"rounds": rounds} if rounds else {})  # fmt: skip


def compare_rounds(rounds: list[int], seeds: int, trials: int, epochs: int) -> None:
    ways: dict[str, list[tuple[float, int, int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            for r in (None, *rounds):
                raw = tpe_space(trials, epochs, r, seed)
                wall, _ = sweep(raw, store := Store.at(f"{tmp}/{raw['name']}"))
                study = optuna.load_study(study_name=raw["name"], storage=store.optuna_url)
                done = [t for t in study.trials if t.state == TrialState.COMPLETE]
                spent = sum(len(t.intermediate_values) for t in study.trials)
                exact = sum(t.value >= 1.0 for t in done)
                label = "all at once (2 groups)" if r is None else f"rounds: {r}"
                ways.setdefault(label, []).append((wall, spent, exact, max(t.value for t in done)))
                print(f"seed {seed} {label}: {wall:.1f} s, {spent} member-epochs, {exact} at 100%", flush=True)
    print(f"\n{trials} trials, up to {epochs} epochs each, 2 groups at a time; means over {seeds} sampler seed(s)")
    print("| asked | wall s | member-epochs | configurations at 100% | best exact match |")
    print("|---|---|---|---|---|")
    for label, runs in ways.items():
        wall, spent, exact, best = (sum(col) / len(runs) for col in zip(*runs, strict=True))
        print(f"| {label} | {wall:.1f} | {spent:.0f} | {exact:.1f} of {trials} | {best:.4f} |")


def sweep(raw: dict, store: Store) -> tuple[float, dict[float, float]]:
    """Wall time of the whole sweep, and each learning rate's final exact match."""
    spec = loading.validate(raw, raw["name"])
    prepared = plan.prepare_spec(spec, raw["name"])
    started = time.monotonic()
    runner.run(prepared, store, console=Console(file=io.StringIO()))
    wall = time.monotonic() - started
    study = optuna.load_study(study_name=raw["name"], storage=store.optuna_url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return wall, {t.params["lr"]: t.value for t in done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--configs", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fuse", type=int, default=16)
    parser.add_argument("--gpu", type=float, default=0.0, help="GPUs per Ray trial (0.25: four solo trials share one)")
    parser.add_argument("--rounds", type=int, nargs="+", help="compare asking in these many rounds with all at once")
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds per way (--rounds)")
    parser.add_argument("--trials", type=int, default=32, help="trials per sweep (--rounds)")
    args = parser.parse_args()
    if args.rounds:
        ray_start.ensure_ray()
        compare_rounds(args.rounds, args.seeds, args.trials, 3 if args.quick else args.epochs)
        return
    if args.quick:
        args.configs, args.epochs, args.fuse = 16, 3, 8
    ray_start.ensure_ray()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, fuse in (("today (1 trial per configuration)", 1), (f"fused (groups of {args.fuse})", args.fuse)):
            raw = space(args.configs, args.epochs, fuse, args.gpu)
            results[label] = sweep(raw, Store.at(f"{tmp}/{raw['name']}"))
    (base_label, (base_wall, solo)), (label, (wall, fused)) = results.items()
    member_epochs = args.configs * args.epochs
    diffs = sorted(abs(fused[lr] - solo[lr]) for lr in solo if lr in fused)
    diff = diffs[-1] if diffs else math.nan
    median = diffs[len(diffs) // 2] if diffs else math.nan
    print(
        f"\n{args.configs} configurations x {args.epochs} epochs = {member_epochs} member-epochs, "
        "2 Ray trials at a time"
    )
    print("| sweep | wall s | member-epochs/s | ratio | configurations finished |")
    print("|---|---|---|---|---|")
    for name, (w, values) in results.items():
        rate = member_epochs / w
        print(f"| {name} | {w:.1f} | {rate:.2f} | {rate / (member_epochs / base_wall):.2f}x | {len(values)} |")
    print(f"|exact_match fused - solo twin| over the configurations: largest {diff:.4f}, median {median:.4f}")
    print("(float32 rounding differs between stacked and single kernels and chaotic training amplifies it;")
    print(" in float64 a member follows its twin to ~1e-13: tests/test_fused.py)")


if __name__ == "__main__":
    main()
