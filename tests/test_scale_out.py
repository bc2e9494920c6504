"""Scale-out against real services on this machine: a two-node Ray cluster started with ``ray start``, a
PostgreSQL server (Debian's package) as the Optuna storage, an ``mlflow server`` as the tracking URI.

Each fixture starts its own service on free loopback ports with throwaway directories, and stops what it
started, and only that (the test session's own local Ray keeps running).
"""

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.commands.servers import free_port
from search.readback.sweeps import list_sweeps
from search.stores.store import Store

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def addition_space(name: str, trials: int = 4, **extra) -> dict:
    return {
        "name": name,
        "trainable": "addition-cnn",
        "config": {"epochs": 3, "embed_dim": 8, "channels": 8},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 1},
        "trials": trials,
        "concurrency": 2,
        **extra,
    }


# ----------------------------------------------------------------------------- a two-node Ray cluster


@pytest.fixture
def ray_cluster(tmp_path):
    """Head and worker, 1 CPU each, each with its own custom resource; token authentication as Ray's default."""
    temp = Path(tempfile.mkdtemp(prefix="hpr-"))  # Ray's socket paths must stay short
    token = temp / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    nodes = []
    try:
        nodes.append(
            subprocess.Popen(
                [
                    BIN / "ray",
                    "start",
                    "--head",
                    f"--port={port}",
                    f"--temp-dir={temp}",
                    "--include-dashboard=false",
                    '--resources={"node_head": 1}',
                    *common,
                ],
                env=env,
                stdout=open(tmp_path / "head.log", "w"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
        wait_for(lambda: (temp / "session_latest").exists() and _port_open(port), "the Ray head")
        nodes.append(
            subprocess.Popen(
                [BIN / "ray", "start", f"--address=127.0.0.1:{port}", '--resources={"node_worker": 1}', *common],
                env=env,
                stdout=open(tmp_path / "worker.log", "w"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
        address = f"127.0.0.1:{port}"
        wait_for(lambda: len(cluster_nodes(address, env)) == 2, "the second Ray node")
        yield address, env
    finally:
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp, ignore_errors=True)


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def cluster_nodes(address: str, env: dict) -> dict[str, str]:
    """node id -> its custom label (node_head / node_worker), asked of the cluster in a separate process."""
    code = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR');"
        "print(json.dumps({n['NodeID']: [k for k in n['Resources'] if k.startswith('node_') and ':' not in k]"
        " for n in ray.nodes() if n['Alive']}))" % address
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return {}
    return {node: labels[0] for node, labels in json.loads(done.stdout.strip().splitlines()[-1]).items() if labels}


@pytest.mark.campaign
def test_sweep_on_a_two_node_cluster_places_trials_on_both_nodes(ray_cluster, tmp_path, write_space):
    address, env = ray_cluster
    store = tmp_path / "store"
    space = write_space(addition_space("on-cluster"))
    done = subprocess.run(
        [BIN / "hpsearch", "run", str(space), "--store", str(store), "--address", address],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    study = optuna.load_study(study_name="on-cluster", storage=f"sqlite:///{store}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.intermediate_values) == 3 for t in study.trials)
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("on-cluster").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}

    labels = cluster_nodes(address, env)
    assert sorted(labels.values()) == ["node_head", "node_worker"]
    placed = {labels[r.data.tags["ray.node_id"]] for r in children}
    assert placed == {"node_head", "node_worker"}  # Ray spread the trials over both nodes
    assert {t.user_attrs["ray_node_id"] for t in study.trials} == set(labels)


def test_a_trial_asking_for_a_resource_no_node_has_is_refused(tmp_path, write_space, ray_local):
    store = tmp_path / "store"
    space = write_space(addition_space("too-big", resources={"cpu": 1, "gpu": 1}))
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {space}: resources: a trial asks for CPU 1, GPU 1, but no Ray node has that much")
    assert not store.exists()


# ----------------------------------------------------------------------------- PostgreSQL and an MLflow server


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres(missing_service):
    """A throwaway PostgreSQL on a loopback port; as root, its processes run as the postgres user."""
    bindir = postgres_bindir()
    if bindir is None:
        missing_service("PostgreSQL is not installed here (Debian: apt-get install postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    root.chmod(0o755)
    data, port = root / "data", free_port()
    pg = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], check=True, capture_output=True, text=True)  # noqa: E731
    pg(bindir / "initdb", "-D", data, "-A", "trust", "-U", "hpsearch", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-o", options, "-w", "start")
    try:
        pg(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "hpsearch", "hpsearch")
        yield f"postgresql://hpsearch@127.0.0.1:{port}/hpsearch"
    finally:
        pg(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{url}/health") == "OK", "mlflow server", timeout=120)
        yield url, root
    finally:
        stop(process)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


def test_sweep_with_postgres_study_and_mlflow_server(
    postgres, mlflow_server, ray_local, tmp_path, write_space, monkeypatch
):
    tracking_uri, server_root = mlflow_server
    # Storage and tracking URI from the space file, as a team would commit them.
    space = write_space(addition_space("team-sweep", cluster={"storage": postgres, "tracking_uri": tracking_uri}))
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert not (store / "optuna.db").exists() and not (store / "mlflow.db").exists()  # nothing went local

    study = optuna.load_study(study_name="team-sweep", storage=postgres)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("team-sweep").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    for t in study.trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "exact_match")] == [1, 2, 3]
    # Artifacts went through the server, into its artifacts destination.
    assert "checkpoint" in [a.path for a in client.list_artifacts(children[0].info.run_id)]
    assert list((server_root / "artifacts").rglob("checkpoint.pt"))

    # Named by the flag instead, the same database: the study is continued, not started again.
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store), "--trials", "1", "--storage", postgres])
    assert result.exit_code == 0, result.output
    assert len(optuna.load_study(study_name="team-sweep", storage=postgres).trials) == 5

    # hpsearch dashboard on the PostgreSQL storage lists the study.
    port = free_port()
    dashboard = subprocess.Popen(
        [BIN / "hpsearch", "dashboard", "--storage", postgres, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/api/studies") is not None, "optuna-dashboard")
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        assert "team-sweep" in [s["study_name"] for s in studies]
    finally:
        stop(dashboard)
    assert dashboard.returncode == 0 and not _port_open(port)  # SIGTERM took optuna-dashboard down with it

    # hpsearch sweeps reads the same database.
    listed = CliRunner().invoke(app, ["sweeps", "--storage", postgres])
    assert listed.exit_code == 0 and f"sweeps in {postgres}" in listed.stdout
    rows = list_sweeps(Store.at(tmp_path / "elsewhere", storage=postgres))
    assert [(r.name, r.counts["complete"]) for r in rows] == [("team-sweep", 5)]


# ----------------------------------------------------------------------------- out of reach


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--address", "127.0.0.1:{port}", "--address: cannot reach the Ray cluster at 127.0.0.1:{port}"),
        ("--storage", "postgresql://hp:secret@127.0.0.1:{port}/hp",
         "--storage: cannot reach the Optuna storage postgresql://hp:***@127.0.0.1:{port}/hp"),
        ("--tracking-uri", "http://127.0.0.1:{port}",
         "--tracking-uri: cannot reach the MLflow tracking server http://127.0.0.1:{port}"),
        ("--storage", "nosuchdb://x", "--storage: not a database URL"),
    ],
    ids=["ray", "postgres", "mlflow", "bad-url"],
)  # fmt: skip
def test_unreachable_service_is_one_line_exit_2_and_nothing_written(flag, value, message, tmp_path, write_space):
    port = free_port()  # nothing listens there
    store = tmp_path / "store"
    space = write_space(addition_space("unreachable"))
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store), flag, value.format(port=port)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message.format(port=port)}")
    assert "secret" not in line
    assert not store.exists()
