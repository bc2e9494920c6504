"""The fault campaign: SIGKILL the driver (or fill the store's disk, or interrupt it: Ctrl-C to its process
group as a terminal sends it, SIGTERM to the driver) at points chosen by the stores' state, resume, audit
both stores.

    python benchmarks/faults.py [--quick]

Each fault point is a predicate on the study and the MLflow runs (not a sleep), so the same moment is hit
on a fast or a slow machine. For each: a fresh store, `hpsearch run` in its own process group, the fault
the moment the predicate holds (SIGKILL of the whole group; or, for "disk full", the store's disk filled
until the driver stops, then space freed: the store is on a small tmpfs, so this one needs root), then
`hpsearch resume` and an audit. Every loss column must read zero:

- lost: trials finished before the kill that are not finished after it, or whose MLflow run changed
- running: study trials or MLflow runs left RUNNING
- duplicates: more than one MLflow run for one trial (and seed)
- disagree: MLflow runs whose status is not the one their study trial's state maps to
- short: configurations the sweep asked for that did not finish

An interrupt must also end the driver by itself, with exit 130 (Ctrl-C) or 143 (SIGTERM), one
``interrupted:`` line and no traceback (column ``clean``); its stopped trials are FAIL in the study with
``stopped: interrupted`` (or ``Ray's head lost``, closed by the driver as its Ray went away) and KILLED in
MLflow, which the audit counts as agreeing.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.names import HEAD_LOST

ROOT = Path(__file__).resolve().parent.parent
AGREES = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


@dataclass
class Snapshot:
    trials: list[optuna.trial.FrozenTrial]
    runs: list  # MLflow runs of the sweep's experiment
    archives: list[optuna.Study]  # the studies `run --new` kept (NAME@TIME)


def snapshot(store: Path, name: str) -> Snapshot | None:
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{store / 'optuna.db'}")
        client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        storage = study._storage
        archives = [
            optuna.load_study(study_name=a.study_name, storage=storage)
            for a in optuna.get_all_study_summaries(storage)
            if a.study_name.startswith(f"{name}@")
        ]
        return Snapshot(study.get_trials(deepcopy=False), runs, archives)
    except Exception:  # the stores are still being created
        return None


def children(s: Snapshot) -> list:
    return [r for r in s.runs if "mlflow.parentRunId" in r.data.tags]


def reports(s: Snapshot) -> int:
    return sum(len(t.intermediate_values) for t in s.trials)


def finished(s: Snapshot) -> list[optuna.trial.FrozenTrial]:
    return [t for t in s.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


# Kill points: (name, space overrides, predicate on a snapshot)
KILL_POINTS: list[tuple[str, dict, Callable[[Snapshot], bool]]] = [
    ("parent run created", {}, lambda s: any("mlflow.parentRunId" not in r.data.tags for r in s.runs)),
    ("first report", {}, lambda s: any(t.intermediate_values for t in s.trials)),
    ("1 trial finished", {}, lambda s: len(finished(s)) >= 1),
    ("3 trials finished", {}, lambda s: len(finished(s)) >= 3),
    (
        "a seed finished, its configuration not told",
        {"repeats": 2, "trials": 3},
        lambda s: any(
            r.info.status == "FINISHED"
            and r.data.tags.get("optuna.trial_number")
            in {str(t.number) for t in s.trials if t.state == TrialState.RUNNING}
            for r in children(s)
        ),
    ),
    (
        "last trial running",
        {},
        lambda s: len(finished(s)) >= 4 and any(t.state == TrialState.RUNNING for t in s.trials),
    ),
    ("a fused group's first report", {"fuse": 2, "trials": 4}, lambda s: any(t.intermediate_values for t in s.trials)),
    (
        "a trade-off sweep with Pareto pruning, 1 trial finished",
        {
            "trainable": "tradeoff",
            "metric": ["accuracy", "cost"],
            "mode": ["max", "min"],
            "pruner": {"name": "pareto"},
            "config": {"steps": 6, "sleep": 0.2},
        },
        lambda s: len(finished(s)) >= 1,
    ),
    ("`resume` killed at its first report", {}, lambda s: len(finished(s)) >= 1),
    ("`run --new` killed at its first report", {}, lambda s: any(t.intermediate_values for t in s.trials)),
    (DISK_FULL := "disk full, 1 trial finished", {}, lambda s: len(finished(s)) >= 1),
]
# A second kill: after the first, this command runs and is killed in turn when its predicate holds; then resume
AGAIN: dict[str, tuple[list[str], Callable[[Snapshot, Snapshot], bool]]] = {
    "`resume` killed at its first report": (
        ["resume", "faults"],
        lambda s, first: reports(s) > reports(first),
    ),
    "`run --new` killed at its first report": (
        ["run", "SPACE", "--new"],  # the study is a fresh one: any report is its own
        lambda s, first: bool(s.archives) and any(t.intermediate_values for t in s.trials),
    ),
}
STOP_FOR_S = 90.0  # SIGSTOP of the driver, then SIGCONT: its trials go on in Ray's workers meanwhile
# Interrupt points: (name, signal, predicate on a snapshot, or seconds after the start for None)
INTERRUPT_POINTS: list[tuple[str, int, Callable[[Snapshot], bool] | float]] = [
    ("Ctrl-C during start-up (0.5 s)", signal.SIGINT, 0.5),
    ("SIGTERM during Ray's start (3 s)", signal.SIGTERM, 3.0),
    ("Ctrl-C once the study exists, before a trial reports", signal.SIGINT, lambda s: True),
    ("SIGTERM at the parent run, before a trial reports", signal.SIGTERM, KILL_POINTS[0][2]),
    ("Ctrl-C at the first report", signal.SIGINT, KILL_POINTS[1][2]),
    ("SIGTERM with 1 trial finished", signal.SIGTERM, KILL_POINTS[2][2]),
    # not a signal to the driver: its MLflow writer process killed; the driver must stop in one line (exit 1)
    (WRITER := "the MLflow writer killed at the first report", signal.SIGKILL, KILL_POINTS[1][2]),
    # the same as the sweep is set up: the study exists, no parent run yet
    (EARLY_WRITER := "the MLflow writer killed at set-up, as the study appears", signal.SIGKILL, lambda s: True),
    # Ray's head (its GCS server) killed: the driver must stop in one line (exit 1), the stores left for resume
    (GCS := "Ray's GCS killed at the first report", signal.SIGKILL, KILL_POINTS[1][2]),
    # the sweep on a warm Ray (hpsearch up), which `hpsearch down` stops: one line within seconds (exit 1)
    (WARM := "the warm Ray stopped by hpsearch down at the first report", signal.SIGKILL, KILL_POINTS[1][2]),
    # SIGSTOP of the driver at the first report, SIGCONT STOP_FOR_S later: the sweep must finish by itself
    (STOPPED := "the driver stopped (SIGSTOP) at the first report, then continued", signal.SIGSTOP, KILL_POINTS[1][2]),
]
# A process of the sweep killed, not the driver: what its command line holds, and the driver's one line
CHILD_KILLS = {
    WRITER: ("search.stores.mlflow_writer", "error: the MLflow writer process ended"),
    EARLY_WRITER: ("search.stores.mlflow_writer", "error: the MLflow writer process ended"),
    GCS: ("gcs_server", "error: Ray's head"),
    WARM: ("", "error: Ray's head died mid-sweep (the warm Ray at"),
}
QUICK = {
    "first report",
    "1 trial finished",
    "a seed finished, its configuration not told",
    "Ctrl-C at the first report",
}


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def space(name: str, overrides: dict) -> dict:
    return {
        "name": name,
        "trainable": "flaky",
        "config": {"steps": 6, "sleep": 0.2},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"name": "random", "seed": 1},
        "trials": 5,
        "concurrency": 2,
        **overrides,
    }


def campaign_point(
    work: Path, name: str, overrides: dict, predicate: Callable[[Snapshot], bool] | float, sig: int | None = None
) -> dict:
    store, path = work / "store", work / "space.yaml"
    spec = space("faults", overrides)
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "HPSEARCH_TRAINABLES": str(ROOT / "tests" / "plugins" / "flaky.py")}
    cmd = [sys.executable, "-m", "search.commands.cli"]
    if name == WARM:  # a warm Ray of the point's own
        env["HPSEARCH_CACHE"] = str(work / "cache")
        subprocess.run([*cmd, "up", "--cpus", "2"], env=env, cwd=ROOT, capture_output=True, check=True)
    output = work / "driver.log"
    with output.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "run", str(path), "--store", str(store)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    hit = False
    started = time.monotonic()
    deadline = started + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if isinstance(predicate, float):
            if time.monotonic() - started >= predicate:
                hit = True
                break
        elif (s := snapshot(store, "faults")) is not None and predicate(s):
            hit = True
            break
        time.sleep(0.05 if sig is not None else 0.1)
    clean = "-"
    if sig is not None and proc.poll() is None:  # Ctrl-C reaches the whole group; SIGTERM the driver alone
        if name == STOPPED:
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(STOP_FOR_S)
            os.kill(proc.pid, signal.SIGCONT)
        elif name == WARM:
            subprocess.run([*cmd, "down"], env=env, cwd=ROOT, capture_output=True)
        elif name in CHILD_KILLS:
            import psutil

            for child in psutil.Process(proc.pid).children(recursive=True):
                if CHILD_KILLS[name][0] in " ".join(child.cmdline()):
                    child.kill()
        else:
            os.killpg(proc.pid, sig) if sig == signal.SIGINT else os.kill(proc.pid, sig)
        try:
            rc = proc.wait(timeout=120)
            text = output.read_text(errors="replace")
            said = CHILD_KILLS[name][1] if name in CHILD_KILLS else "interrupted:"
            one_line = text.count(said) == 1 and "Traceback" not in text
            if name == STOPPED:  # not an error: the sweep goes on and ends as it would have
                one_line, said = "Traceback" not in text and "error:" not in text, None
            wanted = 0 if name == STOPPED else 1 if name in CHILD_KILLS else 128 + sig
            clean = "yes" if rc == wanted and one_line else f"no (exit {rc})"
            if clean != "yes":
                print(f"{name}: the driver's last lines:\n" + "\n".join(text.splitlines()[-15:]), flush=True)
        except subprocess.TimeoutExpired:
            clean = "no (still running after 120 s)"
    if name == DISK_FULL:  # the driver must stop by itself, with one line; then there is space again
        fill(work)
        try:
            proc.wait(timeout=120)
        finally:
            (work / "filler").unlink(missing_ok=True)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the driver stopped by itself (disk full), and its Ray processes with it
        pass
    run_rc = proc.wait()
    if name in AGAIN:  # the command that repairs it, killed in turn
        again, holds = AGAIN[name]
        first = snapshot(store, "faults")
        again = [str(path) if a == "SPACE" else a for a in again]
        with output.open("ab") as log:
            proc = subprocess.Popen(
                [*cmd, *again, "--store", str(store)],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        hit = False
        while time.monotonic() < deadline and proc.poll() is None:
            if (s := snapshot(store, "faults")) is not None and holds(s, first):
                hit = True
                break
            time.sleep(0.05)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    before = snapshot(store, "faults")
    done_before = {t.number: t.user_attrs.get("mlflow_run_id") for t in finished(before)} if before else {}
    # an interrupt before anything was recorded leaves nothing to resume: the sweep is run again instead
    follow = ["resume", "faults"] if before is not None and before.runs else ["run", str(path)]
    if name == STOPPED:  # it finished by itself: nothing to resume
        follow = ["nothing"]
    else:
        resumed = subprocess.run([*cmd, *follow, "--store", str(store)], env=env, cwd=ROOT, capture_output=True)
    after = snapshot(store, "faults")
    states = {str(t.number): t.state for t in after.trials}
    by_number = {t.number: t for t in after.trials}
    lost = sum(
        1
        for n, run_id in done_before.items()
        if by_number[n].state not in (TrialState.COMPLETE, TrialState.PRUNED)
        or by_number[n].user_attrs.get("mlflow_run_id") != run_id
    )
    # the runs of this study's parent runs (after `run --new`, the archived study's runs share trial numbers)
    parents = {t.user_attrs.get("mlflow_parent_run_id") for t in after.trials}
    ours = [r for r in children(after) if r.data.tags.get("mlflow.parentRunId") in parents]
    keys = collections.Counter((r.data.tags.get("optuna.trial_number"), r.data.tags.get("repeat")) for r in ours)
    stopped = {str(t.number) for t in after.trials if t.user_attrs.get("stopped") in ("interrupted", HEAD_LOST)}
    rerun = sum(1 for t in after.trials if "rerun_of" in t.user_attrs)
    disagree = sum(
        1
        for r in ours
        if states.get(r.data.tags.get("optuna.trial_number")) in AGREES
        and r.info.status != AGREES[states[r.data.tags["optuna.trial_number"]]]
        and not (r.info.status == "KILLED" and r.data.tags.get("optuna.trial_number") in stopped)
    )
    # what `run --new` archived must be closed too (trials a dead driver left RUNNING are FAIL there)
    archived_running = sum(t.state == TrialState.RUNNING for a in after.archives for t in a.trials)
    return {
        "fault point": name,
        "hit": "yes" if hit else "no (run ended first)",
        "clean": clean,
        "run rc": run_rc,
        "then": follow[0],
        "resume rc": "-" if name == STOPPED else resumed.returncode,
        "lost": lost,
        "running": sum(t.state == TrialState.RUNNING for t in after.trials)
        + sum(r.info.status == "RUNNING" for r in after.runs)
        + archived_running,
        "duplicates": sum(n - 1 for n in keys.values()),
        "disagree": disagree,
        "short": max(0, spec["trials"] - len(finished(after))),
        "rerun": rerun,
    }


UP = "`hpsearch up` interrupted (Ctrl-C) as its Ray starts"


def up_interrupted(work: Path) -> dict:
    """Not a sweep: `hpsearch up` gets Ctrl-C once its state file names Ray's process group; it must end in one
    line (exit 130) with none of Ray's processes left, and a later `up` and `down` must work."""
    import psutil

    env = {**os.environ, "HPSEARCH_CACHE": str(work / "cache")}
    cmd = [sys.executable, "-m", "search.commands.cli"]
    proc = subprocess.Popen([*cmd, "up", "--cpus", "1"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (work / "cache" / "warm-ray.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    hit = proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=120)
    text = proc.stdout.read()

    def left() -> int:
        found = 0
        for p in psutil.process_iter(["pid", "name"]):
            try:
                if p.info["name"] in ("gcs_server", "raylet") and str(work / "cache") in open(
                    f"/proc/{p.info['pid']}/environ", errors="replace"
                ).read():
                    found += 1
            except OSError:
                pass
        return found

    running = left()
    again = subprocess.run([*cmd, "up", "--cpus", "1"], env=env, cwd=ROOT, capture_output=True)
    down = subprocess.run([*cmd, "down"], env=env, cwd=ROOT, capture_output=True, text=True)
    one_line = text.count("interrupted:") == 1 and "Traceback" not in text
    return {
        "fault point": UP, "hit": "yes" if hit else "no (up ended first)",
        "clean": "yes" if rc == 130 and one_line else f"no (exit {rc})", "run rc": rc, "then": "up, down",
        "resume rc": max(again.returncode, down.returncode), "lost": 0, "running": running + left(),
        "duplicates": 0, "disagree": 0, "short": 0 if "is stopped" in down.stdout else 1, "rerun": 0,
    }  # fmt: skip


def mount_small_disk(folder: Path) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(folder)]).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only: {', '.join(sorted(QUICK))}")
    parser.add_argument("--only", help="only the fault points whose name holds this text")
    args = parser.parse_args()
    rows = []
    points = [(name, overrides, predicate, None) for name, overrides, predicate in KILL_POINTS]
    points += [(name, {}, predicate, sig) for name, sig, predicate in INTERRUPT_POINTS]
    points += [(UP, {}, None, None)]
    for name, overrides, predicate, sig in points:
        if (args.quick and name not in QUICK) or (args.only and args.only not in name):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            if name == DISK_FULL and not mount_small_disk(Path(tmp)):
                print(f"{name}: skipped (mounting a small tmpfs needs root)", flush=True)
                continue
            try:
                if name == UP:
                    row = up_interrupted(Path(tmp))
                else:
                    row = campaign_point(Path(tmp), name, overrides, predicate, sig)
            finally:
                if name == DISK_FULL:
                    subprocess.run(["umount", "-l", tmp])
            row["s"] = f"{time.monotonic() - started:.0f}"
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    header = list(rows[0])
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")
    totals = {k: sum(r[k] for r in rows) for k in ("lost", "running", "duplicates", "disagree", "short")}
    print(f"configurations run again by resume: {sum(r['rerun'] for r in rows)}")
    print(f"\nfault points tried: {len(rows)}, hit: {sum(r['hit'] == 'yes' for r in rows)}; totals: {totals}")
    unclean = [r["fault point"] for r in rows if r["clean"] not in ("-", "yes")]
    if unclean:
        print(f"interrupts that did not end in one line with their exit code: {', '.join(unclean)}")
    if any(totals.values()) or unclean:
        sys.exit(1)


if __name__ == "__main__":
    main()
