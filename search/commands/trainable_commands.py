"""Commands about trainables rather than sweeps: list them, train one in this process, write a new one."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from search.commands.app import (
    SetOpt,
    StoreOpt,
    app,
    err,
    open_store,
    out,
)
from search.errors import SpecError


@app.command("list")
def list_() -> None:
    """Registered trainables with their hyperparameters, and the space files under spaces/."""
    import yaml
    from rich.padding import Padding

    from search.space.loading import SPACES_DIR, space_names
    from trainables.registry import all_trainables

    # One block per trainable, not a table: its hyperparameters wrap at any width (80 columns included).
    out.print("[bold]trainables[/bold]  (also your own: ./file.py:function, see docs/trainables.md)")
    for t in all_trainables():
        out.print(f"\n[bold]{t.name}[/bold]  {t.metric} ({t.mode})", highlight=False)
        params = ", ".join(f"{k}={v}" for k, v in t.defaults().items())
        reports = f"\nreports: {', '.join(t.reports)}" if t.reports else ""
        out.print(Padding(f"{t.description}\n{params}{reports}", (0, 0, 0, 2)), highlight=False)
    spaces = Table(title=f"\nspace files ({SPACES_DIR})", title_justify="left")
    for col in ("name", "trainable", "what"):
        spaces.add_column(col, overflow="fold")
    for name in space_names():
        raw = yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text()) or {}
        spaces.add_row(name, str(raw.get("trainable", "?")), str(raw.get("description", "")))
    out.print(spaces)


def _train_target(target: str | None, from_: str | None, store: str, trial: int | None) -> tuple[str, dict[str, Any]]:
    """What ``train`` runs: (trainable reference, configuration) from a sweep's best, a saved best file,
    a space file, or a trainable named alone (its defaults)."""
    from pathlib import Path

    import yaml

    from search.space import loading
    from trainables.registry import is_reference

    if from_ is not None:
        if Path(from_).suffix in (".yaml", ".yml", ".json") and Path(from_).is_file():
            try:
                saved = yaml.safe_load(Path(from_).read_text()) or {}
            except yaml.YAMLError:
                saved = None  # several documents (a whole front), or not YAML at all
            if not isinstance(saved, dict) or "config" not in saved or "trainable" not in saved:
                raise SpecError(
                    "expected one trial written by `hpsearch best` (with trainable: and config:; of a front, "
                    "one trial: hpsearch best SWEEP --trial N)",
                    from_,
                )
            return target or saved["trainable"], dict(saved["config"])
        from search.readback.results import best

        b = best(open_store(store), from_, trial)
        return target or b.trainable, b.config
    if target is None:
        raise SpecError("name a trainable, a ./file.py:function, a space file, or --from SWEEP", "train")
    if is_reference(target):
        return loading.resolve_reference(target, Path.cwd(), "train"), {}
    if Path(target).suffix in (".yaml", ".yml"):
        from search.space.samplers import baseline_notes

        space, _ = loading.load(target)
        # The searched parameters too: a plain function has no defaults to fall back on. The point is
        # OFAT's baseline, a point of the space (config, else the trainable's default if the space holds
        # it, else the space's middle).
        point, notes = baseline_notes(space)
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        err.print(
            f"searched parameters at: {shown}" + (f"; {'; '.join(notes)}" if notes else ""),
            highlight=False,
            soft_wrap=True,
        )
        return space.trainable, {**dict(space.config), **point}
    return target, {}


def _train_override(override: tuple[str, Any], known: set[str] | None) -> tuple[str, Any]:
    """``--set KEY=VALUE`` for ``train``, which runs one configuration: a hyperparameter by its name, or as
    ``config.KEY`` (the spelling ``run --set`` takes). A space file's or a sweep's configuration names every
    parameter a plain function takes: another name is refused, not passed on as a new key."""
    key, value = override
    name = key.removeprefix("config.")
    if "." in name:
        raise SpecError(
            f"train runs one configuration: set a hyperparameter by its name (--set epochs=2 or config.epochs=2), "
            f"not {key!r}",
            f"--set {key}",
        )
    if known is not None and name not in known:
        has = ", ".join(sorted(known))
        raise SpecError(f"no parameter {name!r} to set (the configuration has: {has})", f"--set {key}")
    return name, value


@app.command()
def train(
    target: Optional[str] = typer.Argument(
        None, help="a trainable name (hpsearch list), ./file.py:function, module:function, or a space file"
    ),
    set_: Optional[list[str]] = SetOpt,
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
    from_: Optional[str] = typer.Option(
        None, "--from", help="a sweep's best configuration (a sweep name in --store, or a file from `hpsearch best`)"
    ),
    trial: Optional[int] = typer.Option(None, "--trial", help="with --from SWEEP: this trial instead of the best"),
    store: str = StoreOpt,
    save: Optional[str] = typer.Option(None, "--save", help="write the trained model here (as `hpsearch export`)"),
) -> None:
    """Run one trial in this process, no Ray: to try a trainable, or retrain a sweep's best (--from)."""
    from pathlib import Path

    from pydantic import ValidationError

    from search.space.overrides import parse_override
    from trainables.registry import get
    from trainables.session import CheckpointKeeper, LocalSession

    trainable, config = _train_target(target, from_, store, trial)
    spec = get(trainable)
    # a plain function's space file or sweep names every parameter it takes; a declared one checks its own
    known = set(config) if spec.plain and config else None
    config |= dict(_train_override(parse_override(s), known) for s in set_ or [])
    if spec.params is not None:
        try:
            shown = spec.params(**config).model_dump()
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(map(str, first["loc"]))
            msg = "unknown hyperparameter" if first["type"] == "extra_forbidden" else first["msg"]
            shown = f"{msg.removeprefix('Value error, ')} (got {first.get('input')!r})"
            raise SpecError(shown, f"--set {key}") from None
    else:
        shown = config
    # --save writes the weights of the best step by the trainable's declared metric, as a sweep keeps them
    # (a plain function declares none: its last checkpoint)
    keeper = CheckpointKeeper(spec.metric, spec.mode, "best" if spec.metric else "last")
    session = LocalSession(device, echo=lambda line: out.print(line, highlight=False), keeper=keeper)
    out.print(f"{trainable}: {shown}", highlight=False)
    spec.run(config, session)
    if save is not None:
        from search.readback.results import write_model

        if session.last_checkpoint is None:
            raise SpecError(f"{trainable} reported no checkpoint (session.report(..., checkpoint={{...}}))", "--save")
        about = {"source": "hpsearch train", "step": session.checkpoint_step}
        for path in write_model(trainable, session.last_checkpoint, config, Path(save), about):
            out.print(f"  wrote {path}", highlight=False, soft_wrap=True)


@app.command()
def init(
    name: str = typer.Argument(..., help="a name for the trainable and its sweep (a Python identifier)"),
    folder: str = typer.Option(".", "--dir", help="where to write NAME.py and NAME.yaml"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
) -> None:
    """Write a trainable (NAME.py) and its space file (NAME.yaml) that run as they are: edit, then run."""
    from pathlib import Path

    from search.commands.scaffold import write

    files = write(name, Path(folder), force)
    for path in files:
        out.print(f"wrote {path}", highlight=False)
    out.print(f"try one trial:  hpsearch train {files[1]}", highlight=False)
    out.print(f"sweep it:       hpsearch run {files[1]}", highlight=False)
