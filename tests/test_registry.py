"""trainables/registry.py: a plain function's returned result becomes its last report."""

import fnmatch
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.errors import TrainableError
from trainables.registry import get
from trainables.session import LocalGroupSession, LocalSession


@pytest.mark.parametrize("returned", [np.float32(0.75), np.float64(0.75), 0.75, 3])
def test_a_plain_function_may_return_any_real_number(tmp_path, returned):
    (tmp_path / "fit.py").write_text(f"import numpy as np\n\n\ndef train(config):\n    return {returned!r}\n")
    spec = get(f"{tmp_path / 'fit.py'}:train")
    session = LocalSession()
    spec.run({}, session, metric="score")
    assert session.history == [(1, {"score": float(returned)})]


NO_TORCH = r"""
import sys
from search.commands import cli
sys.argv = ["hpsearch", *sys.argv[1:]]
try:
    cli.main()
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "torchvision", "transformers") if m in sys.modules)
print("EXIT", code, "LOADED", heavy)
"""


@pytest.mark.parametrize(
    "args",
    [["list"], ["run", str(Path(__file__).parent / "bad_spaces" / "config-param-not-taken.yaml")]],
    ids=["list", "refusal"],
)
def test_listing_and_refusing_built_ins_load_no_model_code(args):
    """A built-in's hyperparameters are declared without torch (trainables/hyperparameters/): `hpsearch list`
    and the refusal of a hyperparameter it does not take import no torch, torchvision or transformers."""
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"EXIT {2 if args[0] == 'run' else 0} LOADED []", (last, done.stderr[-2000:])
    if args[0] == "list":
        assert all(name in done.stdout for name in ("addition-cnn", "image-classifier", "text-finetune"))
    else:
        assert "addition-cnn has no hyperparameter 'heads'" in done.stderr


# Each built-in on a tiny configuration with every optional metric on (gradient norms, the test split at
# its end), alone and, where it has one, in its fused form.
TINY = {
    "addition-cnn": {"epochs": 2, "embed_dim": 8, "conv_layers": 1, "channels": 8, "batch_size": 512},
    "addition-transformer": {"epochs": 2, "embed_dim": 8, "encoder_layers": 1, "hidden_dim": 16, "heads": 2,
                             "batch_size": 512},
    "image-classifier": {"dataset": "digits", "model": "mnist1", "epochs": 2, "train_subset": 256,
                         "grad_norms": True},
    "seq-transformer": {"epochs": 2, "hidden": 8, "heads": 2, "train_examples": 100, "test_examples": 50},
    "text-finetune": {"epochs": 2, "generated_examples": 200, "hidden_size": 32},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_built_in_reports_only_what_it_declares(name):
    """The declared ``reports`` is what a space file's metric and constraints are checked against: a metric it
    reports but does not declare would be refused in a space file, one it declares but never reports would
    pass the check and fail every trial."""
    spec = get(name)
    session = LocalSession()
    spec.run(TINY[name], session)
    histories = [session.history]
    if spec.fused is not None:
        group = LocalGroupSession(2)
        spec.run_group([TINY[name] | {"seed": 0}, TINY[name] | {"seed": 1}], group)
        histories += list(group.history.values())
    reported = {key for history in histories for _, metrics in history for key in metrics}
    assert reported and not {key for key in reported if not spec.may_report(key)}
    assert {p for p in spec.reports if not any(fnmatch.fnmatchcase(k, p) for k in reported)} == set()


def test_a_metric_pattern_matches_by_shell_rules(tmp_path):
    (tmp_path / "own.py").write_text(
        "from trainables.registry import Hyperparameters, trainable\n\n\n"
        "@trainable('own-reports', params=Hyperparameters, metric='acc', mode='max', reports=('acc', 'norm.*'))\n"
        "def fit(params, session):\n    session.report(1, {'acc': 1.0}, final=True)\n"
    )
    spec = get(f"{tmp_path / 'own.py'}:fit")
    assert [spec.may_report(m) for m in ("acc", "norm.conv1", "norm", "accuracy", "xacc")] == [
        True, True, False, False, False
    ]  # fmt: skip
    assert get(f"{tmp_path / 'own.py'}:fit").reports == ("acc", "norm.*")


def test_a_declared_metric_outside_what_it_reports_is_refused_when_registered(tmp_path):
    (tmp_path / "own.py").write_text(
        "from trainables.registry import Hyperparameters, trainable\n\n\n"
        "@trainable('own-bad', params=Hyperparameters, metric='accuracy', mode='max', reports=('acc',))\n"
        "def fit(params, session):\n    pass\n"
    )
    with pytest.raises(TrainableError, match="line 4: ValueError: trainable 'own-bad': its metric 'accuracy' is not"):
        get(f"{tmp_path / 'own.py'}:fit")
