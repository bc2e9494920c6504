"""A damaged store or a broken service URL: one line naming it, exit 2, nothing written, no password shown."""

import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from search.commands.cli import app
from search.stores.store import Store

SPACE = """name: fine
trainable: flaky
space: {x: {type: float, low: 0.0, high: 1.0}}
trials: 1
"""


def listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def damage(root, how):
    store = root / "store"
    if how == "file-where-the-store-is":
        store.write_text("not a folder")
        return store, "is a file, not a folder"
    store.mkdir()
    if how == "truncated-optuna-db":
        import optuna

        optuna.create_study(study_name="x", storage=f"sqlite:///{store / 'whole.db'}")
        (store / "optuna.db").write_bytes((store / "whole.db").read_bytes()[:5000])
        (store / "whole.db").unlink()
        return store, "optuna.db is damaged (database disk image is malformed)"
    (store / "mlflow.db").write_bytes(bytes(range(256)) * 12)
    return store, "mlflow.db is damaged (file is not a database)"


@pytest.mark.parametrize("how", ["file-where-the-store-is", "truncated-optuna-db", "garbage-mlflow-db"])
@pytest.mark.parametrize(
    "command", [["run", "SPACE"], ["sweeps"], ["compare", "fine"]], ids=["run", "sweeps", "compare"]
)
def test_a_damaged_store_is_one_line_and_left_as_it_was(tmp_path, how, command):
    space = tmp_path / "fine.yaml"
    space.write_text(SPACE)
    store, words = damage(tmp_path, how)
    before = listing(tmp_path)
    args = [str(space) if a == "SPACE" else a for a in command]
    result = CliRunner().invoke(app, [*args, "--store", str(store)])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output[-1000:]
    assert lines[0].startswith("error: --store: ") and words in lines[0]
    assert listing(tmp_path) == before  # nothing created, nothing half-written


@pytest.mark.parametrize(
    "option, url, words",
    [
        ("--storage", "post gres://alice:s3cret@db/x", "not a database URL"),
        ("--tracking-uri", "http://alice:s3cret@localhost:notaport", "not a usable URL"),
        ("--tracking-uri", "http://alice:s3cret@127.0.0.1:9", "cannot reach the MLflow tracking server"),
    ],
)
def test_a_broken_service_url_is_one_line_without_its_password(tmp_path, option, url, words):
    space = tmp_path / "fine.yaml"
    space.write_text(SPACE)
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(tmp_path / "store"), option, url])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output[-1000:]
    assert words in lines[0] and "s3cret" not in result.output
    # a database URL keeps its user, masked; a tracking URI's credentials went where MLflow takes them
    assert ("alice:***@" in lines[0]) if option == "--storage" else ("alice" not in lines[0])
    assert not (tmp_path / "store").exists()


def test_a_store_left_by_a_killed_writer_is_not_called_damaged(tmp_path):
    """A process killed inside a write transaction leaves a hot journal beside the database; the store is
    healthy (SQLite rolls the journal back on the next open) and must be accepted."""
    store = tmp_path / "store"
    store.mkdir()
    db = store / "optuna.db"
    with sqlite3.connect(db) as c:
        c.execute("create table t(x)")
    killed_mid_write = f"""
import os, sqlite3
c = sqlite3.connect({str(db)!r}, isolation_level=None)
c.execute("pragma cache_size=1")  # spill to the file, so the journal is hot
c.execute("begin")
for _ in range(20000):
    c.execute("insert into t values (?)", ("x" * 200,))
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", killed_mid_write], check=True)
    assert (store / "optuna.db-journal").exists()
    Store.at(store).check()  # no SpecError
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from t").fetchone() == (0,)  # rolled back, as SQLite does
