"""How long the commands a user types most take to answer, against Optuna's own CLI on the same store, in
one command (the anchor is measured in the same run, so a busy machine slows both alike).

Each command runs as a fresh process (as a user's does) REPEATS times; the table shows the median wall
time and its ratio to ``optuna studies`` on the same store. The store is made first by one small sweep.
Last, a 1-trial no-op sweep on a new store, starting its own Ray and on a warm one (``hpsearch up``).

    python benchmarks/latency.py              # 5 runs of each
    python benchmarks/latency.py --repeats 3
    python benchmarks/latency.py --load 2 --commands-only   # the commands beside two busy loops
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SPACE = """name: latency
trainable: {noop}
metric: score
mode: max
space: {{x: {{type: float, low: 0.0, high: 1.0}}}}
trials: 3
"""
BAD = """name: bad
trainable: addition-cnn
space: {{heads: {{type: int, low: 1, high: 4}}}}
"""


def timed(cmd: list[str], expect: int = 0, cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    took = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes running throughout")
    parser.add_argument("--commands-only", action="store_true", help="leave out the 1-trial sweeps")
    args = parser.parse_args()
    from overhead import spin  # the same fixed load as the driver benchmark's

    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for p in busy:
        p.start()
    hp = [sys.executable, "-m", "search.commands.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = folder / "store"
        space = folder / "latency.yaml"
        space.write_text(SPACE.format(noop=f"{HERE / 'noop.py'}:train"))
        bad = folder / "bad.yaml"
        bad.write_text(BAD.format())
        sweep_s = timed([*hp, "run", str(space), "--store", str(store)], cwd=ROOT)
        storage = f"sqlite:///{store / 'optuna.db'}"
        optuna_cli = str(Path(sys.executable).parent / "optuna")  # Optuna's own command, beside this Python
        commands = {
            "optuna studies (the anchor)": ([optuna_cli, "studies", "--storage", storage], 0),
            "hpsearch --help": ([*hp, "--help"], 0),
            "hpsearch list": ([*hp, "list"], 0),
            "hpsearch sweeps": ([*hp, "sweeps", "--store", str(store)], 0),
            "hpsearch best": ([*hp, "best", "latency", "--store", str(store)], 0),
            "hpsearch compare": ([*hp, "compare", "latency", "--store", str(store)], 0),
            "refusal: unknown hyperparameter": ([*hp, "run", str(bad), "--store", str(folder / "s2")], 2),
            "refusal: missing file": ([*hp, "run", str(folder / "nope.yaml"), "--store", str(folder / "s3")], 2),
        }
        rows = []
        for name, (cmd, expect) in commands.items():
            times = [timed(cmd, expect, cwd=ROOT) for _ in range(args.repeats)]
            rows.append((name, statistics.median(times)))
        one = folder / "one.yaml"
        one.write_text(SPACE.format(noop=f"{HERE / 'noop.py'}:train").replace("trials: 3", "trials: 1"))

        def one_trial_sweeps() -> float:
            stores = [folder / f"one-{time.monotonic_ns()}" for _ in range(args.repeats)]
            return statistics.median(timed([*hp, "run", str(one), "--store", str(s)], cwd=ROOT) for s in stores)

        if not args.commands_only:
            rows.append(("a 1-trial no-op sweep, its own Ray", one_trial_sweeps()))
            os.environ["HPSEARCH_CACHE"] = str(folder / "cache")  # this benchmark's warm Ray, not the user's
            timed([*hp, "up"], cwd=ROOT)
            try:
                rows.append(("a 1-trial no-op sweep, on a warm Ray (hpsearch up)", one_trial_sweeps()))
            finally:
                timed([*hp, "down"], cwd=ROOT)
    for p in busy:
        p.terminate()
    anchor = rows[0][1]
    print(f"a 3-trial no-op sweep (made the store): {sweep_s:.1f} s; {args.load} busy-loop process(es) running")
    print(f"| command | median of {args.repeats} (s) | vs optuna studies |")
    print("|---|---|---|")
    for name, median in rows:
        print(f"| {name} | {median:.2f} | {median / anchor:.2f}x |")


if __name__ == "__main__":
    main()
