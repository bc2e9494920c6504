"""trainables/lightning.py: a Lightning script swept with the shipped callback, in process and as a sweep."""

import textwrap

import lightning as L
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
from trainables.session import CheckpointKeeper, LocalSession

# A user's script: a LightningModule that saves its hyper-parameters, a DataModule on generated data, and the
# trainable that fits them with the callback. Lightning's handling of an exception leaves a mark (the data
# module's on_exception hook), so a test sees that it ran when a trial was stopped.
SCRIPT = """
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainables.lightning import ReportCallback


MARKS = None  # a folder for the marks, from the config


class Blobs(L.LightningDataModule):
    def on_exception(self, exception):
        if MARKS:
            Path(MARKS, f"{self.lr:.6g}").write_text(type(exception).__name__)

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 4, (512,), generator=g)
        x = torch.randn(512, 8, generator=g) + 2.0 * nn.functional.one_hot(y, 8).float()
        self.train_set, self.val_set = TensorDataset(x[:384], y[:384]), TensorDataset(x[384:], y[384:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=64, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=128)


class Net(L.LightningModule):
    def __init__(self, lr: float, hidden: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def train(config, session):
    global MARKS
    MARKS = config.get("marks")
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=config["epochs"], callbacks=[ReportCallback(session)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
    )
    data = Blobs()
    data.lr = config["lr"]
    trainer.fit(Net(config["lr"]), datamodule=data)
"""


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lit.py").write_text(textwrap.dedent(SCRIPT))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import lit

    return importlib.reload(lit)


def test_each_epoch_is_one_report_from_step_1_with_every_logged_metric_the_last_final(script):
    session = LocalSession(keeper=CheckpointKeeper("val_acc", "max", "best"))
    reports = []
    real = session.report
    session.report = lambda step, metrics, checkpoint=None, final=False: (
        reports.append((step, sorted(metrics), final)) or real(step, metrics, checkpoint, final)
    )
    script.train({"epochs": 3, "lr": 0.5}, session)
    assert reports == [(1, ["train_loss", "val_acc"], False), (2, ["train_loss", "val_acc"], False),
                       (3, ["train_loss", "val_acc"], True)]  # fmt: skip
    accuracies = [m["val_acc"] for _, m in session.history]
    assert session.checkpoint_step == 1 + accuracies.index(max(accuracies))  # the best epoch's weights are kept

    # the kept checkpoint is Lightning's own: load_from_checkpoint gives the module, hyper-parameters and all
    kept = session.last_checkpoint
    path = script.Path("kept.ckpt")
    torch.save(kept, path)
    model = script.Net.load_from_checkpoint(path)
    assert model.hparams.lr == 0.5 and model.hparams.hidden == 16
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept["state_dict"].items())


def test_an_epoch_without_validation_reports_its_training_metrics(script, monkeypatch):
    session = LocalSession()
    monkeypatch.setattr(script.Net, "validation_step", L.LightningModule.validation_step)
    script.train({"epochs": 2, "lr": 0.5}, session)
    assert [(step, sorted(m)) for step, m in session.history] == [(1, ["train_loss"]), (2, ["train_loss"])]


def test_with_validation_every_other_epoch_only_the_epochs_that_validated_report(script, monkeypatch):
    session = LocalSession()
    real = script.L.Trainer

    def every_other(**options):
        return real(**options, check_val_every_n_epoch=2)

    monkeypatch.setattr(script.L, "Trainer", every_other)
    script.train({"epochs": 4, "lr": 0.5}, session)
    assert [(step, sorted(m)) for step, m in session.history] == [
        (2, ["train_loss", "val_acc"]),
        (4, ["train_loss", "val_acc"]),
    ]


def test_a_spent_budget_stops_the_fit_at_the_epochs_end(script):
    session = LocalSession(budget_s=0.0)  # spent before the first epoch ends
    script.train({"epochs": 5, "lr": 0.5}, session)
    assert [step for step, _ in session.history] == [1]


@pytest.mark.slow
def test_a_lightning_sweep_prunes_with_teardown_and_exports_what_load_from_checkpoint_reads(
    ray_local, script, tmp_path, quiet_console
):
    marks = tmp_path / "marks"
    marks.mkdir()
    space = {
        "name": "lit",
        "trainable": "lit.py:train",
        "metric": "val_acc",
        "mode": "max",
        "config": {"epochs": 4, "marks": str(marks)},
        # ofat runs them in this order: one that cannot learn (lr 0), pruned at its 2nd epoch, then two that do
        "space": {"lr": {"type": "categorical", "choices": [0.0, 0.5, 0.4]}},
        "sampler": {"name": "ofat"},
        "pruner": {"name": "threshold", "lower": 0.5, "n_warmup_steps": 2},  # steps count from 1: epoch 2
    }
    (tmp_path / "lit.yaml").write_text(yaml.safe_dump(space))
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare("lit.yaml"), store, console=quiet_console)
    study = optuna.load_study(study_name="lit", storage=store.optuna_url)
    by_lr = {t.params["lr"]: t for t in study.trials}
    assert by_lr[0.0].state == TrialState.PRUNED and by_lr[0.0].user_attrs["pruned_at_step"] == 2
    assert by_lr[0.5].state == TrialState.COMPLETE and sorted(by_lr[0.5].intermediate_values) == [1, 2, 3, 4]
    assert outcome.counts == {"complete": 2, "pruned": 1, "fail": 0}
    # the pruned trial's fit was ended inside its report, and Lightning's exception handling ran
    assert {p.name: p.read_text() for p in marks.iterdir()} == {"0": "SystemExit"}
    client = MlflowClient(store.mlflow_url)
    run = client.get_run(by_lr[0.5].user_attrs["mlflow_run_id"])
    assert {"val_acc", "train_loss"} <= set(run.data.metrics)

    result = CliRunner().invoke(app, ["export", "lit", "out", "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    assert "load_from_checkpoint" in result.output
    model = script.Net.load_from_checkpoint(tmp_path / "out" / "model.ckpt")
    assert model.hparams.lr == study.best_trial.params["lr"]
