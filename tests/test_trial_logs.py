"""A trial's logs: the store keeps the whole log, its MLflow run a copy cut to ARTIFACT_CAP that says where
the whole one is (a trial printing 50 MB was stored twice)."""

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.driver import plan, runner
from search.stores.store import Store
from search.stores.trial_logs import for_artifacts


def lines(n: int) -> bytes:
    return b"".join(f"line {i:07d}\n".encode() for i in range(n))  # 13 bytes a line


@pytest.mark.parametrize("n", [10, 76, 77, 78, 5000])
def test_a_log_over_the_cap_is_cut_to_its_head_and_tail_with_a_line_that_says_so(n, tmp_path):
    cap = 1000
    path = tmp_path / "stdout.txt"
    path.write_bytes(lines(n))
    size = path.stat().st_size
    with for_artifacts([path], cap=cap) as (logged,):
        text = logged.read_bytes()
        assert logged.name == "stdout.txt"
    if size <= cap:
        assert logged == path and text == lines(n)
        return
    head, marker, tail = text.split(b"\n[hpsearch: ")[0], *text.split(b"\n[hpsearch: ")[1].split(b"]\n", 1)
    assert head == lines(n)[: cap // 4]
    assert tail == lines(n)[size - (cap - cap // 4) :]
    assert marker.decode() == f"{size - cap:,} bytes cut here, the log is {size:,} bytes; the whole log is {path}"
    assert not logged.exists()  # the cut copy lives only while it is logged
    assert path.read_bytes() == lines(n)  # the whole log is untouched


def test_a_large_stdout_beside_a_small_stderr_is_cut_and_the_stderr_kept_whole(tmp_path):
    """One small log beside a large one let the large one go to MLflow whole."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    out.write_bytes(lines(5000))
    err.write_bytes(lines(3))
    with for_artifacts([out, err], cap=1000) as (logged_out, logged_err):
        assert logged_out != out and logged_out.stat().st_size < 1200 and b"bytes cut here" in logged_out.read_bytes()
        assert logged_err == err


PRINTER = """
def printer(config):
    for i in range(config["lines"]):
        print(f"line {i:07d}")
    return config["x"]
"""


@pytest.mark.slow
def test_a_trial_that_prints_megabytes_keeps_them_once_in_the_store(ray_local, tmp_path, monkeypatch, quiet_console):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "printer.py").write_text(PRINTER)
    space = {
        "name": "loud",
        "trainable": "printer.py:printer",
        "metric": "x",
        "mode": "max",
        "config": {"lines": 100_000},  # 1.3 MB
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trials": 1,
    }
    (tmp_path / "loud.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(tmp_path / "store")
    runner.run(plan.prepare("loud.yaml"), store, console=quiet_console)
    whole = next((store.root / "ray").glob("loud-*/trial-0-*/stdout.txt"))
    assert whole.read_bytes().endswith(lines(100_000))  # after Ray's own first line (the actor's name)
    trial = optuna.load_study(study_name="loud", storage=store.optuna_url).trials[0]
    client = MlflowClient(store.mlflow_url)
    logged = Path(client.download_artifacts(trial.user_attrs["mlflow_run_id"], "logs/stdout.txt", str(tmp_path)))
    text = logged.read_text()
    assert len(text) < 1.01 * (1 << 20)
    assert "\nline 0000000\n" in text[:100] and text.endswith("line 0099999\n")
    assert f"the whole log is {whole}]" in text


CHATTY = """
import logging, os, sys

# As Lightning and most libraries do: a handler made at import holds the sys.stderr of that moment.
log = logging.getLogger("chatty")
log.addHandler(logging.StreamHandler())
log.setLevel(logging.INFO)
OUT = sys.stdout


def chatty(config):
    log.info("logged by x=%s in pid %s", config["x"], os.getpid())
    OUT.write(f"printed by x={config['x']}\\n")
    return {"x": config["x"]}
"""


@pytest.mark.slow
def test_a_reused_worker_writes_each_trials_lines_to_that_trials_log(ray_local, tmp_path, monkeypatch, quiet_console):
    """Frameworks' log lines landed in the first trial's closed stream (a Ray warning in another trial's log)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chatty.py").write_text(CHATTY)
    space = {"name": "chatty", "trainable": "chatty.py:chatty", "metric": "x", "mode": "max",
             "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "trials": 3}  # fmt: skip
    (tmp_path / "chatty.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(tmp_path / "store")
    runner.run(plan.prepare("chatty.yaml"), store, console=quiet_console)
    trials = optuna.load_study(study_name="chatty", storage=store.optuna_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    pids = set()
    for t in trials:
        folder = next((store.root / "ray").glob(f"chatty-*/trial-{t.number}-*"))
        err, out = ((folder / f).read_text() if (folder / f).exists() else "" for f in ("stderr.txt", "stdout.txt"))
        logged = [line for line in err.splitlines() if line.startswith("logged by")]
        assert len(logged) == 1 and logged[0].startswith(f"logged by x={t.params['x']} in pid "), err
        assert [line for line in out.splitlines() if line.startswith("printed by")] == [f"printed by x={t.params['x']}"]
        assert "ValueError" not in err + out
        pids.add(logged[0].rsplit(" ", 1)[1])
    assert len(pids) == 1  # one worker ran the three trials one after the other: the case that went wrong
