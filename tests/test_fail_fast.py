"""A broken set-up stops early, with its reason: the bridge's fail-fast watch (``OptunaBridge.failing_fast``)
and a real sweep whose every trial raises the same error (``fail_fast:`` in the space file)."""

import subprocess
import sys
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.stores.store import Store


def bridge_on_sqlite(tmp_path, fail_fast: int) -> OptunaBridge:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    bridge = OptunaBridge(
        study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], ["max"], n_trials=20, fail_fast=fail_fast)
    )
    return bridge


def ends(bridge: OptunaBridge, tmp_path, trial_id: str, outcome: str) -> None:
    """One trial: raises ``outcome`` (an error line), completes ("ok"), or reports NaN ("nan")."""
    bridge.ask(trial_id)
    if outcome == "ok":
        bridge.report(trial_id, {"score": 0.5, "step": 1})
        bridge.complete(trial_id, None, error=False)
    elif outcome == "nan":
        bridge.report(trial_id, {"score": float("nan"), "step": 1})
        bridge.complete(trial_id, None, error=False)
    else:
        error = tmp_path / f"{trial_id}-error.txt"
        error.write_text(f"Traceback (most recent call last):\n  ...\n{outcome}\n")
        bridge.record_error(SimpleNamespace(trial_id=trial_id, error_file=str(error)))
        bridge.complete(trial_id, None, error=True)


KEY = "KeyError: 'momentum'"


@pytest.mark.parametrize(
    ("fail_fast", "outcomes", "stops_after"),
    [
        (3, [KEY, KEY, KEY, KEY], 3),  # the third alike failure stops it
        (2, [KEY, KEY, KEY], 2),
        (4, [KEY, KEY, KEY, KEY, KEY], 4),
        (3, [KEY, "ValueError: x", KEY, KEY], None),  # the first three differ: a trial's own failure, maybe
        (3, ["OOM: 2.0 GiB at x=0.1", "OOM: 4.5 GiB at x=0.7", "OOM: 1e3 GiB at x=3"], 3),  # alike, numbers aside
        (3, ["ok", KEY, KEY, KEY, KEY], None),  # one completed: the set-up works
        (3, [KEY, "nan", KEY, KEY], 4),  # a diverged trial raised nothing: it neither counts nor breaks the run
        (0, [KEY] * 6, None),  # 0: never
    ],
)
def test_the_first_trials_failing_alike_stop_the_sweep(tmp_path, fail_fast, outcomes, stops_after):
    bridge = bridge_on_sqlite(tmp_path, fail_fast)
    stopped_at = None
    for i, outcome in enumerate(outcomes, 1):
        ends(bridge, tmp_path, f"t{i}", outcome)
        if bridge.failing_fast is not None and stopped_at is None:
            stopped_at = i
    assert stopped_at == stops_after
    if stops_after is not None:
        assert bridge.failing_fast == outcomes[0]


@pytest.mark.slow
@pytest.mark.campaign
def test_a_sweep_whose_trials_all_raise_alike_stops_with_one_line(flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    space = flaky_space(
        "broken", {"fail_above": -1.0, "sleep": 0.3}, trials=12, concurrency=2, sampler={"name": "random"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith("error: the sweep stopped: its first 3 trials all raised RuntimeError: flaky trial")
    assert "logs: " in lines[0]
    study = optuna.load_study(study_name="broken", storage=store.optuna_url)
    assert len(study.trials) < 12  # stopped, not run to the end
    assert all(t.state == TrialState.FAIL for t in study.trials)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    raised = [t for t in study.trials if t.user_attrs.get("fail_reason", "").startswith("RuntimeError")]
    assert len(raised) >= 3
    for t in raised:  # a failed trial's run has its logs, traceback included
        logs = {a.path for a in client.list_artifacts(t.user_attrs["mlflow_run_id"], "logs")}
        assert "logs/error.txt" in logs, logs
