"""The bad-input catalogue: each file in bad_spaces/ names the message it must produce on its first line.

Every one must give exit code 2, a single line naming the file and the key, and create nothing in the store.
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.commands.cli import app

CATALOGUE = sorted((Path(__file__).parent / "bad_spaces").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_bad_space_is_one_clear_line_and_writes_nothing(path, tmp_path):
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(store)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert expected_message(path) in lines[0]
    assert not store.exists()


def test_catalogue_is_not_empty():
    assert len(CATALOGUE) >= 25


def test_missing_file(tmp_path):
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.yaml"), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "nope.yaml: no such space file" in result.stderr
    assert not (tmp_path / "s").exists()


def test_unknown_space_name_lists_known(tmp_path):
    result = CliRunner().invoke(app, ["run", "addition-lrr", "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "no space file named 'addition-lrr'" in result.stderr and "addition-lr," in result.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("config.epochs", "expected KEY=VALUE"),
        ("config.epochs=[1", "is not a YAML scalar"),
        ("space.lr.low=0.5", "space.lr: low (0.5) must be below high (0.1)"),
        ("config.epochs=zero", "config.epochs: Input should be a valid integer"),
        ("name.sub=1", "--set: name.sub: name is not a mapping"),
    ],
)
def test_bad_override(override, message, tmp_path):
    result = CliRunner().invoke(app, ["run", "addition-lr", "--set", override, "--store", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "s").exists()


def test_space_files_that_are_not_yaml_text_are_one_line(tmp_path):
    """Non-UTF-8 bytes, nesting deep enough to exhaust the parser, and a file far too large to be a space."""
    cases = {
        "binary.yaml": (b"name: bad\ntrainable: flaky\n\xff\xfe\x00space: {}\n", "not UTF-8 text (byte 27"),
        "deep.yaml": (b"name: bad\nconfig: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        "huge.yaml": (b"name: bad\n" + b"# padding\n" * 200_000, "2,000,010 bytes; a space file is at most"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = CliRunner().invoke(app, ["run", str(path), "--store", str(tmp_path / "store")])
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (name, result.output[-500:])
        assert lines[0].startswith(f"error: {path}: ") and words in lines[0], lines[0]
    assert not (tmp_path / "store").exists()


def test_an_offending_value_is_shown_short(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(f"name: bad\ntrainable: flaky\nspace: {{x: {{type: float, low: '{'9' * 100_000}', high: 1}}}}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and "space.x.low" in result.stderr
    assert len(result.stderr) < 700  # the value is cut, not printed whole


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trials=true", "trials: expected a whole number, not true"),
        ("repeats=true", "repeats: expected a whole number, not true"),
        ("concurrency=0x10", "concurrency: Input should be a valid integer"),
    ],
)
def test_a_bool_or_a_hex_number_is_no_count(override, message, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\ntrainable: flaky\nspace: {x: {type: float, low: 0.0, high: 1.0}}\n")
    result = CliRunner().invoke(app, ["run", str(space), "--set", override, "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "store").exists()


def test_a_bad_option_value_is_one_line_not_a_usage_box(tmp_path):
    result = CliRunner().invoke(app, ["run", "addition-lr", "--trials", "-1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: hpsearch run: Invalid value for '--trials': Input should be greater than or equal to 1"
    ]


def test_a_missing_trainable_file_names_each_folder_looked_in_once(tmp_path, monkeypatch):
    space = tmp_path / "s.yaml"
    space.write_text(
        "name: s\ntrainable: ./nope.py:train\nmetric: m\nmode: max\nspace: {x: {type: float, low: 0, high: 1}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, looked in ((tmp_path, f"{tmp_path})"), (elsewhere, f"{tmp_path} or {elsewhere})")):
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(app, ["run", str(space), "--store", str(tmp_path / "store")])
        assert result.exit_code == 2
        assert result.stderr.strip().endswith(f"no such file './nope.py' (looked in {looked}"), result.stderr
