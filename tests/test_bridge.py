"""The bridge alone, on an in-memory study: no Ray."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.optuna_bridge import OptunaBridge


class BrokenSampler(optuna.samplers.RandomSampler):
    """Samples once, then raises: a sampler failing mid-sweep for a reason no input check can see."""

    def sample_independent(self, study, trial, name, distribution):
        if trial.number >= 1:
            raise RuntimeError("the sampler broke")
        return super().sample_independent(study, trial, name, distribution)


def test_a_sampler_that_raises_leaves_no_trial_running():
    study = optuna.create_study(sampler=BrokenSampler(seed=0))
    bridge = OptunaBridge(study, {"x": FloatDistribution(0, 1)}, {}, "score", "max", n_trials=3)
    assert "x" in bridge.ask("ray-0")
    with pytest.raises(RuntimeError, match="the sampler broke"):
        bridge.ask("ray-1")
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL]  # the first is its record's to end; the broken one ended
