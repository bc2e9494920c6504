"""Data from a store is not trusted as a path or shown as a secret: a study name written by any Optuna
client, a password in a URL's query string, credentials in a tracking URI."""

import optuna
import pytest
from typer.testing import CliRunner

from search.commands.cli import app
from search.stores.store import Store, hide_password


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


@pytest.mark.parametrize("name", ["../../victim", "../locks2/x", "a/../../b", ".hidden"])
def test_resume_of_a_study_named_out_of_the_store_touches_nothing_outside_it(tmp_path, name):
    store = Store.at(tmp_path / "store")
    store.create()
    optuna.create_study(study_name=name, storage=store.optuna_url)
    (tmp_path / "victim.lock").write_text("a file of the user's")
    result = run_cli("resume", name, "--store", str(store.root))
    assert result.exit_code == 2 and "cannot name a file in the store" in result.stderr, result.output
    assert (tmp_path / "victim.lock").read_text() == "a file of the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "victim.lock"]
    assert not (store.root / "locks").exists() or not any((store.root / "locks").iterdir())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user@127.0.0.1:1/x?password=PW", "postgresql://user@127.0.0.1:1/x?password=***"),
        ("postgresql://u:PW@h/x?sslmode=require&passwd=PW", "postgresql://u:***@h/x?sslmode=require&passwd=***"),
        ("http://h:5000/?token=PW&x=1", "http://h:5000/?token=***&x=1"),
        ("mysql://h/db?api_key=PW;secret=PW", "mysql://h/db?api_key=***;secret=***"),
        ("http://u:PW@h:5000", "http://u:***@h:5000"),
    ],
)
def test_passwords_and_tokens_are_masked_wherever_a_url_is_shown(url, shown):
    assert hide_password(url) == shown
    assert "PW" not in Store.at("/tmp/s", storage=url).shown_storage or url.startswith("http")


def test_an_unreachable_storage_with_a_password_in_its_query_is_one_line_without_it(tmp_path):
    url = "postgresql://user@127.0.0.1:1/x?password=SECRETPW&connect_timeout=2"
    result = run_cli("sweeps", "--store", str(tmp_path / "s"), "--storage", url)
    assert result.exit_code == 2 and "SECRETPW" not in result.output and "password=***" in result.stderr


def test_credentials_in_a_tracking_uri_go_where_mlflow_takes_them(monkeypatch):
    """MLflow's client takes a tracking server's user and password from the environment, not the URI: the
    URI form works (it was refused as a host name), and the password is never in what is shown."""
    import http.server
    import threading

    from search.stores.infra import check_tracking

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    try:
        port = server.server_address[1]
        store = Store.at("/tmp/unused", tracking_uri=f"http://alice:p%40ss%3Aword@127.0.0.1:{port}")
        assert store.tracking_uri == f"http://127.0.0.1:{port}"
        import os

        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss:word"
        check_tracking(store.mlflow_url)  # the server answers: no "Name or service not known"
        assert "word" not in store.describe()
    finally:
        server.shutdown()


def test_an_archive_appears_whole_or_not_at_all(tmp_path):
    """`run --new` copies a study to NAME@time; a copy a kill interrupted is never listed and is replaced by
    the next --new, an older archive (from before the mark) is kept, and the study goes only once copied."""
    from search.driver.study_setup import ARCHIVING, archive
    from search.readback.sweeps import list_sweeps
    from search.stores.infra import rdb_storage

    store = Store.at(tmp_path / "store")
    store.create()
    storage = rdb_storage(store.optuna_url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for x in (0.1, 0.5, 0.9):
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    half = optuna.create_study(study_name="s@20260101-000000", storage=storage)  # a kill mid-copy
    half.set_user_attr(ARCHIVING, True)
    old = optuna.create_study(study_name="s@20250101-000000", storage=storage)  # an older hpsearch's archive
    assert {r.name for r in list_sweeps(store)} == {"s", "s@20250101-000000"}

    archived = archive(storage, "s")
    names = {s.study_name: s for s in storage.get_all_studies()}
    assert set(names) == {archived, "s@20250101-000000"} and old.study_name in names
    copy = optuna.load_study(study_name=archived, storage=storage)
    assert [t.params["x"] for t in copy.trials] == [0.1, 0.5, 0.9] and copy.user_attrs[ARCHIVING] is False
    assert {r.name for r in list_sweeps(store)} == {archived, "s@20250101-000000"}


def test_a_sqlite_storage_in_a_folder_that_does_not_exist_is_one_line_before_anything_starts(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\ntrainable: flaky\nspace: {x: {type: float, low: 0, high: 1}}\n")
    url = f"sqlite:///{tmp_path}/missing/dir/x.db"
    for command in (["run", str(space)], ["sweeps"]):
        result = run_cli(*command, "--store", str(tmp_path / "store"), "--storage", url)
        assert result.exit_code == 2, result.output
        assert "the folder of the SQLite file" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "store").exists() and not (tmp_path / "missing").exists()
