"""PyTorch Lightning's side of a trainable: ``ReportCallback`` hands every metric the ``LightningModule``
logs to hpsearch's session, once an epoch, so a Lightning script is swept with no glue of its own::

    from trainables.lightning import ReportCallback

    def train(config, session):
        trainer = L.Trainer(max_epochs=config["epochs"], callbacks=[ReportCallback(session)])
        trainer.fit(MyModule(config["lr"]), datamodule=MyData())

What it does, each epoch:

* **reports** every scalar in ``trainer.callback_metrics`` (what ``self.log`` logged: this epoch's validation
  metrics and its training metrics) at the end of each epoch that validated; a module without
  ``validation_step`` (or a trainer with ``limit_val_batches=0``) reports each epoch's training metrics, and
  with ``check_val_every_n_epoch: k`` only every k-th epoch reports (the others would carry the last
  validation's figures as theirs). The step is the epoch counted from 1 (the first epoch is step 1), as every
  hpsearch trainable reports; Optuna's own Lightning callback reports the 0-based epoch, so a pruner's
  ``n_warmup_steps: 2`` waits for two epochs here and three there. The last epoch (``max_epochs``) is
  reported ``final``: a trial is never pruned at its last report.
* **offers the checkpoint lazily**: a Lightning checkpoint (``trainer.save_checkpoint(weights_only=True)``:
  the ``state_dict``, the module's ``hyper_parameters`` and Lightning's version), made only when the
  session keeps it (its metric improved). ``hpsearch export`` writes it as ``model.ckpt``, which
  ``MyModule.load_from_checkpoint("model.ckpt")`` loads.
* **stops the fit** at the epoch's end once the trial's budget is spent (``trainer.should_stop``). A trial
  the pruner stops ends inside its report: Ray Tune raises ``SystemExit`` there, Lightning's exception
  handling runs its teardown (``on_exception`` hooks, loggers closed) and the trial's function ends.

Lightning is the user's dependency (``pip install lightning``), not hpsearch's: this module is imported
only by a trainable that uses it, and nothing of Ray, Optuna or MLflow is imported here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden

from trainables.session import Session, out_of_time, plain


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are one number each (a 0-d tensor as the session takes it, ``plain``), as floats."""
    numbers = plain(dict(metrics)).items()
    return {k: float(v) for k, v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)}


class ReportCallback(L.Callback):
    """Reports each epoch's logged metrics to ``session`` (step = epoch, from 1), offers a Lightning checkpoint
    with each, and stops the fit when the trial's budget is spent."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._validated: int | None = None  # the last epoch whose validation ran

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # Lightning validates at an epoch's end before this hook: its metrics and the epoch's are both here
        if self._validated != trainer.current_epoch and validates(trainer, module):
            return
        metrics = scalars(trainer.callback_metrics)
        if not metrics:
            return
        step = trainer.current_epoch + 1
        final = trainer.max_epochs is not None and trainer.max_epochs > 0 and step >= trainer.max_epochs
        self.session.report(step, metrics, checkpoint=lambda: lightning_checkpoint(trainer), final=final)
        if out_of_time(self.session):
            trainer.should_stop = True


def validates(trainer: L.Trainer, module: L.LightningModule) -> bool:
    """Whether this fit runs a validation loop at all (a ``validation_step``, and batches for it)."""
    return trainer.limit_val_batches != 0 and is_overridden("validation_step", module)


def lightning_checkpoint(trainer: L.Trainer) -> dict[str, Any]:
    """The checkpoint ``trainer.save_checkpoint`` writes (weights, hyper-parameters, Lightning's version),
    as the dictionary ``LightningModule.load_from_checkpoint`` reads back."""
    fd, name = tempfile.mkstemp(suffix=".ckpt")
    os.close(fd)
    path = Path(name)
    try:
        trainer.save_checkpoint(path, weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=False)
    finally:
        path.unlink(missing_ok=True)
