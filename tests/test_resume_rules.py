"""Which trials ``hpsearch resume`` runs again (``resume.unfinished``), on a study in memory: the full sweep
behind it is in test_interrupt.py and the fault campaign."""

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.driver.resume import finished_of, unfinished
from search.driver.runner import FAILED_FAST
from search.names import HEAD_LOST
from search.space.params import CategoricalParam, FloatParam, IntParam

SPACE = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(1, 8)}
PARAMS = {"x": FloatParam(type="float", low=0.0, high=1.0), "n": IntParam(type="int", low=1, high=8)}


def trial(study, stopped=None, state=TrialState.FAIL, space=SPACE, rerun_of=None):
    t = study.ask(space)
    if stopped:
        t.set_user_attr("stopped", stopped)
    if rerun_of is not None:
        t.set_user_attr("rerun_of", rerun_of)
    study.tell(t, 0.5 if state == TrialState.COMPLETE else None, state=state)
    return t.number


def test_resume_runs_again_what_the_driver_lost_or_an_interrupt_stopped_once_and_whole_only():
    study = optuna.create_study()
    lost = trial(study, "driver lost")
    stopped = trial(study, "interrupted")
    done = trial(study, state=TrialState.COMPLETE)
    raised = trial(study)  # failed by itself: not run again
    half = trial(study, "driver lost", space={"x": SPACE["x"]})  # killed while n was being sampled
    rerun_already = trial(study, "driver lost")
    trial(study, state=TrialState.COMPLETE, rerun_of=rerun_already)
    other_run = trial(study, "driver lost")  # lost by another hpsearch run of the sweep
    # stopped for what they did, not for what befell the driver: run again, they would end the same way
    budget = trial(study, "trial budget (no report in time)")
    fast = trial(study, FAILED_FAST)
    headless = trial(study, HEAD_LOST)  # its Ray went away under it: run again, as a lost driver's
    this_run = {lost, stopped, done, raised, half, rerun_already, budget, fast, headless}
    assert [t.number for t in unfinished(study, this_run, PARAMS)] == [lost, stopped, headless]
    assert other_run not in this_run
    # a flat space of one parameter: the trial with x alone is whole there
    assert [t.number for t in unfinished(study, this_run, {"x": PARAMS["x"]})] == [lost, stopped, half, headless]


def test_pruned_trials_count_as_finished_so_resume_runs_no_more_than_the_sweep_asked():
    study = optuna.create_study()
    numbers = [trial(study, state=state) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED)]
    numbers.append(trial(study, "interrupted"))
    assert finished_of(study, set(numbers)) == set(numbers[:3])  # 4 asked: one left, not three
    assert finished_of(study, set(numbers[1:])) == set(numbers[1:3])


def test_a_conditional_trial_is_whole_with_the_parameters_its_own_choices_set():
    params = {
        "opt": CategoricalParam(type="categorical", choices=["adam", "sgd", "rmsprop"]),
        "momentum": FloatParam(type="float", low=0.5, high=0.99, when={"opt": ["sgd", "rmsprop"]}),
    }
    study = optuna.create_study()
    # adam sets no momentum: whole; sgd with its momentum: whole; rmsprop killed before its momentum: half
    for choice, sampled_momentum in (("adam", False), ("sgd", True), ("rmsprop", False)):
        study.enqueue_trial({"opt": choice})
        t = study.ask()
        t.suggest_categorical("opt", ["adam", "sgd", "rmsprop"])
        if sampled_momentum:
            t.suggest_float("momentum", 0.5, 0.99)
        t.set_user_attr("stopped", "driver lost")
        study.tell(t, state=TrialState.FAIL)
    assert [t.number for t in unfinished(study, {0, 1, 2}, params)] == [0, 1]
