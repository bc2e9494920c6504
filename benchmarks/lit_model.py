"""A user's own Lightning script, as benchmarks/framework.py sweeps it: a LightningModule and a DataModule on
generated data (ten Gaussian clusters in 32 dimensions; no download), trained by a ``Trainer``.

``fit(config, callbacks)`` is the whole of it; the two ways to sweep it add only what each tool asks of
them: plain Optuna's ``objective`` (its ``PyTorchLightningPruningCallback``) and hpsearch's ``train`` (its
shipped ``trainables.lightning.ReportCallback``, which also keeps the best epoch's Lightning checkpoint).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

EPOCHS = 8


class Clusters(L.LightningDataModule):
    """Ten classes, each a Gaussian cluster around its own centre, with noise that makes them overlap."""

    def __init__(self, n: int = 6000, dim: int = 32, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.n, self.dim, self.batch_size, self.seed = n, dim, batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        centres = torch.randn(10, self.dim, generator=gen)
        y = torch.randint(0, 10, (self.n,), generator=gen)
        x = centres[y] + 1.6 * torch.randn(self.n, self.dim, generator=gen)
        split = int(0.8 * self.n)
        self.train_set = TensorDataset(x[:split], y[:split])
        self.valid_set = TensorDataset(x[split:], y[split:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, batch_size=512)


class Classifier(L.LightningModule):
    def __init__(self, lr: float, hidden: int, dropout: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(32, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        )  # fmt: skip

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        self.log("valid_accuracy", (self.net(x).argmax(-1) == y).float().mean(), prog_bar=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def fit(config: dict, callbacks: list[L.Callback]) -> float:
    """Train one configuration; the last epoch's validation accuracy."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    model = Classifier(config["lr"], config["hidden"], config["dropout"])
    trainer.fit(model, datamodule=Clusters())
    return float(trainer.callback_metrics["valid_accuracy"])


def objective(trial) -> float:  # noqa: ANN001 - plain Optuna's objective (an optuna.Trial)
    from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

    config = {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "hidden": trial.suggest_int("hidden", 16, 128, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }
    return fit(config, [PyTorchLightningPruningCallback(trial, monitor="valid_accuracy")])


def train(config: dict, session) -> None:  # noqa: ANN001 - hpsearch's Session
    from trainables.lightning import ReportCallback

    fit(config, [ReportCallback(session)])
