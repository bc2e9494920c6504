"""SIGTERM (and Ctrl-C, the same path in Ray Tune) stops a sweep cleanly: nothing left RUNNING anywhere."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.stores.store import Store

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def running_trials(store: Store, name: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=store.optuna_url)
    except Exception:
        return 0
    return sum(t.state == TrialState.RUNNING and len(t.intermediate_values) > 0 for t in study.trials)


def start_driver(space, store: Store) -> subprocess.Popen:
    """`hpsearch run` in a process group of its own: its Ray processes share the group and die with it. Its
    output goes to driver.log beside the space (a file, not an unread pipe that would block the driver)."""
    log = (Path(space).parent / "driver.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def hpsearch(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, to its end (output captured)."""
    cmd = [sys.executable, "-m", "search.commands.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def driver_log(space) -> str:
    path = Path(space).parent / "driver.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no output)"


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.campaign)],  # SIGINT: the start-up test
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_stops_the_sweep_closes_every_trial_and_resume_runs_them_again(sig, flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    # a conditional space: only x=0.4 sets hog_above; the grid is its two points, one trial each
    branches = {
        "x": {
            "type": "categorical",
            "choices": {0.2: {}, 0.4: {"hog_above": {"type": "categorical", "choices": [5.0]}}},
        }
    }
    space = flaky_space("slow", {"steps": 60, "sleep": 0.1}, space=branches, sampler={"name": "grid"}, concurrency=2)
    # The driver's output goes to a file, not a pipe: an unread pipe fills up, blocks the driver's
    # prints and with them its event loop, and no trial would ever report.
    log = tmp_path / "driver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            started = wait_for(lambda: running_trials(store, "slow") == 2, timeout=150)
            assert started, "no two trials reported:\n" + log.read_text()[-3000:]
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 128 + sig, log.read_text()[-2000:]  # 130 for Ctrl-C, 143 for SIGTERM
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert (
        "interrupted: 0 trial(s) of this run finished, 2 stopped (FAIL, stopped: interrupted); "
        "`hpsearch resume slow` runs those again and finishes the sweep"
    ) in output, output[-2000:]

    study = optuna.load_study(study_name="slow", storage=store.optuna_url)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and states.count(TrialState.FAIL) == 2
    assert all(t.user_attrs.get("stopped") == "interrupted" for t in study.trials)

    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("slow").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "KILLED" for r in children)
    assert all(r.data.tags["stopped"] == "interrupted" for r in children)
    parent = next(r for r in runs if r.data.tags.get("hpsearch.role") == "sweep")
    assert parent.info.status == "KILLED"

    if sig == signal.SIGTERM:
        return  # the same stores as SIGINT leaves (checked above); resuming them is SIGINT's part (CI time)
    # resume runs the two interrupted configurations again (not new ones)
    interrupted = {t.number: t.params for t in study.trials}
    done = hpsearch("resume", "slow", "--store", str(store.root))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 to run again (trial 0, trial 1)" in done.stderr, done.stderr[-2000:]
    study = optuna.load_study(study_name="slow", storage=store.optuna_url)
    reruns = [t for t in study.trials if "rerun_of" in t.user_attrs]
    assert sorted(t.user_attrs["rerun_of"] for t in reruns) == [0, 1]
    assert all(t.params == interrupted[t.user_attrs["rerun_of"]] for t in reruns)
    assert sorted(map(sorted, (t.params for t in reruns))) == [["hog_above", "x"], ["x"]]  # each its own branch
    assert all(t.state == TrialState.COMPLETE for t in reruns)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2  # the sweep's trial count


@pytest.mark.campaign
def test_resume_after_sigkill_finishes_the_sweep_without_rerunning_finished_trials(flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    sampler = {"name": "random", "seed": 3}
    space = flaky_space("killed", {"steps": 12, "sleep": 0.25}, sampler=sampler, trials=5, concurrency=2)
    proc = start_driver(space, store)

    def finished_and_running() -> bool:
        try:
            study = optuna.load_study(study_name="killed", storage=store.optuna_url)
        except Exception:
            return False
        states = [t.state for t in study.trials]
        return states.count(TrialState.COMPLETE) >= 2 and running_trials(store, "killed") >= 1

    try:
        assert wait_for(finished_and_running, timeout=120), (
            "the sweep never had finished and running trials:\n" + driver_log(space)
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(2)
    before = optuna.load_study(study_name="killed", storage=store.optuna_url)
    done_before = {t.number: t.user_attrs["mlflow_run_id"] for t in before.trials if t.state == TrialState.COMPLETE}
    lost = [t for t in before.trials if t.state == TrialState.RUNNING]
    assert done_before and lost

    from typer.testing import CliRunner

    from search.commands.cli import app

    result = CliRunner().invoke(app, ["resume", "killed", "--store", str(store.root)])
    assert result.exit_code == 0, result.output

    study = optuna.load_study(study_name="killed", storage=store.optuna_url)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 5
    lost_after = [study.trials[t.number] for t in lost]  # closed the way the README says: FAIL, driver lost
    assert all(t.state == TrialState.FAIL and t.user_attrs["stopped"] == "driver lost" for t in lost_after)
    assert all(study.trials[n].user_attrs["mlflow_run_id"] == run for n, run in done_before.items())
    lost_params = [t.params["x"] for t in lost]
    rerun = [
        t.params["x"] for t in study.trials if t.number > max(t.number for t in lost) and t.params["x"] in lost_params
    ]
    assert sorted(rerun) == sorted(lost_params)  # what was running ran again

    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    numbers = [r.data.tags["optuna.trial_number"] for r in children]
    assert len(numbers) == len(set(numbers))  # one MLflow run per trial, never a duplicate
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for t in lost:
        assert by_number[t.number].info.status == "FAILED"
        assert by_number[t.number].data.tags["stopped"] == "driver lost"
    parents = [r for r in runs if r.data.tags.get("hpsearch.role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.mark.campaign
def test_resume_with_repeats_reruns_every_configuration_not_told_to_the_study(flaky_space, tmp_path):
    """The kill lands while a configuration has a finished seed but is not yet told (RUNNING in the study):
    resume must run that configuration again, all its seeds, not count it as done."""
    store = Store.at(tmp_path / "store")
    config, sampler = {"steps": 6, "sleep": 0.3}, {"name": "random", "seed": 3}
    space = flaky_space("killed-repeats", config, sampler=sampler, trials=3, repeats=2, concurrency=1)
    proc = start_driver(space, store)
    client = MlflowClient(store.mlflow_url)

    def a_seed_finished_but_its_configuration_runs() -> bool:
        try:
            study = optuna.load_study(study_name="killed-repeats", storage=store.optuna_url)
            exp = client.get_experiment_by_name("killed-repeats")
            runs = client.search_runs([exp.experiment_id]) if exp else []
        except Exception:
            return False
        running = {str(t.number) for t in study.trials if t.state == TrialState.RUNNING}
        return any(r.info.status == "FINISHED" and r.data.tags.get("optuna.trial_number") in running for r in runs)

    try:
        assert wait_for(a_seed_finished_but_its_configuration_runs, timeout=120, every=0.2), "no such moment"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(2)

    # the kill may also come before the parent run's space.yaml is written: resume reads the study's copy
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("killed-repeats").experiment_id])
                  if r.data.tags.get("hpsearch.role") == "sweep")  # fmt: skip
    (Path(parent.info.artifact_uri.removeprefix("file://")) / "space.yaml").unlink()

    from typer.testing import CliRunner

    from search.commands.cli import app

    result = CliRunner().invoke(app, ["resume", "killed-repeats", "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="killed-repeats", storage=store.optuna_url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # every configuration, each with both seeds
    assert all(len(t.user_attrs["repeat_values"]) == 2 for t in complete)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    # every MLflow run agrees with its study trial: the finished seed of the lost configuration included
    agrees = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
    states = {str(t.number): t.state for t in study.trials}
    seeds = [r for r in client.search_runs([parent.info.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert all(r.info.status == agrees[states[r.data.tags["optuna.trial_number"]]] for r in seeds)


def test_a_live_driver_is_not_resumed_and_a_rerun_after_a_kill_closes_what_it_left(write_space, tmp_path):
    from typer.testing import CliRunner

    from search.commands.cli import app

    store = Store.at(tmp_path / "store")
    space = write_space(
        {
            "name": "driven",
            "trainable": "flaky",
            "config": {"steps": 200, "sleep": 0.1},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "trials": 2,
        }
    )
    proc = start_driver(space, store)
    try:
        assert wait_for(lambda: running_trials(store, "driven") >= 1, timeout=120), "no trial ever ran"
        # while its driver lives, neither resume nor a second run may touch the sweep
        for command in (["resume", "driven"], ["run", str(space)]):
            result = CliRunner().invoke(app, [*command, "--store", str(store.root)])
            assert result.exit_code == 2, result.output
            assert "sweep 'driven' is being driven by hpsearch pid" in result.stderr
        assert running_trials(store, "driven") >= 1  # its trial is still RUNNING, not marked lost
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    # run (not resume) after the kill: what the dead driver left RUNNING is closed, then the new run goes on
    # (with fewer steps, a change of the search it must be told to accept)
    args = ["run", str(space), "--store", str(store.root), "--set", "config.steps=1", "--accept-change"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="driven", storage=store.optuna_url)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    lost = [t for t in study.trials if t.user_attrs.get("stopped") == "driver lost"]
    assert lost and all(t.state == TrialState.FAIL for t in lost)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("driven").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = sorted((r for r in runs if r.data.tags.get("hpsearch.role") == "sweep"), key=lambda r: r.info.start_time)
    assert [p.info.status for p in parents] == ["FAILED", "FINISHED"]
    assert parents[0].data.tags["stopped"] == "driver lost"


def test_resume_after_a_kill_between_the_study_and_mlflow_agrees_with_the_study(
    ray_local, write_space, tmp_path, quiet_console
):
    """The crash point chosen by store state: the study has told a trial COMPLETE, MLflow has not yet ended
    its run, and the parent is still RUNNING. Resume must end that run FINISHED, as the study says, and
    run nothing more: every trial of the sweep finished."""
    from search.driver import plan, runner
    from search.driver.resume import resume

    store = Store.at(tmp_path / "store")
    space = {
        "name": "between",
        "trainable": "flaky",
        "config": {"steps": 1},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trials": 2,
    }
    runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("between").experiment_id])
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    parent = next(r for r in runs if r.data.tags.get("hpsearch.role") == "sweep")
    for run in (child, parent):  # as the kill left them
        client.update_run(run.info.run_id, status="RUNNING")

    assert resume(store, "between", quiet_console) is None  # nothing left to run
    study = optuna.load_study(study_name="between", storage=store.optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert client.get_run(child.info.run_id).info.status == "FINISHED"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.campaign
def test_two_drivers_starting_together_on_a_new_store_both_finish(write_space, tmp_path):
    store = Store.at(tmp_path / "store")
    spaces = [
        write_space(
            {
                "name": name,
                "trainable": "flaky",
                "config": {"steps": 1},
                "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "trials": 1,
            },
            f"{name}.yaml",
        )
        for name in ("first", "second")
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for space in spaces
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    for name in ("first", "second"):
        study = optuna.load_study(study_name=name, storage=store.optuna_url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE]


def loading(pid: int, library: str) -> bool:
    """Whether the process has mapped LIBRARY (a shared object that an import loads): it is importing it."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def study_exists(store: Store, name: str) -> bool:
    if not (store.root / "optuna.db").exists():
        return False
    try:
        return name in optuna.get_all_study_names(storage=store.optuna_url)
    except Exception:  # the driver is creating the tables right now
        return False


# The driver, with a signal sent to itself as Ray Tune sets its loop up, just before Tune installs its own
# SIGINT and SIGUSR1 handlers: the moment the sweep's set-up has checked for signals and Tune's have not begun.
SIGNAL_AS_TUNE_STARTS = """
import os, signal, sys
import ray.tune.tune as tune_module
from search.commands.cli import main

install = tune_module._setup_signal_catching
def signal_first():
    os.kill(os.getpid(), {sig})
    return install()
tune_module._setup_signal_catching = signal_first
sys.argv = ["hpsearch", "run", {space!r}, "--store", {store!r}]
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_as_ray_tune_starts_its_loop_stops_the_sweep_before_any_trial(sig, flaky_space, tmp_path):
    """Between the sweep's set-up (where a signal waits, and is listed) and Ray Tune installing its own
    handler: a SIGINT there was listed and forgotten, and every trial ran (exit 0, found by CI); a SIGTERM
    there was forwarded as SIGUSR1 before Tune listened for it, which killed the driver."""
    store = Store.at(tmp_path / "store")
    space = flaky_space("window", {"steps": 5, "sleep": 0.2}, trials=3, concurrency=1)
    script = SIGNAL_AS_TUNE_STARTS.format(sig=int(sig), space=str(space), store=str(store.root))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 128 + sig, output[-3000:]
    assert "Traceback" not in output and output.count("interrupted: 0 trial(s)") == 1, output[-3000:]
    study = optuna.load_study(study_name="window", storage=store.optuna_url)
    assert study.trials == [], [t.state for t in study.trials]
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("window").experiment_id])
    assert [(r.data.tags.get("hpsearch.role"), r.info.status) for r in runs] == [("sweep", "KILLED")]


@pytest.mark.parametrize(
    ("point", "sig"),
    [
        ("commands", signal.SIGINT),  # the CLI's own modules loading (pydantic's core mapped), before any command
        ("imports", signal.SIGINT),  # Ray's core library just mapped: its import under way
        ("ray start", signal.SIGTERM),  # 3 s in: Ray's processes starting
        ("study open", signal.SIGINT),  # the study and the MLflow writer are there, no trial has started
        pytest.param("study open", signal.SIGTERM, marks=pytest.mark.campaign),
    ],
)
def test_an_interrupt_during_start_up_is_one_line_and_leaves_nothing_running(point, sig, flaky_space, tmp_path):
    """Wherever the signal lands, the exit code is the signal's, and no process the driver started (Ray's
    raylet, its agents, the MLflow writer) outlives it: interrupted in Ray's start, the raylet's agents lived
    on for a minute, and Python's exit crashed on a half-connected core worker."""
    import psutil

    store = Store.at(tmp_path / "store")
    space = flaky_space("early", {"steps": 5, "sleep": 0.5}, trials=4, concurrency=2)
    proc = start_driver(space, store)
    try:
        if point in ("commands", "imports"):
            library = "pydantic_core" if point == "commands" else "_raylet"
            assert wait_for(lambda: loading(proc.pid, library), timeout=60, every=0.01), driver_log(space)
        elif point == "ray start":
            time.sleep(3.0)
        else:
            assert wait_for(lambda: study_exists(store, "early"), timeout=120, every=0.05), driver_log(space)
        tree = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, sig)
        proc.wait(timeout=90)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    output = driver_log(space)
    assert proc.returncode == 128 + sig, output
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p.name() for p in alive if p.status() != psutil.STATUS_ZOMBIE], output
    assert "Traceback" not in output and output.count("interrupted:") == 1, output
    if (store.root / "optuna.db").exists() and study_exists(store, "early"):
        study = optuna.load_study(study_name="early", storage=store.optuna_url)
        assert all(t.state != TrialState.RUNNING for t in study.trials)
    if (store.root / "mlflow.db").exists():
        client = MlflowClient(store.mlflow_url)
        exp = client.get_experiment_by_name("early")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        assert "RUNNING" not in {r.info.status for r in runs}, [(r.info.run_name, r.info.status) for r in runs]
        assert all(r.info.status == "KILLED" for r in runs if r.data.tags.get("hpsearch.role") == "sweep")


@pytest.mark.campaign
def test_run_new_after_a_kill_closes_what_the_dead_driver_left_before_archiving(flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    space = flaky_space("renewed", {"steps": 200, "sleep": 0.1}, trials=4, concurrency=2)
    proc = start_driver(space, store)
    try:
        assert wait_for(lambda: running_trials(store, "renewed") == 2, timeout=150), driver_log(space)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done = hpsearch("run", str(space), "--store", str(store.root), "--new", "--trials", "1")
    assert "the previous run of renewed lost its driver: 2 trial(s) it left running are marked FAIL" in done.stderr
    archived = [s for s in optuna.get_all_study_names(store.optuna_url) if s.startswith("renewed@")]
    assert len(archived) == 1
    old = optuna.load_study(study_name=archived[0], storage=store.optuna_url)
    assert [t.state for t in old.trials] == [TrialState.FAIL, TrialState.FAIL]  # none RUNNING for ever
    assert all(t.user_attrs["stopped"] == "driver lost" for t in old.trials)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("renewed").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


def kill_one_of_its_processes_mid_sweep(flaky_space, tmp_path, name: str, command_line: str, wait_s: float):
    """A sweep, and one process of its tree (by what its command line holds) killed at its first report; the
    driver must end by itself within ``wait_s``. Returns the store, the driver's exit code and output, and
    its process tree as it was."""
    import psutil

    store = Store.at(tmp_path / "store")
    space = flaky_space(name, {"steps": 20, "sleep": 0.1}, trials=3, concurrency=2)
    proc = start_driver(space, store)
    try:
        assert wait_for(lambda: running_trials(store, name) >= 1, timeout=150), driver_log(space)
        tree = psutil.Process(proc.pid).children(recursive=True)
        targets = [p for p in tree if command_line in " ".join(p.cmdline())]
        assert len(targets) == 1
        targets[0].kill()
        proc.wait(timeout=wait_s)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    return store, proc.returncode, driver_log(space), tree


def one_error_line(returncode: int, output: str) -> str:
    assert returncode == 1 and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def resume_finishes(store: Store, name: str, trials: int) -> None:
    done = hpsearch("resume", name, "--store", str(store.root))
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=store.optuna_url)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= trials
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


@pytest.mark.campaign
def test_a_dead_mlflow_writer_stops_the_sweep_in_one_line_and_resume_finishes_it(flaky_space, tmp_path):
    store, code, output, _ = kill_one_of_its_processes_mid_sweep(
        flaky_space, tmp_path, "writer", "search.stores.mlflow_writer", wait_s=120
    )
    error = one_error_line(code, output)
    assert "the MLflow writer process ended" in error and "hpsearch resume writer" in error
    resume_finishes(store, "writer", trials=3)


@pytest.mark.campaign
def test_rays_head_killed_mid_sweep_stops_the_driver_in_one_line_and_resume_finishes_it(flaky_space, tmp_path):
    """Without the head watch, Ray's core worker ends the driver from C++ after 60 s: exit 1, its own log
    line, no word of resume."""
    import psutil

    # under Ray's own 60 s: the watch ended it
    store, code, output, tree = kill_one_of_its_processes_mid_sweep(
        flaky_space, tmp_path, "headless", "gcs_server", wait_s=50
    )
    error = one_error_line(code, output)
    assert "Ray's head died" in error and "hpsearch resume headless" in error
    assert "the Ray head this sweep started" in error and "closed (FAIL, stopped: Ray's head lost)" in error
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "raylet" in p.name()]
    nothing_running(store, "headless")  # the driver closed what was open before it ended
    resume_finishes(store, "headless", trials=3)


def nothing_running(store: Store, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=store.optuna_url)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    assert any(t.user_attrs.get("stopped") == "Ray's head lost" for t in study.trials)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}, [(r.info.run_name, r.info.status) for r in runs]


@pytest.mark.slow
def test_a_writer_killed_as_the_store_is_made_stops_the_sweep_in_one_line_and_a_rerun_finishes_it(
    flaky_space, tmp_path
):
    """A WriterError traceback before: the writer died during the sweep's set-up, before the head watch."""
    import psutil

    store = Store.at(tmp_path / "store")
    space = flaky_space("early-writer", {"steps": 3, "sleep": 0.05}, trials=2)
    proc = start_driver(space, store)
    try:
        assert wait_for(lambda: (store.root / "mlflow.db").exists(), timeout=150), driver_log(space)
        writers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "search.stores.mlflow_writer" in " ".join(p.cmdline())]  # fmt: skip
        assert len(writers) == 1
        writers[0].kill()
        proc.wait(timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    error = one_error_line(proc.returncode, driver_log(space))
    assert "the MLflow writer process ended" in error  # as the sweep was set up, or as its loop began
    follow = ["resume", "early-writer"] if "hpsearch resume early-writer" in error else ["run", str(space)]
    assert follow[0] == "run" or "as the sweep was set up" not in error
    done = hpsearch(*follow, "--store", str(store.root))
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="early-writer", storage=store.optuna_url)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("early-writer").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


@pytest.mark.slow
def test_a_writer_dead_before_the_store_is_opened_is_one_line_that_says_to_run_again(
    ray_local, flaky_space, tmp_path, quiet_console
):
    from search.driver import plan, runner
    from search.errors import WriterLostError
    from search.stores.mlflow_writer import MlflowWriter

    writer = MlflowWriter()
    writer._proc.kill()
    writer._proc.wait()
    store = Store.at(tmp_path / "store")
    sweep = plan.prepare(str(flaky_space("dead-writer", {"steps": 2}, trials=1)))
    # "(exit -9)" where the writer's end was read before the driver's first call failed
    with pytest.raises(WriterLostError, match=r"process ended( \(exit -9\))? as the sweep was set up, .*: run it ag"):
        runner.run(sweep, store, console=quiet_console, writer=writer)
    assert WriterLostError.exit_code == 1


@pytest.mark.slow
def test_the_warm_ray_stopped_mid_sweep_closes_the_sweep_in_seconds_and_says_down_did_it(flaky_space, tmp_path):
    """It waited 45 s (a cluster's patience), left the trials and runs RUNNING, and called the local warm Ray
    the Ray cluster's head."""
    before, os.environ["HPSEARCH_CACHE"] = os.environ["HPSEARCH_CACHE"], str(tmp_path / "cache")
    try:
        assert hpsearch("up", "--cpus", "2").returncode == 0
        store = Store.at(tmp_path / "store")
        space = flaky_space("warm-lost", {"steps": 200, "sleep": 0.1}, trials=3, concurrency=2)
        proc = start_driver(space, store)
        try:
            assert wait_for(lambda: running_trials(store, "warm-lost") >= 1, timeout=150), driver_log(space)
            assert hpsearch("down").returncode == 0
            proc.wait(timeout=40)
        finally:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        error = one_error_line(proc.returncode, driver_log(space))
        assert "the warm Ray at 127.0.0.1:" in error and "which hpsearch down stopped" in error, error
        assert "not answering for 2 s" in error and "cluster" not in error
        nothing_running(store, "warm-lost")
    finally:
        hpsearch("down")
        os.environ["HPSEARCH_CACHE"] = before
