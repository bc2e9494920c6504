"""A user's own training script swept by plain Optuna and by hpsearch, one after the other, in one command.

Two scripts. ``lightning`` is benchmarks/lit_model.py (a LightningModule and a DataModule on generated data;
space lr, hidden, dropout); plain Optuna prunes it with ``PyTorchLightningPruningCallback``, hpsearch runs
the file's ``train`` (the shipped ``trainables.lightning.ReportCallback``). ``pytorch`` is the built-in
addition CNN in plain PyTorch (space lr, weight_decay); plain Optuna calls it as a function whose session
reports to the Optuna trial, hpsearch runs ``addition-cnn``. Both sweeps: 12 trials of 8 epochs, 2 at a
time, TPE with seed 0, median pruning (Optuna's defaults). Plain Optuna runs
``study.optimize(objective, n_trials=12, n_jobs=2)`` on SQLite; hpsearch runs ``hpsearch run`` on a space
file. Each is a fresh process from the shell, its imports included, as a user would run it; the wall time is
the ratio's. The Lightning script needs ``pip install lightning optuna-integration`` (the ``bench`` extra).

    python benchmarks/framework.py                    # the Lightning script, each once, plain Optuna first
    python benchmarks/framework.py --script pytorch   # the addition CNN
    python benchmarks/framework.py --repeats 3        # alternating which goes first
    python benchmarks/framework.py --load 2           # with two busy-loop processes running throughout
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRIALS, CONCURRENCY = 12, 2

OPTUNA = f"""
import sys, optuna
sys.path.insert(0, {str(HERE)!r})
sys.path.insert(0, {str(ROOT)!r})
import framework
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(
    study_name="bench", storage="sqlite:///" + sys.argv[1] + "/optuna.db", direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=0), pruner=optuna.pruners.MedianPruner(),
)
study.optimize(framework.OBJECTIVES[sys.argv[2]], n_trials={TRIALS}, n_jobs={CONCURRENCY})
"""

SPACES = {
    "lightning": f"""name: bench
trainable: {HERE / "lit_model.py"}:train
metric: valid_accuracy
mode: max
space:
  lr: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
  hidden: {{type: int, low: 16, high: 128, log: true}}
  dropout: {{type: float, low: 0.0, high: 0.5}}
""",
    "pytorch": """name: bench
trainable: addition-cnn
config: {epochs: 8, channels: 16, batch_size: 256}
space:
  lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  weight_decay: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
""",
}
COMMON = f"""sampler: {{name: tpe, seed: 0}}
pruner: {{name: median}}
trials: {TRIALS}
concurrency: {CONCURRENCY}
"""
ADDITION = {"epochs": 8, "channels": 16, "batch_size": 256}


def lightning_objective(trial) -> float:  # noqa: ANN001 - an optuna.Trial
    import lit_model

    return lit_model.objective(trial)


def pytorch_objective(trial) -> float:  # noqa: ANN001 - an optuna.Trial
    """The addition CNN as a function Optuna calls: its session reports each epoch to the trial."""
    import optuna

    from trainables.registry import get
    from trainables.session import LocalSession

    class ToOptuna(LocalSession):
        def report(self, step, metrics, checkpoint=None, final=False):  # noqa: ANN001
            super().report(step, metrics)
            trial.report(metrics["exact_match"], step)
            if not final and trial.should_prune():
                raise optuna.TrialPruned()

    config = {
        **ADDITION,
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True),
    }
    session = ToOptuna()
    get("addition-cnn").run(config, session)
    return session.last["exact_match"]


OBJECTIVES = {"lightning": lightning_objective, "pytorch": pytorch_objective}


def plain_optuna(folder: Path, script: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", OPTUNA, str(folder), script], capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"plain Optuna exited {done.returncode}:\n{done.stderr[-3000:]}")
    return took


def hpsearch(folder: Path, script: str) -> float:
    (folder / "bench.yaml").write_text(SPACES[script] + COMMON)
    cmd = [sys.executable, "-m", "search.commands.cli", "run", str(folder / "bench.yaml"), "--store", str(folder / "s")]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"hpsearch exited {done.returncode}:\n{done.stderr[-3000:]}")
    return took


def outcome(db: Path) -> str:
    """Trials by state and the best value, read from the study's SQLite file (the same for both)."""
    with sqlite3.connect(db) as c:
        states = dict(c.execute("select state, count(*) from trials group by state").fetchall())
        best = c.execute(
            "select max(v.value) from trial_values v join trials t using (trial_id) where t.state = 'COMPLETE'"
        ).fetchone()[0]
    return f"{states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} pruned, best {best:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=sorted(OBJECTIVES), default="lightning")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes running throughout")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from overhead import spin  # the same fixed load as the other benchmarks'

    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for p in busy:
        p.start()
    times: dict[str, list[float]] = {"plain Optuna": [], "hpsearch": []}
    runs = {"plain Optuna": (plain_optuna, "optuna.db"), "hpsearch": (hpsearch, "s/optuna.db")}
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                run, db = runs[name]
                took = run(Path(tmp), args.script)
                times[name].append(took)
                print(f"{name}: {took:.1f}s ({outcome(Path(tmp) / db)})", flush=True)
    anchor = statistics.median(times["plain Optuna"])
    print(f"\n{args.script}, {'idle' if not args.load else f'{args.load} busy loops'}, median of {args.repeats}\n")
    print("| sweep | wall s | ratio |\n|---|---|---|")
    for name, walls in times.items():
        wall = statistics.median(walls)
        print(f"| {name} | {wall:.1f} | {wall / anchor:.2f}x |")


if __name__ == "__main__":
    main()
