"""docs/cli.md, written from the CLI itself: every command with its arguments and options, and the exit
codes. ``python -m search.commands.reference > docs/cli.md`` rewrites it; a test holds the page to what
this prints, so the reference cannot fall behind the commands."""

from __future__ import annotations

import typer

from search.commands.cli import app

EXIT_CODES = [
    ("0", "the command did what it was asked; a sweep ran to its end (some trials may have failed or been pruned)"),
    (
        "1",
        "a sweep in which no trial completed (the first reasons are printed); a sweep stopped by its MLflow writer "
        "dying, by Ray's head dying, by a sampler raising, or by a full disk mid-sweep (`hpsearch resume` finishes "
        "it); a sweep that ran to its end but whose MLflow runs lack writes MLflow refused (the study holds every "
        "trial)",
    ),
    (
        "2",
        "bad input, refused before anything is written: the space file, an option, a store or server that cannot "
        "be used, a sweep name that does not exist",
    ),
    (
        "130",
        "Ctrl-C: the sweep stopped, its running trials closed (`hpsearch resume` finishes it); any other command "
        "stops with one line saying so (`interrupted: ...`)",
    ),
    ("143", "SIGTERM: as Ctrl-C"),
]


def _shown(argument) -> str:
    return (argument.metavar or argument.name).upper() + ("..." if argument.nargs == -1 else "")


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def reference() -> str:
    out = [
        "# The command line",
        "",
        "Every command, its arguments and options (`hpsearch COMMAND --help` prints the same). A user error (a bad",
        "space file, a bad option, a store that refuses) is one line on stderr naming what is wrong and where.",
        "This page is written by `python -m search.commands.reference`.",
        "",
        "## Exit codes",
        "",
        "| code | when |",
        "|---|---|",
        *(f"| {code} | {when} |" for code, when in EXIT_CODES),
        "",
    ]
    for name, cmd in typer.main.get_command(app).commands.items():
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        opts = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
        usage = f"hpsearch {name}" + "".join(f" {_shown(a)}" for a in args) + (" [OPTIONS]" if opts else "")
        out += [f"## hpsearch {name}", "", _cell(cmd.help), "", "```", usage, "```", ""]
        if args:
            out += ["| argument | what |", "|---|---|"]
            out += [f"| `{_shown(a)}` | {_cell(getattr(a, 'help', None))} |" for a in args] + [""]
        if opts:
            out += ["| option | default | what |", "|---|---|---|"]
            for o in opts:
                names = ", ".join(f"`{n}`" for n in o.opts + o.secondary_opts)
                default = "" if o.default in (None, False, (), []) else f"`{o.default}`"
                out.append(f"| {names} | {default} | {_cell(o.help)} |")
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
