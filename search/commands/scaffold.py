"""``hpsearch init NAME``: a trainable and its space file that run as written, for a user to edit.

The trainable is a plain function (a dict in, reports out), the shape most training scripts already
have; the space file names it by path, so nothing needs registering. Both files say in comments what
to change and what each key does.
"""

from __future__ import annotations

import re
from pathlib import Path

from search.errors import SpecError

TRAINABLE = '''"""{name}: a trainable for hpsearch. Replace the data and the model with yours; keep the shape.

Try it once, no sweep:   hpsearch train ./{name}.py:train --set lr=0.01
Sweep it:                hpsearch run {name}.yaml

`config` is a dict: the space file's `config:` plus the values Optuna picked for this trial. `session` is
how the trial talks back: report metrics each epoch, hand over a checkpoint, read the device and budget.
This file needs no hpsearch import; print() output lands in the trial's log (the sweep says where).
Relative paths are resolved against the folder where `hpsearch run` was started.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


def load_data(device: torch.device) -> tuple[torch.Tensor, ...]:
    """scikit-learn's 8x8 digits (ships with the package): 1,437 images to train on, 360 to validate."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).flatten(1) / 16
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))  # the same split every trial
    train, valid = order[:1437], order[1437:]
    return x[train].to(device), y[train].to(device), x[valid].to(device), y[valid].to(device)


def train(config: dict, session) -> None:
    """An MLP on scikit-learn's digits: a stand-in for your own model and data."""
    torch.manual_seed(config.get("seed", 0))
    epochs, batch_size = config.get("epochs", 20), config.get("batch_size", 64)
    hidden, dropout = config.get("hidden", 64), config.get("dropout", 0.1)
    x_train, y_train, x_valid, y_valid = load_data(session.device)

    model = nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)
    ).to(session.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.get("lr", 1e-3))

    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x_train)).split(batch_size):
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_valid)
        last = epoch == epochs
        session.report(
            epoch,  # steps count from 1; the pruner compares trials at equal steps
            {
                "train_loss": total / len(x_train),
                "valid_loss": F.cross_entropy(logits, y_valid).item(),
                "valid_accuracy": (logits.argmax(1) == y_valid).float().mean().item(),
            },
            # offered at every step: hpsearch keeps the one whose step gave the trial's value (value: best),
            # so `hpsearch export` writes the weights that scored it; a lambda costs nothing when not kept
            checkpoint=lambda: {"model": model.state_dict()},
            final=last,  # the last report: never pruned here
        )
'''

SPACE = """# {name}: a sweep over ./{name}.py's train(config, session). Run: hpsearch run {name}.yaml
name: {name}                      # the Optuna study and the MLflow experiment are named after it
trainable: ./{name}.py:train      # FILE.py:FUNCTION (relative to this file) or package.module:function
metric: valid_accuracy            # what train() reports
mode: max                         # max or min
value: best                       # a trial's value: its best step (best) or its last report (last)
config:                           # fixed for every trial (train() reads them from its config dict)
  epochs: 20
  batch_size: 64
space:                            # searched: float / int (low, high, log, step) or categorical (choices)
  lr:      {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  hidden:  {type: categorical, choices: [16, 32, 64, 128]}
  dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
sampler: {name: tpe, seed: 0}     # tpe | random | grid | cmaes | gp | qmc | ofat
pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 3}   # stops trials behind the median
trials: 12
concurrency: 2                    # trials at once; resources: {cpu: 1, gpu: 0} per trial
"""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def write(name: str, folder: Path, force: bool = False) -> list[Path]:
    """Write NAME.py and NAME.yaml into ``folder``; never overwrite a user's file unless ``force``."""
    if not _NAME.match(name):
        raise SpecError(f"{name!r} is not a Python identifier (letters, digits and _; the file becomes {name}.py)")
    files = {folder / f"{name}.py": TRAINABLE, folder / f"{name}.yaml": SPACE}
    files = {path: text.replace("{name}", name) for path, text in files.items()}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise SpecError(f"{', '.join(existing)} already exist (pass --force to overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
