import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
os.environ["HPSEARCH_TRAINABLES"] = str(HERE / "plugins" / "flaky.py")
# The empty databases new stores are copied from (search/stores/empty_databases.py): made once for the whole
# run (drivers in subprocesses too), in a folder of the run's own rather than the user's cache.
os.environ["HPSEARCH_CACHE"] = tempfile.mkdtemp(prefix="hpsearch-test-cache-")


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

    from search.driver.ray_start import ensure_ray

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


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=8000", "--window-size=1400,900",
]  # fmt: skip


@pytest.fixture(scope="session")
def chromium(missing_service):
    """Headless Chromium on a page: ``chromium(url, profile_dir, *flags)`` (``--dump-dom``, ``--screenshot=``)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing_service("Debian's chromium is not installed here (.ci/run installs it)")

    def run(url: str, profile, *args: str) -> subprocess.CompletedProcess:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90)

    return run


KILLED_MID_WRITE = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # the changed pages spill into the file: the journal must undo them
db.execute("BEGIN")
for i in range(20000):
    db.execute(sys.argv[2], (f"k{i}",))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def killed_mid_write():
    """``kill(path, insert)``: a process SIGKILLed inside a write transaction of many ``insert`` (one ``?``
    parameter), which leaves its rollback journal beside the SQLite file."""

    def kill(path: Path, insert: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_MID_WRITE, str(path), insert], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        proc.kill()
        proc.wait()
        assert path.with_name(f"{path.name}-journal").exists()

    return kill
