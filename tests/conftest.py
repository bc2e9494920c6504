import io
import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
os.environ["HPSEARCH_TRAINABLES"] = str(HERE / "plugins" / "flaky.py")


@pytest.fixture(scope="session")
def missing_service():
    """For a service a test needs that is not installed: a skip here, a failure under CI (``CI=true``, set by
    .ci/run, which installs it), so CI never passes with the only tests of a feature skipped."""

    def missing(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)

    return missing


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    import ray

    from search.runner import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def quiet_console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


@pytest.fixture
def write_space(tmp_path):
    """Write a space file from a dict and return its path."""
    import yaml

    def write(data: dict, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def flaky_space(write_space):
    """A space file (NAME.yaml) for the flaky test trainable (tests/plugins/flaky.py), searching x in [0, 1];
    a test writes out only what it changes: its config and any other top-level keys."""

    def write(name: str, config: dict | None = None, **keys) -> Path:
        x = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
        space = {"name": name, "trainable": "flaky", "config": config or {}, "space": x, **keys}
        return write_space(space, f"{name}.yaml")

    return write
