"""A damaged store or a broken service URL: one line naming it, exit 2, nothing written, no password shown."""

import pytest
from typer.testing import CliRunner

from search.cli import app

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
    assert words in lines[0] and "alice:***@" in lines[0] and "s3cret" not in result.output
    assert not (tmp_path / "store").exists()
