"""One value a trial, everywhere a user sees it: a real sweep (its own terminal output), then the study,
MLflow, ``compare --format csv`` and ``best --format json`` read back. A pruned trial's value is its value
rule's (its best step under ``value: best``), not its last step's, as a complete trial's is."""

import csv
import io
import json
import re
import subprocess
import sys

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
