"""The training loop every trainable shares (trainables/loop.py), on a fake clock: no model needed."""

import pytest
import torch
from torch import nn

from trainables import session as session_mod
from trainables.loop import FitLoop, optimizer_step
from trainables.session import LocalSession


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(session_mod.time, "monotonic", fake)
    return fake


def test_by_epoch_it_reports_each_epochs_end_with_the_mean_loss_since_the_last_report(clock):
    session = LocalSession()
    loop = FitLoop(session, examples_per_epoch=6)
    reports = []

    def train_batch(batch):
        loss, n = batch
        loop.add(loss, n)

    def report(step, epoch, last):
        reports.append((step, epoch, last, loop.train_loss()))
        return last

    loop.run(3, lambda epoch: iter([(1.0 + epoch, 2), (2.0 + epoch, 4)]), train_batch, report)
    # each epoch: (1*2 + 2*4) / 6 = 1.667, shifted by the epoch
    assert [(s, e, last) for s, e, last, _ in reports] == [(1, 0, False), (2, 1, False), (3, 2, True)]
    assert [round(loss, 3) for *_, loss in reports] == [1.667, 2.667, 3.667]
    assert loop.seen == 18


def test_a_report_that_says_done_ends_the_loop(clock):
    loop = FitLoop(LocalSession(), examples_per_epoch=1)
    epochs_seen = []
    loop.run(10, lambda epoch: iter([epoch]), epochs_seen.append, lambda step, epoch, last: step == 4)
    assert epochs_seen == [0, 1, 2, 3]


def test_by_time_the_steps_are_multiples_of_the_interval_and_the_last_is_off_the_clock(clock):
    session = LocalSession(report_interval_s=2.0)
    loop = FitLoop(session, examples_per_epoch=10)
    steps = []

    def train_batch(batch):
        clock.now += 0.7  # each batch takes 0.7 s

    def report(step, epoch, last):
        steps.append((step, last))
        return last

    loop.run(2, lambda epoch: iter(range(5)), train_batch, report)  # 10 batches: 7 s in all
    timed = [s for s, last in steps if not last]
    assert timed == [2, 4, 6] and all(s % 2 == 0 for s in timed)
    assert steps[-1] == (7, True)  # the final report: whole seconds elapsed


def test_the_budget_ends_a_trial_at_the_first_epoch_end_past_it(clock):
    session = LocalSession(budget_s=3.0, report_interval_s=1.0)
    loop = FitLoop(session, examples_per_epoch=1)
    epochs = []

    def train_batch(batch):
        clock.now += 1.0
        epochs.append(batch)

    loop.run(100, lambda epoch: iter([epoch, epoch]), train_batch, lambda step, epoch, last: last or loop.out_of_time())
    assert len(epochs) == 3  # the report due at 3 s saw the budget spent


@pytest.mark.parametrize("setup_s", [0.0, 2.5, 40.0])
def test_the_budget_and_time_steps_count_from_training_not_from_the_set_up_before(clock, setup_s):
    """A busy machine's slow imports and data set-up ate the budget: one time report where there were two."""
    session = LocalSession(budget_s=6.0, report_interval_s=2.0)
    clock.now += setup_s  # torch imported, data generated, model built
    loop = FitLoop(session, examples_per_epoch=10)
    steps = []

    def train_batch(batch):
        clock.now += 0.5

    def report(step, epoch, last):
        steps.append(step)
        return last or loop.out_of_time()

    loop.run(100, lambda epoch: iter(range(4)), train_batch, report)
    assert steps == [2, 4, 6]  # the report due at 6 s saw the budget spent, whatever the set-up took
    assert session.time_left() == 0.0 and clock.now - session.started == 6.0


def test_optimizer_step_clips_the_gradient_to_max_norm():
    layer = nn.Linear(4, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    loss = (layer(torch.full((8, 4), 100.0)) ** 2).mean()
    norms = []

    def record():
        norms.append(torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item())

    optimizer_step(opt, loss, layer.parameters(), max_norm=1.0, before_step=record)
    assert norms[0] == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize(
    ("interval", "durations", "expected"),
    [
        # uneven batches: each report is at the multiple of the interval just passed, none drifts later
        (2.0, [0.7, 0.7, 0.7, 1.5, 0.6, 2.3, 1.4, 0.2, 4.5], [2, 4, 6, 8, 12]),  # a 4.5 s batch skips 10
        (3.0, [1.0, 2.1, 0.5, 2.6, 0.1, 3.2, 2.9], [3, 6, 9, 12]),
        (2.5, [2.4, 0.2, 2.4, 0.2, 2.6, 0.1], [2, 5, 8]),  # steps are whole seconds, rounded
    ],
)
def test_time_reports_stay_on_the_interval_whatever_the_batches_take(clock, interval, durations, expected):
    session = LocalSession(report_interval_s=interval)
    loop = FitLoop(session, examples_per_epoch=len(durations))
    pending = iter(durations)
    steps = []

    def train_batch(batch):
        clock.now += next(pending)

    def report(step, epoch, last):
        if not last:
            steps.append(step)
        return last

    loop.run(1, lambda epoch: iter(range(len(durations))), train_batch, report)
    assert steps == expected


@pytest.mark.parametrize(("budget", "epoch_s", "epochs"), [(3.5, 1.0, 4), (3.0, 1.0, 3), (5.0, 2.0, 3)])
def test_the_loop_itself_ends_a_trial_at_the_first_epoch_end_past_its_budget(clock, budget, epoch_s, epochs):
    """Even when no report says the trial is over (reports are not due, or the trainable's report ignores
    the budget), the loop stops at the end of the epoch that spent it, with a final report."""
    session = LocalSession(budget_s=budget, report_interval_s=100.0)  # no timed report comes in time
    loop = FitLoop(session, examples_per_epoch=1)
    trained, finals = [], []

    def train_batch(batch):
        clock.now += epoch_s
        trained.append(batch)

    def report(step, epoch, last):
        finals.append((step, last))
        return False  # a report that never says done: the loop's own check must stop it

    loop.run(100, lambda epoch: iter([epoch]), train_batch, report)
    assert len(trained) == epochs
    assert finals == [(int(epochs * epoch_s), True)]  # one final report, off the clock
