"""One value a trial, everywhere a user sees it: a real sweep (its own terminal output), then the study,
MLflow, ``compare --format csv`` and ``best --format json`` read back. A pruned trial's value is its value
rule's (its best step under ``value: best``), not its last step's, as a complete trial's is."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.names import VALUE_STEP_TAG, VALUE_TAG

pytestmark = pytest.mark.slow

TRAINABLE = '''
import time

CURVES = {
    "rise": [0.60, 0.70, 0.80, 0.85],
    "slow": [0.55, 0.65, 0.75, 0.82],
    "late": [0.50, 0.60, 0.70, 0.79],
    "peak": [0.50, 0.7125, 0.30, 0.30],  # best at step 2 (0.7125, under the others by step 3: pruned there)
}


def train(config, session):
    if config["shape"] == "endless":  # a peak at step 2, then lower for as long as it is let run
        for step in range(1, 100_000):
            session.report(step, {"score": 0.875 if step == 2 else 0.25 + 0.5 / step})
            time.sleep(0.2)
    curve = CURVES[config["shape"]]
    for step, value in enumerate(curve, start=1):
        session.report(step, {"score": value}, final=step == len(curve))
        time.sleep(0.5)  # the pruner's word on a step reaches the trial before its next report
'''

SPACE = """name: one-value
trainable: ./curves.py:train
metric: score
mode: max
config: {shape: rise}
space: {shape: {type: categorical, choices: [rise, slow, late, peak]}}
sampler: {name: ofat}
pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 2}
concurrency: 1
"""


def hpsearch(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "search.commands.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=cwd)


def test_a_pruned_trial_shows_one_value_in_the_terminal_the_study_mlflow_compare_and_best(tmp_path):
    (tmp_path / "curves.py").write_text(TRAINABLE)
    (tmp_path / "one-value.yaml").write_text(SPACE)
    store = tmp_path / "store"
    ran = hpsearch("run", "one-value.yaml", "--store", str(store), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    study = optuna.load_study(study_name="one-value", storage=f"sqlite:///{store / 'optuna.db'}")
    by_shape = {t.params["shape"]: t for t in study.trials}
    peak = by_shape["peak"]
    assert peak.state == TrialState.PRUNED and peak.user_attrs["pruned_at_step"] == 3
    expected = {"rise": 0.85, "slow": 0.82, "late": 0.79, "peak": 0.7125}  # four values, no two alike
    assert {s: t.value for s, t in by_shape.items()} == expected
    assert peak.user_attrs["value_step"] == 2

    # the live line and the closing table
    out = ran.stderr  # the live lines and the closing table
    live = re.search(r"trial +(\d+) PRUNED +at step 3 score=(\S+)", out)
    assert live and int(live.group(1)) == peak.number and float(live.group(2)) == 0.7125, out
    row = re.search(rf"│ +{peak.number} │ PRUNED +│ +(\S+) +│", out)
    assert row and float(row.group(1)) == 0.7125, out

    # MLflow: the trial's run says the same value, with its step
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("one-value").experiment_id])
    children = {r.data.params["shape"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert {s: float(r.data.tags[VALUE_TAG]) for s, r in children.items()} == expected
    assert children["peak"].data.tags[VALUE_STEP_TAG] == "2" and children["peak"].info.status == "KILLED"

    # compare --format csv and best --format json
    compared = hpsearch("compare", "one-value", "--store", str(store), "--format", "csv", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    rows = list(csv.DictReader(io.StringIO(compared.stdout)))
    assert {r["shape"]: float(r["score"]) for r in rows} == expected, compared.stdout
    best = hpsearch("best", "one-value", "--store", str(store), "--format", "json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["value"] == 0.85  # a pruned trial is never the best, whatever its value


def everywhere(store, name: str, cwd) -> dict[int, dict[str, object]]:
    """Each trial's value as the study, its MLflow run (tag), compare --format csv and best --format json have
    it (None where a place shows none)."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{store / 'optuna.db'}")
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    tagged = {int(r.data.tags["optuna.trial_number"]): r.data.tags.get(VALUE_TAG) for r in runs
              if "optuna.trial_number" in r.data.tags}  # fmt: skip
    compared = hpsearch("compare", name, "--store", str(store), "--format", "csv", cwd=cwd)
    rows = {int(r["trial"]): r["score"] for r in csv.DictReader(io.StringIO(compared.stdout))}
    return {
        t.number: {
            "state": t.state,
            "study": t.value,
            "mlflow": None if tagged.get(t.number) is None else float(tagged[t.number]),
            "compare": float(rows[t.number]) if rows.get(t.number) else None,
        }
        for t in study.trials
    }


def test_a_trial_the_sweep_budget_stopped_shows_its_best_step_everywhere(tmp_path):
    (tmp_path / "curves.py").write_text(TRAINABLE)
    (tmp_path / "budget.yaml").write_text(
        SPACE.replace("name: one-value", "name: budget").replace("[rise, slow, late, peak]", "[rise, endless]")
        .replace("pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 2}\n", "budget: {sweep: 12s}\n")
    )
    store = tmp_path / "store"
    ran = hpsearch("run", "budget.yaml", "--store", str(store), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = everywhere(store, "budget", tmp_path)
    stopped = [v for v in seen.values() if v["state"] == TrialState.PRUNED]
    assert len(stopped) == 1, seen
    assert stopped[0]["study"] == stopped[0]["mlflow"] == stopped[0]["compare"] == 0.875  # its step 2, not its last
    row = re.search(r"│ +\d+ │ PRUNED +│ +(\S+) +│", ran.stderr)
    assert row and float(row.group(1)) == 0.875, ran.stderr[-3000:]


def test_an_interrupted_trial_shows_no_value_and_its_rerun_its_own_everywhere(tmp_path):
    (tmp_path / "curves.py").write_text(TRAINABLE)
    (tmp_path / "redo.yaml").write_text(
        SPACE.replace("name: one-value", "name: redo").replace("shape: rise", "shape: late")
        .replace("[rise, slow, late, peak]", "[late, peak]")
        .replace("pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 2}\n", "")
    )
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "search.commands.cli", "run", "redo.yaml", "--store", str(store)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:  # the first trial has reported a step: interrupt it there
        try:
            study = optuna.load_study(study_name="redo", storage=f"sqlite:///{store / 'optuna.db'}")
            if any(t.intermediate_values for t in study.trials):
                break
        except Exception:  # noqa: BLE001 - the store is still being made
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()[-3000:]
    resumed = hpsearch("resume", "redo", "--store", str(store), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    seen = everywhere(store, "redo", tmp_path)
    interrupted = [v for v in seen.values() if v["state"] == TrialState.FAIL]
    assert interrupted and all(v["study"] is v["mlflow"] is v["compare"] is None for v in interrupted), seen
    done = [v for v in seen.values() if v["state"] == TrialState.COMPLETE]
    assert sorted(v["study"] for v in done) == [0.7125, 0.79], seen  # each its best step, peak's too
    assert all(v["study"] == v["mlflow"] == v["compare"] for v in done), seen
