"""search/infra.py: the doors to the stores."""

import multiprocessing

from search.infra import rdb_storage


def _open(args) -> str:
    path, barrier = args
    barrier.wait()  # every process opens the new database at the same moment
    try:
        rdb_storage(f"sqlite:///{path}").engine.dispose()
        return "ok"
    except Exception as e:  # noqa: BLE001 - the test reports what failed
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"


def test_processes_opening_a_new_study_storage_together_all_succeed(tmp_path):
    """A dashboard or a script opening the Optuna database while the driver creates it: whoever loses the
    race to create the tables opens it again (plain RDBStorage fails about half the time here)."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        barrier = ctx.Manager().Barrier(4)
        with ctx.Pool(4) as pool:
            results = pool.map(_open, [(tmp_path / f"optuna-{round_}.db", barrier)] * 4)
        assert results == ["ok"] * 4
