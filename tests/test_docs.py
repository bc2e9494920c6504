"""The README and docs/ as a user reads them: every command and option they name exists, every key of their
space-file examples is a key hpsearch takes, the reference's full example is a space file it accepts, the
README lists every built-in space, and docs/cli.md is what the CLI says."""

import re
from pathlib import Path

import pytest
import typer
import yaml

from search.commands.cli import app
from search.space import loading, spec

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_of(page: Path) -> list[str]:
    """The page's code: each line of its fenced blocks, and each inline code span."""
    text = page.read_text()
    lines = [ln for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for ln in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return lines + re.findall(r"`([^`\n]+)`", prose)


def yaml_blocks(page: Path) -> list[str]:
    """The page's space-file examples (its Kubernetes manifests are not)."""
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
    return [b for b in blocks if not re.search(r"^(apiVersion|kind):", b, re.M)]


def commands() -> dict[str, set[str]]:
    """Each command's name with the options it takes."""
    group = typer.main.get_command(app)
    return {
        name: {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", []) if o[0] == "-"}
        for name, cmd in group.commands.items()
    }


def used_commands() -> list[tuple[str, str, list[str]]]:
    """(page, command, its options) for every `hpsearch CMD ...` the pages show."""
    out = []
    for page in PAGES:
        for code in code_of(page):
            for call in re.findall(r"\bhpsearch ([a-z][a-z-]*)([^|;&#]*)", code):
                out.append((page.name, call[0], re.findall(r"(--[a-z][a-z-]*)", call[1])))
    return out


def test_the_pages_name_commands():
    assert len({c for _, c, _ in used_commands()}) >= 8  # the scan finds what the pages show


@pytest.mark.parametrize("page, command, options", used_commands(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_every_command_and_option_the_docs_show_exists(page, command, options):
    known = commands()
    assert command in known, f"{page}: hpsearch {command} is no command (known: {', '.join(sorted(known))})"
    unknown = [o for o in options if o not in known[command] | {"--help"}]
    assert not unknown, f"{page}: hpsearch {command} takes no {', '.join(unknown)}"


def test_every_key_of_the_docs_space_file_examples_is_a_space_file_key():
    fields = set(spec.SweepSpec.model_fields)
    seen = set()
    for page in PAGES:
        for block in yaml_blocks(page):
            for key in re.findall(r"^([a-z_]+):", block, re.M):
                seen.add(key)
                assert key in fields, f"{page.name}: {key}: is not a space-file key (keys: {', '.join(sorted(fields))})"
    assert {"name", "trainable", "space", "sampler", "pruner", "budget", "fuse"} <= seen


def test_the_references_full_space_file_is_one_hpsearch_accepts():
    block = next(b for b in yaml_blocks(ROOT / "docs" / "space-files.md") if b.startswith("name: addition-lr"))
    raw = yaml.safe_load(block)
    raw.pop("cluster")  # a database and a server that are not here; its keys are checked by the test above
    assert loading.validate(raw, "docs/space-files.md").trainable == "addition-cnn"


def test_the_readme_lists_every_built_in_space():
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \| `", (ROOT / "README.md").read_text(), re.M))
    assert listed == {p.stem for p in (ROOT / "spaces").glob("*.yaml")}


def test_the_cli_reference_is_what_the_cli_says():
    from search.commands.reference import reference

    text = (ROOT / "docs" / "cli.md").read_text()
    assert text == reference(), "docs/cli.md is behind the CLI: python -m search.commands.reference > docs/cli.md"
    for name, options in commands().items():
        assert f"## hpsearch {name}" in text and all(f"`{o}`" in text for o in options - {"--help"})


def test_the_space_file_reference_has_one_row_for_each_key_the_schema_takes():
    text = (ROOT / "docs" / "space-files.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|", text, re.M)
    assert sorted(rows) == sorted(spec.SweepSpec.model_fields)
