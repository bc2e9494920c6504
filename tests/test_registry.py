"""trainables/registry.py: a plain function's returned result becomes its last report."""

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
