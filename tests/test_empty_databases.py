"""search/stores/empty_databases.py: a new store's databases are copies of empty ones made once, the same as
those Optuna and MLflow make in place, and made in place where the cache cannot be used."""

import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.driver.study_setup import init_store
from search.stores import empty_databases
from search.stores.store import Store


def schema(path: Path) -> list[tuple]:
    """The database's tables and indexes (each one's lines as a set: MLflow itself writes a table's
    constraints in an order that differs from run to run), and the schema versions Alembic stamped."""
    with closing(sqlite3.connect(path)) as db:
        tables = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        stamped = db.execute("SELECT version_num FROM alembic_version").fetchall()
    lines = [(kind, name, sorted(ln.strip(" ,\t") for ln in (sql or "").splitlines())) for kind, name, sql in tables]
    return [*lines, *stamped]


@pytest.fixture(scope="module")
def made_in_place(tmp_path_factory) -> dict[str, Path]:
    """Both databases as Optuna and MLflow make them themselves."""
    folder = tmp_path_factory.mktemp("in-place")
    optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}").engine.dispose()
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments(max_results=1)
    return {"optuna.db": folder / "optuna.db", "mlflow.db": folder / "mlflow.db"}


def test_stores_made_from_the_cache_hold_what_optuna_and_mlflow_make(made_in_place, tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    stores = [Store.at(tmp_path / f"store-{i}") for i in range(3)]
    for store in stores:
        init_store(store)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert [name.split("-")[0] for name in cached] == ["mlflow", "optuna"], cached  # made once, then copied
    for store in stores:
        for name, reference in made_in_place.items():
            assert schema(store.root / name) == schema(reference), name
        client = MlflowClient(store.mlflow_url)
        default = client.get_experiment("0")
        assert default.name == "Default" and default.artifact_location == str(store.artifacts / "0")
        study = optuna.create_study(study_name="s", storage=store.optuna_url)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)  # each copy is a database of its own
        assert len(optuna.load_study(study_name="s", storage=store.optuna_url).trials) == 3
        assert client.create_experiment("e") == "1"
    assert [p.name for p in stores[0].root.iterdir() if p.name.startswith(".")] == []  # no partial copy left


@pytest.mark.parametrize("cache", ["a file", "below a file"])
def test_a_cache_that_cannot_be_used_makes_the_databases_in_place(cache, made_in_place, tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")
    folder = tmp_path / "cache" if cache == "a file" else tmp_path / "cache" / "hpsearch"
    monkeypatch.setenv("HPSEARCH_CACHE", str(folder))
    store = Store.at(tmp_path / "store")
    init_store(store)
    for name, reference in made_in_place.items():
        assert schema(store.root / name) == schema(reference), name


def test_a_damaged_cached_database_is_made_again(made_in_place, tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    init_store(Store.at(tmp_path / "first"))
    for path in (tmp_path / "cache").iterdir():
        path.write_bytes(path.read_bytes()[:5000])  # truncated: SQLite's check fails
    store = Store.at(tmp_path / "second")
    init_store(store)
    for name, reference in made_in_place.items():
        assert schema(store.root / name) == schema(reference), name
    assert all(empty_databases._whole(p) for p in (tmp_path / "cache").iterdir())
