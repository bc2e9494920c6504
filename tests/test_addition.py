"""The addition trainables run in-process (no Ray) and learn addition at the discovered learning rate."""

import pytest
import torch

from trainables.addition import addition_pairs, holdout_mask, sum_digits
from trainables.registry import get
from trainables.session import LocalSession


def test_pairs_cover_every_case_once():
    digits, totals = addition_pairs()
    assert digits.shape == (10_000, 4)
    a = digits[:, 0] * 10 + digits[:, 1]
    b = digits[:, 2] * 10 + digits[:, 3]
    assert torch.equal(a + b, totals)
    assert len({(int(x), int(y)) for x, y in zip(a, b)}) == 10_000
    d = sum_digits(totals)
    assert torch.equal(d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2], totals)


def test_holdout_is_fixed_and_sized():
    m1, m2 = holdout_mask(10_000, 0.1), holdout_mask(10_000, 0.1)
    assert torch.equal(m1, m2) and int(m1.sum()) == 1000


@pytest.mark.parametrize("name", ["addition-cnn", "addition-transformer"])
def test_learns_addition_at_lr_5e3(name):
    session = LocalSession()
    get(name).run({"lr": 5e-3, "epochs": 20, "stop_at_exact_match": 0.995}, session)
    final = session.last
    assert final["exact_match"] >= 0.99
    assert final["heldout_exact_match"] >= 0.95  # it learned to add, not just the training pairs
    # the seed's end-of-run figures are there
    assert final["param_count"] > 1000 and final["checkpoint_bytes"] > final["param_count"] * 4
    assert final["seconds_per_epoch"] > 0
    assert session.last_checkpoint is not None and "model" in session.last_checkpoint


def test_lr_1e4_does_not_learn_in_the_same_time():
    session = LocalSession()
    get("addition-cnn").run({"lr": 1e-4, "epochs": 8}, session)
    assert session.last["exact_match"] < 0.5
    # errors are counted as deviations, largest groups first
    assert session.last["deviation_top1_count"] >= session.last["deviation_top2_count"] > 0


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(Exception, match="extra"):
        get("addition-cnn").run({"heads": 2}, LocalSession())
