"""search/stores/empty_databases.py: a new store's databases are copies of empty ones made once, the same as
those Optuna and MLflow make in place, and made in place where the cache cannot be used."""

import os
import sqlite3
import subprocess
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
    kinds = {p: p.name.partition("-")[0] for p in (tmp_path / "cache").iterdir()}
    assert all(empty_databases.trusted(p, kind) for p, kind in kinds.items())


def poison(path: Path, statement: str, *args) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(statement, args)


def cached(tmp_path: Path, kind: str) -> Path:
    return next(p for p in (tmp_path / "cache").iterdir() if p.name.startswith(f"{kind}-"))


POISONS = {
    # an experiment named as the sweep will be, keeping its artifacts elsewhere: every run's files go there
    "an experiment pointing elsewhere": (
        "mlflow", "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, workspace) "
        "VALUES (7, 'sweep', ?, 'active', 'default')",
    ),
    # the same, quieter: every new experiment's location rewritten as it is made
    "a trigger": (
        "mlflow", "CREATE TRIGGER t AFTER INSERT ON experiments BEGIN UPDATE experiments SET artifact_location = "
        "'/elsewhere' WHERE experiment_id = NEW.experiment_id; END",
    ),
    "a study already there": ("optuna", "INSERT INTO studies (study_id, study_name) VALUES (5, 'sweep')"),
}


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_cached_database_decides_nothing_in_a_new_store(how, made_in_place, tmp_path, monkeypatch):
    """Whoever writes the cache must not decide where a new store's artifacts go (nor what its study holds)."""
    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    init_store(Store.at(tmp_path / "first"))
    kind, statement = POISONS[how]
    elsewhere = tmp_path / "elsewhere"
    poison(cached(tmp_path, kind), statement, *([str(elsewhere)] if "?" in statement else []))
    store = Store.at(tmp_path / "second")
    init_store(store)
    for name, reference in made_in_place.items():
        assert schema(store.root / name) == schema(reference), name
    client = MlflowClient(store.mlflow_url)
    assert client.get_experiment_by_name("sweep") is None
    new = client.get_experiment(client.create_experiment("sweep2", artifact_location=str(store.artifacts / "s")))
    assert new.artifact_location == str(store.artifacts / "s")
    assert optuna.get_all_study_names(store.optuna_url) == []
    assert empty_databases.trusted(cached(tmp_path, kind), kind)  # the template was made again


def test_a_cached_database_of_the_wrong_kind_is_not_taken(made_in_place, tmp_path, monkeypatch):
    """Optuna's empty database under MLflow's name passed SQLite's check and broke the store for good."""
    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
    init_store(Store.at(tmp_path / "first"))
    cached(tmp_path, "mlflow").write_bytes(cached(tmp_path, "optuna").read_bytes())
    store = Store.at(tmp_path / "second")
    init_store(store)
    assert schema(store.root / "mlflow.db") == schema(made_in_place["mlflow.db"])
    assert MlflowClient(store.mlflow_url).get_experiment("0").name == "Default"


def test_a_cache_others_can_write_is_not_used(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache))
    init_store(Store.at(tmp_path / "first"))
    made = []
    for mode in (0o777, 0o775):
        cache.chmod(mode)
        empty_databases.create(tmp_path / f"optuna-{mode}.db", "optuna-test", made.append)
    assert made == [f"sqlite:///{tmp_path / 'optuna-511.db'}", f"sqlite:///{tmp_path / 'optuna-509.db'}"]
    cache.chmod(0o700)
    template = next(cache.glob("optuna-*.db"))
    template.chmod(0o666)
    empty_databases.create(tmp_path / "optuna-666.db", template.stem, made.append)
    assert made[-1] == f"sqlite:///{tmp_path / 'optuna-666.db'}"


def test_an_unwritable_cache_makes_the_database_in_place_without_trying_it(tmp_path, monkeypatch):
    """MLflow retried an unwritable file for about 100 s before the database was made in place."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache))
    # immutable (root writes through any mode bits), else read-only for a user
    immutable = os.getuid() == 0 and subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode == 0
    if not immutable:
        cache.chmod(0o500)
    try:
        made = []
        empty_databases.create(tmp_path / "mlflow.db", "mlflow-test", made.append)
        assert made == [f"sqlite:///{tmp_path / 'mlflow.db'}"]  # never a partial in the cache
    finally:
        subprocess.run(["chattr", "-i", str(cache)], capture_output=True)
        cache.chmod(0o700)
