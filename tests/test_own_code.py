"""A user's own code: `hpsearch init`, `file.py:function` and `module:function` trainables in Ray workers,
relative paths, trial logs, an all-failed sweep, and the result taken out (best, train --from, export)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.stores.store import Store
from trainables.session import LocalSession

pytestmark = pytest.mark.slow


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A user's project folder, and `hpsearch` started from it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_writes_a_sweep_that_runs_as_written_and_its_best_comes_out(ray_local, user_dir):
    result = run_cli("init", "digits_mlp")
    assert result.exit_code == 0, result.output
    assert (user_dir / "digits_mlp.py").is_file() and (user_dir / "digits_mlp.yaml").is_file()

    # the files as written, made small: two trials of three epochs
    result = run_cli("run", "digits_mlp.yaml", "--trials", "2", "--set", "config.epochs=3")
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="digits_mlp", storage=Store.at("mlruns").optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)
    assert study.best_value > 0.3  # ten classes: chance is 0.1

    # best -> a file -> train --from retrains exactly that configuration
    result = run_cli("best", "digits_mlp")
    assert result.exit_code == 0, result.output
    best = yaml.safe_load(result.stdout)
    assert best["trial"] == study.best_trial.number and best["value"] == pytest.approx(study.best_value)
    assert best["config"] == {"epochs": 3, "batch_size": 64, **study.best_trial.params}
    assert best["checkpoint"].endswith("checkpoint/checkpoint.pt")
    (user_dir / "best.yaml").write_text(result.stdout)
    result = run_cli("train", "--from", "best.yaml", "--save", "retrained")
    assert result.exit_code == 0, result.output
    assert "step     3" in result.stdout and "step     4" not in result.stdout

    # export: a state dict and its config that plain torch loads into the same architecture
    result = run_cli("export", "digits_mlp", "exported")
    assert result.exit_code == 0, result.output
    saved = torch.load(user_dir / "exported" / "model.pt", weights_only=True)
    assert saved["config"] == best["config"] and saved["trial"] == best["trial"]
    hidden = saved["config"]["hidden"]
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.0), torch.nn.Linear(hidden, 10)
    )
    model.load_state_dict(saved["state_dict"])
    assert model(torch.zeros(1, 64)).shape == (1, 10)


OBJECTIVE = """
from pathlib import Path

def objective(config):
    # a relative path, resolved against where `hpsearch run` was started
    numbers = [float(v) for v in Path(config["data_file"]).read_text().split()]
    print("read", len(numbers), "numbers")
    return -abs(config["x"] - sum(numbers))
"""


def test_file_and_module_trainables_run_in_ray_workers_with_relative_paths(ray_local, user_dir, quiet_console):
    (user_dir / "code").mkdir()
    (user_dir / "code" / "objective.py").write_text(OBJECTIVE)
    (user_dir / "inputs").mkdir()
    (user_dir / "inputs" / "numbers.txt").write_text("0.25 0.5\n")
    (user_dir / "spaces").mkdir()
    space = {
        "name": "own-file",
        "trainable": "../code/objective.py:objective",  # relative to the space file
        "metric": "score",
        "mode": "max",
        "config": {"data_file": "inputs/numbers.txt"},  # relative to the working directory
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"name": "random", "seed": 0},
        "trials": 3,
        "concurrency": 2,
    }
    (user_dir / "spaces" / "own.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(user_dir / "store")
    outcome = runner.run(plan.prepare("spaces/own.yaml"), store, console=quiet_console)
    study = optuna.load_study(study_name="own-file", storage=store.optuna_url)
    assert outcome.counts["complete"] == 3
    for t in study.trials:  # the value the function computed from the file, as its last (and only) step
        assert t.value == pytest.approx(-abs(t.params["x"] - 0.75))
        assert list(t.intermediate_values) == [1]

    # print() output lands beside the trial's Ray directory and in its MLflow run
    client = MlflowClient(store.mlflow_url)
    run_id = study.trials[0].user_attrs["mlflow_run_id"]
    assert "logs/stdout.txt" in [a.path for a in client.list_artifacts(run_id, "logs")]
    logged = (store.root / "ray").glob("own-file-*/trial-0-*/stdout.txt")
    assert "read 2 numbers" in next(logged).read_text()

    # module:function, found on the import path of the space file's folder
    (user_dir / "spaces" / "my_objectives.py").write_text(OBJECTIVE)
    space |= {"name": "own-module", "trainable": "my_objectives:objective", "trials": 1}
    (user_dir / "spaces" / "own-module.yaml").write_text(yaml.safe_dump(space))
    outcome = runner.run(plan.prepare("spaces/own-module.yaml"), store, console=quiet_console)
    assert outcome.counts["complete"] == 1


def test_a_file_and_its_neighbour_changed_between_two_sweeps_run_as_changed(ray_local, user_dir, quiet_console):
    # Ray Tune reuses a trial's worker for the next trial of the same sweep only: a sweep's workers end with
    # it, so the next sweep in this process (the same Ray) imports the user's files again, as they are now.
    def write(scale: int) -> None:
        (user_dir / "helper.py").write_text(f"SCALE = {scale}\n")
        (user_dir / "objective.py").write_text(
            f"import helper\n\ndef objective(config):\n    return helper.SCALE * config['x'] + {scale * 100}\n"
        )

    space = {
        "name": "changing",
        "trainable": "objective.py:objective",
        "metric": "score",
        "mode": "max",
        "space": {"x": {"type": "categorical", "choices": [1.0, 2.0, 3.0]}},
        "sampler": {"name": "grid"},
        "concurrency": 1,  # one worker, reused for the sweep's three trials
    }
    (user_dir / "changing.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(user_dir / "store")
    values = []
    for scale in (1, 2, 5):
        write(scale)
        space["name"] = f"changing-{scale}"
        (user_dir / "changing.yaml").write_text(yaml.safe_dump(space))
        outcome = runner.run(plan.prepare("changing.yaml"), store, console=quiet_console)
        assert outcome.counts["complete"] == 3
        study = optuna.load_study(study_name=f"changing-{scale}", storage=store.optuna_url)
        values.append(sorted(t.value for t in study.trials))
    assert values == [[101, 102, 103], [202, 204, 206], [505, 510, 515]]


FAILING = """
def train(config, session):
    print("about to fail")
    session.report(1, {"score": 0.0})
    raise ValueError(f"bad x {config['x']:.2f}")
"""


def test_a_sweep_where_no_trial_completes_exits_non_zero_with_the_reasons(ray_local, user_dir):
    (user_dir / "failing.py").write_text(FAILING)
    space = {
        "name": "all-fail",
        "trainable": "./failing.py:train",
        "metric": "score",
        "mode": "max",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trials": 2,
    }
    (user_dir / "all-fail.yaml").write_text(yaml.safe_dump(space))
    result = run_cli("run", "all-fail.yaml")
    assert result.exit_code == 1, result.output
    assert "error: no trial completed; 2 failed" in result.stderr
    assert result.stderr.count("ValueError: bad x") >= 2 and "logs: " in result.stderr
    study = optuna.load_study(study_name="all-fail", storage=Store.at("mlruns").optuna_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    error = next(user_dir.glob("mlruns/ray/all-fail-*/trial-0-*/error.txt")).read_text()
    assert 'failing.py", line 5, in train' in error and "ValueError: bad x" in error  # the trace, in the store


def test_a_module_that_fails_as_it_runs_stops_the_sweep_at_fail_fast_with_its_line(ray_local, user_dir):
    """A plain function's file is read, not run, by the driver (trainables/plain_source.py): an error its
    module raises as it runs shows in the first trials, and fail-fast stops the sweep with the module's line."""
    (user_dir / "broken.py").write_text("import math\n\nundefined_name + 1\n\n\ndef train(config):\n    return 0.0\n")
    space = {"name": "broken", "trainable": "./broken.py:train", "metric": "score", "mode": "max",
             "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "trials": 12}  # fmt: skip
    (user_dir / "broken.yaml").write_text(yaml.safe_dump(space))
    result = run_cli("run", "broken.yaml")
    assert result.exit_code == 1, result.output
    assert "its first 3 trials all raised" in result.stderr
    assert "broken.py failed: line 3: NameError: name 'undefined_name' is not defined" in result.stderr
    study = optuna.load_study(study_name="broken", storage=Store.at("mlruns").optuna_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3


READ_NOT_RUN = """
import sys

import json  # a module the driver has not imported: reading the file must not import it
sys.modules["ran_the_file"] = sys


def train(config, session):
    \"\"\"Scores x.\"\"\"
    session.report(1, {"score": config["x"]}, final=True)
"""


def test_a_plain_functions_file_is_read_not_run_until_a_trial_runs_it(user_dir):
    from trainables.registry import get
    from trainables.session import LocalSession

    (user_dir / "read.py").write_text(READ_NOT_RUN)
    spec = get("./read.py:train")
    assert "ran_the_file" not in sys.modules and spec.plain and spec.description == "Scores x."
    session = LocalSession()
    spec.run({"x": 0.25}, session)
    assert "ran_the_file" in sys.modules and session.history == [(1, {"score": 0.25})]
    del sys.modules["ran_the_file"]


def test_a_file_read_not_run_still_finds_its_neighbours_from_any_directory(tmp_path, monkeypatch):
    """Reading checked the file's imports before its folder was on the import path: `from model import ...`
    of a file beside it was refused as not installed when the sweep ran from another directory."""
    from trainables.registry import get
    from trainables.session import LocalSession

    code, elsewhere = tmp_path / "code", tmp_path / "elsewhere"
    code.mkdir(), elsewhere.mkdir()
    (code / "neighbour_of_fit.py").write_text("def helper(x):\n    return 2 * x\n")
    (code / "fit.py").write_text(
        "from neighbour_of_fit import helper\n\n\ndef train(config):\n    return helper(config['x'])\n"
    )
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(code))])
    spec = get(f"{code / 'fit.py'}:train")
    session = LocalSession()
    spec.run({"x": 0.25}, session, metric="score")
    assert session.history == [(1, {"score": 0.5})]


@pytest.mark.parametrize(
    "source, imported",
    [
        ("from trainables.registry import Hyperparameters, trainable\n\n\n"
         "@trainable('read-registered', params=Hyperparameters, metric='s', mode='max')\n"
         "def train(p, session):\n    pass\n", True),  # it registers: only an import can say what
        ("def make():\n    return lambda config: 0.0\n\n\ntrain = make()\n", True),  # made as it runs
        ("import functools\n\n\n@functools.lru_cache\ndef train(config):\n    return 0.0\n", True),
        ("try:\n    import no_such_optional_package\nexcept ImportError:\n    pass\n\n\n"
         "def train(config):\n    return 0.0\n", False),  # an optional import is the trial's business
    ],
)  # fmt: skip
def test_what_reading_cannot_tell_is_imported_as_before(user_dir, source, imported):
    from trainables import registry

    path = user_dir / f"case_{abs(hash(source))}.py"
    path.write_text(source)
    registry.get(f"./{path.name}:train")
    assert (path.resolve() in registry._files) is imported


def test_plain_function_runs_in_process_and_its_return_is_the_last_step(user_dir):
    from trainables.registry import get

    (user_dir / "steps.py").write_text(
        textwrap.dedent(
            """
            def train(config, session):
                for step in (1, 2):
                    session.report(step, {"loss": 1.0 / step})
                return {"loss": 0.25, "test_accuracy": 0.9}
            """
        )
    )
    session = LocalSession()
    get(f"{user_dir / 'steps.py'}:train").run({}, session, metric="loss")
    assert [s for s, _ in session.history] == [1, 2, 3] and session.last["test_accuracy"] == 0.9


def test_train_on_a_plain_functions_space_file_gives_it_every_searched_parameter(user_dir):
    """A plain function has no defaults: `hpsearch train SPACE` passes config plus a value for each searched
    parameter (OFAT's baseline), so it runs instead of failing on a KeyError."""
    (user_dir / "fit.py").write_text(
        "def train(config):\n    return {'score': config['lr'] * config['width'], 'epochs': config['epochs']}\n"
    )
    (user_dir / "fit.yaml").write_text(
        "name: fit\ntrainable: ./fit.py:train\nmetric: score\nmode: max\nconfig: {epochs: 2}\n"
        "space: {lr: {type: float, low: 0.01, high: 1.0, log: true}, width: {type: categorical, choices: [8, 16]}}\n"
    )
    result = run_cli("train", "fit.yaml")
    assert result.exit_code == 0, result.output
    # the space's middle: geometric on a log scale (sqrt(0.01 * 1.0)), the first choice
    assert "searched parameters at: lr=0.1, width=8" in result.stderr
    assert "score=0.8" in result.stdout and "epochs=2" in result.stdout


@pytest.mark.parametrize(
    "override, shown, error",
    [
        ("config.epochs=5", "epochs=5", None),  # run --set's spelling, taken by train as well
        ("epochs=5", "epochs=5", None),
        ("lr=0.5", "score=4  epochs=2", None),  # a searched parameter, fixed for this one trial
        ("config.epoch=5", None,
         "--set config.epoch: no parameter 'epoch' to set (the configuration has: epochs, lr, width)"),
        ("space.lr.low=0.5", None,
         "--set space.lr.low: train runs one configuration: set a hyperparameter by its name"),
    ],
)  # fmt: skip
def test_train_set_takes_a_parameter_by_name_or_as_config_and_refuses_any_other(user_dir, override, shown, error):
    """`train fit.yaml --set config.epochs=2` was accepted silently: a key named 'config.epochs', all epochs run."""
    (user_dir / "fit.py").write_text(
        "def train(config):\n    return {'score': config['lr'] * config['width'], 'epochs': config['epochs']}\n"
    )
    (user_dir / "fit.yaml").write_text(
        "name: fit\ntrainable: ./fit.py:train\nmetric: score\nmode: max\nconfig: {epochs: 2}\n"
        "space: {lr: {type: float, low: 0.01, high: 1.0, log: true}, width: {type: categorical, choices: [8, 16]}}\n"
    )
    result = run_cli("train", "fit.yaml", "--set", override)
    if error is None:
        assert result.exit_code == 0 and shown in result.stdout, result.output
    else:
        # after the note of where the searched parameters are, the one error line
        assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith(f"error: {error}")


def test_unknown_trainable_says_how_to_name_your_own(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\ntrainable: my-net\nspace: {x: {type: float, low: 0, high: 1}}\n")
    result = run_cli("run", str(space), "--store", str(tmp_path / "store"))
    assert result.exit_code == 2
    assert "name your own function as ./file.py:function or package.module:function" in result.stderr
    assert not (tmp_path / "store").exists()


def test_a_trial_that_fails_without_raising_keeps_its_logs_too(ray_local, user_dir, quiet_console):
    # It finishes, but never reports the sweep's metric: FAIL, through Ray's completion path, not its error path.
    (user_dir / "quiet.py").write_text(
        'def train(config):\n    print("trained, reporting the wrong name")\n    return {"loss": 1.0}\n'
    )
    space = {
        "name": "wrong-metric",
        "trainable": "./quiet.py:train",
        "metric": "accuracy",
        "mode": "max",
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trials": 1,
    }
    (user_dir / "wrong-metric.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(user_dir / "store")
    outcome = runner.run(plan.prepare("wrong-metric.yaml"), store, console=quiet_console)
    [(number, line, logs)] = outcome.failures
    assert "metric 'accuracy' was not reported" in line and logs is not None
    assert "reporting the wrong name" in (Path(logs) / "stdout.txt").read_text()


NO_TORCH_FIRST = """
import sys

def train(config, session):
    session.report(1, {"score": float("torch" in sys.modules)})  # before the trainable asks for the device
    device = session.device
    import torch

    session.report(2, {"score": float(torch.get_num_threads())})
    session.report(3, {"score": float(device.type == "cpu")}, final=True)
"""


def test_torch_is_imported_in_a_trial_only_when_its_trainable_asks_for_the_device(user_dir):
    """A trainable without torch (scikit-learn, a no-op) does not wait for torch's import in its worker; one
    that asks for ``session.device`` gets it, with torch's threads set to the trial's CPUs, even where
    OMP_NUM_THREADS says otherwise. A driver of its own: a fresh Ray, whose workers never imported torch."""
    (user_dir / "lazy.py").write_text(NO_TORCH_FIRST)
    (user_dir / "lazy.yaml").write_text(
        "name: lazy\ntrainable: ./lazy.py:train\nmetric: score\nmode: max\nresources: {cpu: 1}\n"
        "space: {x: {type: float, low: 0, high: 1}}\ntrials: 1\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "search.commands.cli", "run", "lazy.yaml", "--store", "store"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="lazy", storage=Store.at("store").optuna_url).trials
    assert trial.intermediate_values == {1: 0.0, 2: 1.0, 3: 1.0}


def test_a_trainable_that_writes_bytes_to_stdout_runs_under_run_as_under_train(ray_local, user_dir, quiet_console):
    """Every trial failed under run ('Tee' object has no attribute 'buffer') and worked under train."""
    (user_dir / "raw.py").write_text(
        "import sys\n\ndef train(config):\n    sys.stdout.buffer.write(b'raw bytes \\xc3\\xa9\\n')\n"
        "    sys.stdout.buffer.flush()\n    sys.stderr.buffer.write(b'to stderr\\n')\n"
        "    return {'score': config['x']}\n"
    )
    space = {"name": "raw", "trainable": "./raw.py:train", "metric": "score", "mode": "max",
             "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "trials": 2}  # fmt: skip
    (user_dir / "raw.yaml").write_text(yaml.safe_dump(space))
    assert run_cli("train", "raw.yaml").exit_code == 0
    store = Store.at(user_dir / "store")
    outcome = runner.run(plan.prepare("raw.yaml"), store, console=quiet_console)
    assert outcome.counts["complete"] == 2 and not outcome.failures, outcome.failures
    logs = sorted((store.root / "ray").glob("raw-*/trial-*/stdout.txt"))
    assert len(logs) == 2 and all("raw bytes é" in p.read_text() for p in logs)
