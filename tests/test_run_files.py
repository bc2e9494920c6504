"""search/readback/run_files.py: a run's parent and files, read from MLflow's tables and the artifact
folder, are what MLflow's client gives."""

import pytest
from mlflow.tracking import MlflowClient

from search.readback import run_files
from search.stores.store import Store


@pytest.fixture
def runs(tmp_path) -> tuple[Store, dict[str, str]]:
    """A parent run with space.yaml, two children (one with a checkpoint) and a run with no parent."""
    store = Store.at(tmp_path / "store")
    store.create()
    client = MlflowClient(store.mlflow_url)
    experiment = client.create_experiment("e", artifact_location=store.artifacts.as_uri())
    ids = {"parent": client.create_run(experiment).info.run_id}
    for name in ("with checkpoint", "without", "alone"):
        tags = {} if name == "alone" else {run_files.PARENT_TAG: ids["parent"]}
        ids[name] = client.create_run(experiment, tags=tags).info.run_id
    source = tmp_path / "files"
    (source / "checkpoint").mkdir(parents=True)
    (source / "checkpoint" / "checkpoint.pt").write_bytes(b"weights")
    (source / "space.yaml").write_text("name: s\nconfig: {epochs: 3}\n")
    client.log_artifacts(ids["with checkpoint"], str(source / "checkpoint"), "checkpoint")
    client.log_artifact(ids["parent"], str(source / "space.yaml"))
    return store, ids


def test_the_tables_give_what_mlflows_client_gives(runs):
    store, ids = runs
    for name, run_id in ids.items():
        from_tables = run_files.run_of(store, run_id)
        assert from_tables == run_files._from_client(store.mlflow_url, run_id), name
        assert from_tables.run_id == run_id
    assert run_files.run_of(store, ids["with checkpoint"]).parent_id == ids["parent"]
    assert run_files.run_of(store, ids["without"]).parent_id == ids["parent"]
    assert run_files.run_of(store, ids["alone"]).parent_id is None
    assert run_files.run_of(store, ids["parent"]).parent_id is None


def test_an_unknown_run_is_none_both_ways(runs):
    store, _ = runs
    assert run_files.run_of(store, "0" * 32) is None
    assert run_files._from_client(store.mlflow_url, "0" * 32) is None


@pytest.mark.parametrize("local", [True, False])
def test_files_are_found_and_read_where_they_lie_or_through_mlflow(runs, tmp_path, monkeypatch, local):
    store, ids = runs
    if not local:  # an artifact root that is not a file here: MLflow's client fetches it
        monkeypatch.setattr(run_files, "_local", lambda uri, path: None)
    with_checkpoint, without, parent = (
        run_files.run_of(store, ids[n]) for n in ("with checkpoint", "without", "parent")
    )
    assert run_files.has(store, with_checkpoint, "checkpoint/checkpoint.pt")
    assert not run_files.has(store, without, "checkpoint/checkpoint.pt")
    assert not run_files.has(store, with_checkpoint, "checkpoint/other.pt")
    assert not run_files.has(store, parent, "checkpoint/checkpoint.pt")
    assert run_files.fetch(store, with_checkpoint, "checkpoint/checkpoint.pt", tmp_path).read_bytes() == b"weights"
    assert run_files.fetch(store, parent, "space.yaml", tmp_path).read_text() == "name: s\nconfig: {epochs: 3}\n"
    with pytest.raises(FileNotFoundError):
        run_files.fetch(store, without, "checkpoint/checkpoint.pt", tmp_path)


def test_tables_it_cannot_read_are_asked_through_mlflows_client(runs, monkeypatch):
    store, ids = runs

    def broken(*args):
        raise RuntimeError("no such table: runs")

    monkeypatch.setattr(run_files, "_from_tables", broken)
    assert run_files.run_of(store, ids["without"]).parent_id == ids["parent"]


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("file:///tmp/a%20b/artifacts", "/tmp/a b/artifacts/x/y.pt"),
        ("/tmp/plain/artifacts", "/tmp/plain/artifacts/x/y.pt"),
        ("file://localhost/tmp/c", "/tmp/c/x/y.pt"),
        ("mlflow-artifacts:/0/abc/artifacts", None),
        ("s3://bucket/0/abc/artifacts", None),
        ("file://otherhost/tmp/c", None),
    ],
)
def test_which_artifact_roots_are_files_here(uri, local):
    found = run_files._local(uri, "x/y.pt")
    assert (None if found is None else str(found)) == local


BEST = """
import sys
from typer.testing import CliRunner
from search.commands.cli import app
result = CliRunner().invoke(app, ["best", "s", "--store", sys.argv[1], "--format", "json"])
assert result.exit_code == 0, result.output
print(result.stdout)
print(sorted(m for m in ("ray", "mlflow", "torch", "sqlalchemy", "alembic") if m in sys.modules))
"""


def test_best_reads_the_trials_run_its_space_and_checkpoint_without_importing_mlflow(runs):
    """`hpsearch best` took 5.4 s, most of it importing MLflow for three facts of one run."""
    import json
    import subprocess
    import sys

    import optuna

    from search.names import RUN_ID_ATTR

    store, ids = runs
    study = optuna.create_study(study_name="s", storage=store.optuna_url, direction="maximize")
    for value, run in ((0.2, "without"), (0.9, "with checkpoint"), (0.5, "alone")):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.001, 0.1)})
        trial.set_user_attr(RUN_ID_ATTR, ids[run])
        study.tell(trial, value)
    done = subprocess.run([sys.executable, "-c", BEST, str(store.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    *shown, imported = done.stdout.strip().splitlines()
    best = json.loads("\n".join(shown))
    assert (best["value"], best["mlflow_run_id"]) == (0.9, ids["with checkpoint"])
    assert best["checkpoint"].endswith(f"{ids['with checkpoint']}/artifacts/checkpoint/checkpoint.pt")
    assert best["config"] == {"epochs": 3, "lr": best["params"]["lr"]}  # the parent's space.yaml, its trial
    assert imported == "[]"
