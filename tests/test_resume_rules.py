"""Which trials ``hpsearch resume`` runs again (``resume.unfinished``), on a study in memory: the full sweep
behind it is in test_interrupt.py and the fault campaign."""

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.driver.resume import unfinished

SPACE = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(1, 8)}


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
    this_run = {lost, stopped, done, raised, half, rerun_already}
    assert [t.number for t in unfinished(study, this_run, set(SPACE))] == [lost, stopped]
    assert other_run not in this_run
    # a flat space of one parameter: the trial with x alone is whole there
    assert [t.number for t in unfinished(study, this_run, {"x"})] == [lost, stopped, half]
