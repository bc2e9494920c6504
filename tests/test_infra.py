"""search/stores/infra.py: the doors to the stores."""

import subprocess
import sys
import time

import pytest

OPEN = """
import pathlib, sys, time
from search.stores.infra import rdb_storage
folder = pathlib.Path(sys.argv[1])
(folder / f"ready-{sys.argv[2]}").touch()
while not (folder / "go").exists():  # every process opens the new database at the same moment
    time.sleep(0.001)
try:
    rdb_storage(f"sqlite:///{folder}/optuna.db").engine.dispose()
    print("ok")
except Exception as e:
    print(f"{type(e).__name__}: {str(e).splitlines()[0]}")
"""


def test_processes_opening_a_new_study_storage_together_all_succeed(tmp_path):
    """A dashboard or a script opening the Optuna database while the driver creates it: whoever loses the
    race to create the tables opens it again (plain RDBStorage failed 21 of 40 such opens here). Fresh
    interpreters, not forks: the test process may hold Ray's threads."""
    for round_ in range(3):
        folder = tmp_path / str(round_)
        folder.mkdir()
        procs = [
            subprocess.Popen([sys.executable, "-c", OPEN, str(folder), str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(4)
        ]
        deadline = time.monotonic() + 60
        while len(list(folder.glob("ready-*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        (folder / "go").touch()
        results = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert results == ["ok"] * 4


def test_select_reads_a_sqlite_file_with_sqlite3_and_any_other_url_through_sqlalchemy_alike(tmp_path):
    import sqlite3

    from search.stores.infra import in_list, select, sqlite_path

    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE m (run TEXT, key TEXT, value REAL)")
        db.executemany("INSERT INTO m VALUES (?, ?, ?)", [("a", "x", 1.0), ("b", "x", 2.0), ("c", "y", 3.0)])
    runs, params = in_list("r", ["a", "c", "zz"])
    sql = f"SELECT run, key, value FROM m WHERE run IN {runs} ORDER BY run"
    plain, with_options = f"sqlite:///{path}", f"sqlite:///{path}?timeout=5"
    assert sqlite_path(plain) == path and sqlite_path(with_options) is None
    assert select(plain, sql, params) == [("a", "x", 1.0), ("c", "y", 3.0)]
    assert select(with_options, sql, params) == select(plain, sql, params)  # through SQLAlchemy
    with pytest.raises(sqlite3.OperationalError):  # opened to read: nothing can be written through it
        select(plain, "INSERT INTO m VALUES ('d', 'x', 4.0)", {})


def test_select_reads_a_file_a_killed_writer_left_a_journal_beside_through_sqlalchemy(tmp_path, killed_mid_write):
    """A read-only sqlite3 connection cannot roll back a killed writer's half-done transaction (it fails
    with "attempt to write a readonly database"); SQLAlchemy's connection may write, and does."""
    import sqlite3

    from search.stores.infra import select

    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE m (key TEXT)")
        db.execute("INSERT INTO m VALUES ('kept')")
    killed_mid_write(path, "INSERT INTO m VALUES (?)")
    assert select(f"sqlite:///{path}", "SELECT key FROM m", {}) == [("kept",)]
    assert not path.with_name("t.db-journal").exists()  # rolled back
