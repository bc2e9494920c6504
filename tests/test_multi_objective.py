"""Trade-off sweeps: several objectives, constraints, and pruning on a Pareto front.

The bridge first, on in-memory studies (no Ray); then whole sweeps with real Ray, SQLite and MLflow on
the ``tradeoff`` test trainable (tests/plugins/flaky.py): accuracy x - y (max) against cost x (min), so
a trial with a larger y is dominated by one with the same x and a smaller y.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.commands.servers import free_port, start_dashboard
from search.driver import plan, runner
from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.space.constraints import Constraint
from search.space.pareto import ParetoPruner
from search.stores.store import Store

# ----------------------------------------------------------------------------- the bridge alone


def make_bridge(n_trials=4, constraints=(), front_pruner=None, repeats=1, study=None):
    study = study or optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0))
    distributions = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    cons = [Constraint.parse(c) for c in constraints]
    settings = BridgeSettings(
        distributions, ["accuracy", "cost"], ["max", "min"], n_trials, repeats=repeats, constraints=cons
    )
    bridge = OptunaBridge(study, settings, front_pruner)
    return study, bridge


def trial(bridge, ray_id, rows, final=True):
    """A trial reporting ``rows`` (dicts of metrics) at steps 1.. and ending; True if it was pruned."""
    bridge.ask(ray_id)
    pruned = False
    for step, metrics in enumerate(rows, start=1):
        last = step == len(rows)
        assert bridge.report(ray_id, {**metrics, "step": step, "final_report": final and last})
        if bridge.should_prune(ray_id):
            pruned = True
            break
    bridge.complete(ray_id, None, error=False)
    return pruned


def test_a_trade_off_tells_each_trial_its_last_reports_vector_and_keeps_every_steps():
    study, bridge = make_bridge()
    trial(bridge, "a", [{"accuracy": 0.5, "cost": 3.0}, {"accuracy": 0.9, "cost": 3.0}])
    trial(bridge, "b", [{"accuracy": 0.4, "cost": 1.0}, {"accuracy": 0.3, "cost": 1.0}])  # its last, not its best
    trial(bridge, "c", [{"accuracy": 0.2, "cost": 2.0}])  # dominated by b
    a, b, c = study.trials
    assert a.values == [0.9, 3.0] and b.values == [0.3, 1.0] and c.values == [0.2, 2.0]
    assert a.user_attrs["intermediate.1"] == [0.5, 3.0] and a.user_attrs["intermediate.2"] == [0.9, 3.0]
    assert sorted(t.number for t in study.best_trials) == [0, 1]
    assert bridge.view("a").values == (0.9, 3.0)


def test_a_missing_objective_fails_the_trial_naming_what_was_reported():
    study, bridge = make_bridge()
    bridge.ask("a")
    assert bridge.report("a", {"accuracy": 0.5, "step": 1}) is False
    bridge.complete("a", None, error=False)
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "metric 'cost' was not reported (reported: accuracy, step)"


def test_constraints_are_told_to_optuna_and_infeasible_trials_are_never_best():
    study, bridge = make_bridge(constraints=["size <= 500", "cost >= 0.5"])
    trial(bridge, "a", [{"accuracy": 0.9, "cost": 0.9, "size": 900}])  # breaks size <= 500 by 400
    trial(bridge, "b", [{"accuracy": 0.5, "cost": 0.6, "size": 400}])
    trial(bridge, "c", [{"accuracy": 0.1, "cost": 0.4, "size": 100}])  # breaks cost >= 0.5 by 0.1
    a, b, c = study.trials
    assert a.constraints == {"size <= 500": 400.0, "cost >= 0.5": pytest.approx(-0.4)}
    assert c.constraints["cost >= 0.5"] == pytest.approx(0.1)
    assert [t.user_attrs["feasible"] for t in (a, b, c)] == [False, True, False]
    assert [t.number for t in study.best_trials] == [1]  # a and c would be on the front if they counted
    assert bridge.view("a").feasible is False and bridge.view("b").violations["size <= 500"] == -100.0


def test_a_constraint_whose_metric_never_came_fails_a_finished_trial():
    study, bridge = make_bridge(constraints=["seconds_per_epoch <= 2"])
    trial(bridge, "a", [{"accuracy": 0.9, "cost": 1.0}])
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == (
        "constraint 'seconds_per_epoch <= 2': metric 'seconds_per_epoch' was not reported (reported: accuracy, cost)"
    )


def test_constraints_work_for_a_single_objective_too():
    study = optuna.create_study(direction="maximize")
    settings = BridgeSettings(
        {"x": FloatDistribution(0, 1)}, ["score"], ["max"], 3, constraints=[Constraint.parse("size <= 5")]
    )
    bridge = OptunaBridge(study, settings)
    for ray_id, score, size in (("a", 0.9, 9), ("b", 0.5, 4), ("c", 0.1, 1)):
        bridge.ask(ray_id)
        bridge.report(ray_id, {"score": score, "size": size, "step": 1, "final_report": True})
        bridge.complete(ray_id, None, error=False)
    assert study.best_trial.number == 1  # trial 0 scores more but breaks the constraint


def test_pareto_pruning_stops_dominated_trials_early_and_never_a_front_one():
    pruner = ParetoPruner(n_startup_trials=1, keep=0.5)
    study, bridge = make_bridge(n_trials=6, front_pruner=pruner)
    curve = lambda x, y: [{"accuracy": (x - y) * s / 4, "cost": x} for s in range(1, 5)]  # noqa: E731
    assert not trial(bridge, "a", curve(0.8, 0.0))
    assert not trial(bridge, "b", curve(0.2, 0.0))
    assert trial(bridge, "c", curve(0.8, 0.5))  # dominated by a from its first step
    assert not trial(bridge, "d", curve(0.5, 0.0))  # between a and b: on the front at every step
    c = study.trials[2]
    assert c.state == TrialState.PRUNED and c.user_attrs["pruned_at_step"] == 1
    assert c.user_attrs["intermediate.1"] == [pytest.approx(0.075), 0.8]  # what it reported stays with it
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 3


def test_repeats_tell_the_mean_of_each_objective():
    study, bridge = make_bridge(n_trials=1, repeats=2)
    for ray_id, acc in (("s0", 0.8), ("s1", 0.6)):
        bridge.ask(ray_id)
        bridge.report(ray_id, {"accuracy": acc, "cost": 2.0, "step": 1, "final_report": True})
        bridge.complete(ray_id, None, error=False)
    t = study.trials[0]
    assert t.values == [pytest.approx(0.7), 2.0]
    assert t.user_attrs["repeat_values"] == [[0.8, 2.0], [0.6, 2.0]]
    assert t.user_attrs["value_std"] == [pytest.approx(0.1414, abs=1e-4), 0.0]


# ----------------------------------------------------------------------------- whole sweeps


def run_cli(*args):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def tradeoff_space(write_space, name, **keys):
    space = {
        "name": name,
        "trainable": "tradeoff",
        "metric": ["accuracy", "cost"],
        "mode": ["max", "min"],
        "config": {"steps": 4},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 0.5}},
        "sampler": {"name": "random", "seed": 1},
        "trials": 10,
        "concurrency": 2,
        **keys,
    }
    return write_space(space, f"{name}.yaml")


@pytest.mark.slow
def test_a_trade_off_sweep_ends_with_the_studys_front_everywhere(
    ray_local, write_space, tmp_path, quiet_console, chromium
):
    space = tradeoff_space(
        write_space,
        "trade",
        constraints=["size <= 800"],
        pruner={"name": "pareto", "n_startup_trials": 2, "keep": 0.5},
    )
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(space)), store, console=quiet_console)
    printed = quiet_console.file.getvalue()

    study = optuna.load_study(study_name="trade", storage=store.optuna_url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "cost"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
    front = sorted(t.number for t in study.best_trials)
    assert [t.number for t in outcome.front] == front
    infeasible = [t.number for t in complete if t.params["x"] > 0.8]
    assert all(study.trials[n].user_attrs["feasible"] is False for n in infeasible)
    assert not set(infeasible) & set(front) and outcome.counts["infeasible"] == len(infeasible)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "a dominated trial should have been pruned"  # random y up to 0.5 on 10 trials
    for t in pruned:  # pruned at a step where it was in a worse front: its vectors say so
        assert f"intermediate.{t.user_attrs['pruned_at_step']}" in t.user_attrs
    assert "Pareto front of trade: accuracy (max) vs cost (min)" in printed
    assert f"front: {len(front)} trial(s)" in printed

    client = MlflowClient(store.mlflow_url)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["front_trial_numbers"] == ",".join(map(str, front))
    run_ids = parent.data.tags["front_mlflow_run_ids"].split(",")
    assert run_ids == [study.trials[n].user_attrs["mlflow_run_id"] for n in front]
    assert parent.data.metrics["front_size"] == len(front)
    for n in infeasible:
        run = client.get_run(study.trials[n].user_attrs["mlflow_run_id"])
        assert run.data.tags["feasible"] == "false" and "size <= 800: " in run.data.tags["constraints"]
    history = client.get_metric_history(run_ids[0], "cost")
    assert [m.step for m in history] == [1, 2, 3, 4]  # each step of each objective

    # what a user reads afterwards: compare marks the front, best lists it, report draws it
    csv = run_cli("compare", "trade", "--store", str(store.root), "--format", "csv")
    header, *rows = [line.split(",") for line in csv.stdout.strip().splitlines()]
    assert header[:6] == ["sweep", "trial", "state", "accuracy", "cost", "front"] and header[6] == "feasible"
    assert sorted(int(r[1]) for r in rows if r[5] == "yes") == front
    assert all(r[6] == "no" for r in rows if int(r[1]) in infeasible)
    listed = json.loads(run_cli("best", "trade", "--store", str(store.root), "--format", "json").stdout)
    assert [b["trial"] for b in listed] == front and set(listed[0]["objectives"]) == {"accuracy", "cost"}
    refused = run_cli("train", "--from", "trade", "--store", str(store.root))
    assert refused.exit_code == 2 and "its Pareto front is trial(s)" in refused.stderr
    retrained = run_cli("train", "--from", "trade", "--trial", str(front[0]), "--store", str(store.root))
    assert retrained.exit_code == 0, retrained.output
    report = run_cli("report", "trade", "--store", str(store.root))
    assert report.exit_code == 0, report.output
    assert (store.root / "reports" / "trade" / "pareto_front.png").stat().st_size > 10_000
    assert (store.root / "reports" / "trade" / "slice_cost.html").is_file()

    # optuna-dashboard draws the front on the study's page
    server = start_dashboard(store.optuna_url, "127.0.0.1", free_port())
    try:
        with urllib.request.urlopen(f"{server.url}/api/studies", timeout=10) as r:
            study_id = json.loads(r.read())["study_summaries"][0]["study_id"]
        dom = chromium(f"{server.url}/dashboard/studies/{study_id}", tmp_path / "chromium", "--dump-dom").stdout
        assert "Pareto Front" in dom and 'id="graph-pareto-front"' in dom, dom[-2000:]
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.campaign
def test_a_trade_off_study_goes_on_archives_and_refuses_other_directions(
    ray_local, write_space, tmp_path, quiet_console
):
    store = Store.at(tmp_path / "store")
    space = tradeoff_space(write_space, "more", trials=3)
    runner.run(plan.prepare(str(space)), store, console=quiet_console)
    outcome = runner.run(plan.prepare(str(space)), store, console=quiet_console)  # the study goes on
    study = optuna.load_study(study_name="more", storage=store.optuna_url)
    assert len(study.trials) == 6 and [t.number for t in outcome.front] == sorted(t.number for t in study.best_trials)

    single = write_space({**_load(space), "metric": "accuracy", "mode": "max"}, "single.yaml")
    result = run_cli("run", str(single), "--store", str(store.root))
    assert result.exit_code == 2
    assert "was made to maximize, minimize; this file asks to maximize (pass --new" in result.stderr
    fresh = run_cli("run", str(single), "--store", str(store.root), "--new", "--trials", "1")
    assert fresh.exit_code == 0, fresh.output
    names = {s.study_name for s in optuna.get_all_study_summaries(store.optuna_url)}
    assert "more" in names and any(n.startswith("more@") for n in names)  # the trade-off kept, archived


def _load(path):
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.campaign
@pytest.mark.slow
def test_a_killed_trade_off_sweep_resumes_without_losing_a_finished_trial(write_space, tmp_path):
    store = Store.at(tmp_path / "store")
    space = tradeoff_space(
        write_space, "killed-trade", config={"steps": 12, "sleep": 0.25}, trials=5, pruner={"name": "pareto"}
    )
    log = (tmp_path / "driver.log").open("wb")  # a file, not an unread pipe that would block the driver
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def finished_and_running() -> bool:
        try:
            trials = optuna.load_study(study_name="killed-trade", storage=store.optuna_url).trials
        except Exception:
            return False
        running = [t for t in trials if t.state == TrialState.RUNNING and "intermediate.1" in t.user_attrs]
        return sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and bool(running)

    deadline = time.monotonic() + 120
    try:
        while not finished_and_running():
            shown = (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep never had finished and running trials:\n" + shown
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    before = optuna.load_study(study_name="killed-trade", storage=store.optuna_url)
    done_before = {t.number: t.values for t in before.trials if t.state == TrialState.COMPLETE}

    result = run_cli("resume", "killed-trade", "--store", str(store.root))
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="killed-trade", storage=store.optuna_url)
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    assert all(study.trials[n].values == v for n, v in done_before.items())  # nothing finished was lost
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5 and all(len(t.values) == 2 for t in finished if t.state == TrialState.COMPLETE)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("killed-trade").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


def test_a_diverged_trial_leaves_the_front_pruners_judgement_alone():
    """The bridge never hands the front pruner a vector with a NaN (the pruner drops it too)."""
    pruner = ParetoPruner(n_startup_trials=0, keep=0.5)
    study, bridge = make_bridge(n_trials=4, front_pruner=pruner)
    nan = float("nan")
    for ray_id, accuracy, cost in (("a", 0.9, 0.1), ("b", 0.7, 0.3), ("d", nan, nan)):
        bridge.ask(ray_id)
        bridge.report(ray_id, {"accuracy": accuracy, "cost": cost, "step": 1})
    bridge.ask("c")
    bridge.report("c", {"accuracy": 0.8, "cost": 0.2, "step": 1})
    assert not bridge.should_prune("c")  # second of three finite vectors: kept
    assert bridge.should_prune("b")  # third: pruned
