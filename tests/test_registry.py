"""trainables/registry.py: a plain function's returned result becomes its last report."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.registry import get
from trainables.session import LocalSession


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
