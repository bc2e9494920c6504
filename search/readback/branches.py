"""The branches of a conditional sweep: each choice some parameters depend on (``model=vgg`` and its
``kernel_size``), and the trials that took it: a branch's own parameters are ranked and plotted on its
trials alone, where the study-wide figures mix them with trials that never set them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


@dataclass
class Branch:
    parent: str
    choice: Any
    params: list[str]  # the parameters only this choice sets

    @property
    def label(self) -> str:
        return f"{self.parent}={self.choice}"

    def trials(self, study: optuna.Study) -> list[FrozenTrial]:
        """Its complete trials."""
        return [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if self.parent in t.params and t.params[self.parent] == self.choice
        ]


def branches(study: optuna.Study) -> list[Branch]:
    """From the space the study recorded (flat, each parameter with its ``when``); none for a flat space."""
    space = (study.user_attrs.get("space") or {}).get("space") or {}
    found: dict[tuple[str, Any], list[str]] = {}
    for name, p in space.items():
        for parent, values in ((p or {}).get("when") or {}).items():
            for v in values:
                found.setdefault((parent, v), []).append(name)
    return [Branch(parent, choice, names) for (parent, choice), names in found.items()]


def study_of(study: optuna.Study, trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding these trials: what Optuna's evaluators and plots are given for a branch."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "a new study created in memory": not news here
    try:
        sub = optuna.create_study(directions=study.directions, study_name=study.study_name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    sub.add_trials(trials)
    return sub
