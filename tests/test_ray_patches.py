"""The Ray fixes in search/driver/ray_patches.py, without starting Ray."""

import os

import pytest
from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError

from search.driver import ray_patches

RAY_OOM_TEXT = """1 worker(s) were killed due to the node running low on memory.
Memory on the node (IP: 10.0.0.2, ID: cbc4f6) was 9.54GB used /
23.54GB limit (0.405435)
OOM kill reason: Memory usage 10165207040B exceeded threshold of 10110426112B"""


def test_an_out_of_memory_error_reaches_tune_as_the_death_of_the_trials_actor():
    seen = []
    handler = ray_patches._fail_the_trial_alone(lambda manager, task, exception: seen.append(exception))
    handler(None, "task", OutOfMemoryError(RAY_OOM_TEXT))
    (error,) = seen
    assert isinstance(error, RayActorError) and isinstance(error.__cause__, OutOfMemoryError)
    assert str(error).splitlines()[-1] == (
        "killed by Ray's memory monitor: the host ran low on memory (9.54GB used / 23.54GB limit); "
        "give each trial less data or model, or fewer trials at a time"
    )


def test_errors_tune_handles_itself_pass_unchanged():
    seen = []
    handler = ray_patches._fail_the_trial_alone(lambda manager, task, exception: seen.append(exception))
    task_error, actor_error = RayTaskError("f", "traceback", ValueError("x")), RayActorError(error_msg="gone")
    handler(None, "task", task_error)
    handler(None, "task", actor_error)
    assert seen == [task_error, actor_error]


def test_apply_installs_the_fix_once():
    from ray.air.execution._internal.actor_manager import RayActorManager

    ray_patches.apply()
    installed = RayActorManager._actor_task_failed
    ray_patches.apply()
    assert RayActorManager._actor_task_failed is installed and installed.hpsearch_patched


TAGGED = """
import sys
from ray import tune
from ray.air._internal import usage
from search.driver import ray_patches
if sys.argv[1] == "patched":
    ray_patches.apply()
usage.tag_callbacks([tune.Callback()])
print("mlflow" in sys.modules)
"""


@pytest.mark.parametrize("patched", [True, False])
def test_tunes_usage_tag_of_the_callbacks_imports_mlflow_unless_patched(patched):
    """Left as Ray has it, tagging the callbacks of a run imports MLflow (the check means something)."""
    import subprocess
    import sys

    argument = "patched" if patched else "as-is"
    done = subprocess.run([sys.executable, "-c", TAGGED, argument], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(not patched)


LISTENS = r"""
import json, psutil, ray, sys
from search.driver.ray_start import ensure_ray
ensure_ray()
import os
niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())  # a worker too
me = psutil.Process()
listening = [
    (p.name(), c.laddr.ip)
    for p in [me, *me.children(recursive=True)]
    for c in p.net_connections(kind="inet")
    if c.status == psutil.CONN_LISTEN
]
started = [" ".join(p.cmdline()) for p in me.children(recursive=True)]
print(json.dumps({"listening": listening, "started": started, "niceness": niceness, "mine": os.nice(0)}))
"""


def test_a_local_ray_listens_on_loopback_only_starts_no_monitor_and_runs_trials_at_the_drivers_priority():
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", ray_patches.WORKER_NICENESS)}
    done = subprocess.run([sys.executable, "-c", LISTENS], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    listening, started = seen["listening"], seen["started"]
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # the servers were seen, so the check means something
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening
    assert any("raylet" in cmd for cmd in started), started
    unused = ("log_monitor.py", "autoscaler/_private/monitor.py", "dashboard/dashboard.py")
    monitors = [cmd for cmd in started if any(name in cmd for name in unused)]
    assert not monitors, monitors
    assert seen["niceness"] == seen["mine"], seen  # Ray's own default puts its workers 15 below the driver


def test_on_this_ray_every_fix_is_in():
    assert ray_patches.missing() == []  # the Ray of constraints.txt: if this fails, Ray's internals moved


def test_a_ray_whose_internals_moved_runs_unpatched_with_one_warning_naming_the_fix(monkeypatch, caplog):
    monkeypatch.setattr(ray_patches, "RayActorManager", None)
    monkeypatch.setattr(ray_patches, "ray_constants", None)
    monkeypatch.setattr(ray_patches, "RayParams", None)
    monkeypatch.setattr(ray_patches, "air_usage", None)
    monkeypatch.setattr(ray_patches, "_ExperimentCheckpointManager", None)
    monkeypatch.setattr(ray_patches, "_warned", set())
    fixes = [ray_patches.MEMORY_FIX, ray_patches.LOOPBACK_FIX, ray_patches.LEAN_FIX, ray_patches.TAG_FIX]
    assert ray_patches.missing() == [*fixes, ray_patches.CHECKPOINT_FIX, ray_patches.SAVE_FIX]
    with caplog.at_level("WARNING", logger="search.driver.ray_patches"):
        ray_patches.apply()
        ray_patches.apply()
        with ray_patches.local_only():
            pass
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 6
    assert "Ray Tune's start imports no MLflow" in warned[0]
    assert "a trial's checkpoint does not save the whole experiment" in warned[1]
    assert "saved after its last copy ends" in warned[2]
    assert "a trial killed for memory fails alone" in warned[3]
    assert "a local Ray listens on loopback" in warned[4] and "no autoscaler, log monitor or dashboard" in warned[5]


def test_a_ray_without_the_cluster_switch_keeps_its_environment(monkeypatch):
    import types

    monkeypatch.setattr(ray_patches, "ray_constants", types.SimpleNamespace())  # the module, its names gone
    monkeypatch.setattr(ray_patches, "_warned", set())
    before = dict(os.environ)
    with ray_patches.local_only():
        assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == before.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    assert dict(os.environ) == before


@pytest.mark.parametrize(("users", "inside"), [(None, "0"), ("7", "7"), ("15", "15")])
def test_a_local_rays_workers_get_niceness_0_unless_the_user_set_one(monkeypatch, users, inside):
    if users is None:
        monkeypatch.delenv(ray_patches.WORKER_NICENESS, raising=False)
    else:
        monkeypatch.setenv(ray_patches.WORKER_NICENESS, users)
    with ray_patches.local_only():
        assert os.environ[ray_patches.WORKER_NICENESS] == inside
        assert ray_patches.local_env()[ray_patches.WORKER_NICENESS] == inside  # hpsearch up's, the same
    assert os.environ.get(ray_patches.WORKER_NICENESS) == users


@pytest.mark.parametrize(("logs", "log_monitor"), [(False, False), (True, None)])
def test_a_ray_started_inside_local_only_skips_its_monitors_and_only_there(logs, log_monitor):
    from ray._private.parameter import RayParams

    with ray_patches.local_only(log_to_driver=logs):
        inside = RayParams()
    after = RayParams()
    assert (inside.no_monitor, inside.include_log_monitor) == (True, log_monitor)  # None: Ray's default (on)
    assert (after.no_monitor, after.include_log_monitor) == (False, None)


def test_the_dashboard_server_is_left_out_inside_local_only_and_only_there():
    from ray._private.node import Node

    stock = Node.start_api_server
    with ray_patches.local_only():
        assert Node.start_api_server is not stock
    assert Node.start_api_server is stock


def test_a_ray_without_start_api_server_runs_without_the_lean_fix(monkeypatch):
    monkeypatch.setattr(ray_patches, "Node", None)
    assert ray_patches.LEAN_FIX in ray_patches.missing()


@pytest.mark.parametrize("patched", [True, False])
def test_a_trials_checkpoint_forces_no_save_of_the_experiment_unless_unpatched(monkeypatch, patched):
    """Ray's own hook (put back: the check means something) forces a save after each checkpoint when
    ``num_to_keep`` is 1, as hpsearch sets it; patched, nothing is forced, for any trial."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    ray_patches.apply()
    if not patched:
        monkeypatch.setattr(_ExperimentCheckpointManager, "on_trial_checkpoint", ray_patches.RAYS_ON_TRIAL_CHECKPOINT)
    manager = _ExperimentCheckpointManager(storage=None, checkpoint_period="auto", sync_every_n_trial_checkpoints=1)
    for trial in ("a", "b", "c"):
        manager.on_trial_checkpoint(trial)
        assert manager._should_force_sync_up is not patched


@pytest.mark.parametrize("patched", [True, False])
def test_a_save_of_the_experiment_waits_for_the_copy_before_it_unless_unpatched(monkeypatch, patched):
    """Tune's save rewrote its staging folder while the copy the last save launched still read it (a sweep
    that ends as it starts); patched, each save (three here) first waits for that copy to end."""
    import types

    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    ray_patches.apply()
    if not patched:  # Ray's own, from under the wrapper (put back: the check means something)
        stock = _ExperimentCheckpointManager.sync_up_experiment_state.__wrapped__
        monkeypatch.setattr(_ExperimentCheckpointManager, "sync_up_experiment_state", stock)
    events: list[str] = []
    syncer = types.SimpleNamespace(wait=lambda: events.append("wait"), sync_up=lambda *a: events.append("copy") or 1)
    storage = types.SimpleNamespace(syncer=syncer, experiment_driver_staging_path="/x", experiment_fs_path="/y")
    manager = _ExperimentCheckpointManager(storage=storage, checkpoint_period="auto", sync_every_n_trial_checkpoints=1)
    for _ in range(3):
        manager.sync_up_experiment_state(lambda: events.append("save"), force=True)
    saves = [i for i, e in enumerate(events) if e == "save"]
    assert len(saves) == 3 and events.count("copy") == 3, events
    assert all(events[i - 1 : i] == ["wait"] for i in saves) is patched, events


CHECKPOINTING = """
def train(config, session):
    for step in range(1, 6):
        session.report(step, {"score": config["x"] * step}, checkpoint=lambda: {"step": step})
"""


@pytest.mark.parametrize("patched", [True, False])
def test_a_sweep_whose_trials_checkpoint_every_step_saves_the_experiment_on_tunes_schedule(
    ray_local, write_space, tmp_path, quiet_console, monkeypatch, patched
):
    """3 trials keep a checkpoint at each of 5 steps: Tune saves the experiment's state at its start and end
    (its 10 s period is not reached), not after each of the 15 checkpoints, and every trial keeps its last."""
    from mlflow.tracking import MlflowClient
    from ray.tune.execution.tune_controller import TuneController

    from search.driver import plan, runner
    from search.names import CHECKPOINT_STEP_TAG, TRIAL_NUMBER_TAG
    from search.stores.store import Store

    if not patched:  # Ray's hook, left in place by apply()
        monkeypatch.setattr(ray_patches, "missing", lambda: [ray_patches.CHECKPOINT_FIX])
        monkeypatch.setattr(ray_patches, "_warned", {ray_patches.CHECKPOINT_FIX})
        from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

        monkeypatch.setattr(_ExperimentCheckpointManager, "on_trial_checkpoint", ray_patches.RAYS_ON_TRIAL_CHECKPOINT)
    saves = []
    real = TuneController.save_to_dir
    monkeypatch.setattr(TuneController, "save_to_dir", lambda self, *a, **k: saves.append(1) or real(self, *a, **k))
    (tmp_path / "ckpt.py").write_text(CHECKPOINTING)
    raw = {"name": "ckpt", "trainable": f"{tmp_path / 'ckpt.py'}:train", "metric": "score", "mode": "max",
           "space": {"x": {"type": "float", "low": 0.1, "high": 1.0}}, "trials": 3}  # fmt: skip
    outcome = runner.run(plan.prepare(str(write_space(raw))), Store.at(tmp_path / "store"), console=quiet_console)
    assert outcome.counts["complete"] == 3
    if patched:
        assert 1 <= len(saves) <= 3
    else:
        assert len(saves) >= 15
    client = MlflowClient(Store.at(tmp_path / "store").mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("ckpt").experiment_id])
    runs = [r for r in runs if TRIAL_NUMBER_TAG in r.data.tags]
    assert len(runs) == 3
    for run in runs:  # the checkpoint of the last step, whole, in each trial's run
        assert run.data.tags[CHECKPOINT_STEP_TAG] == "5"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
