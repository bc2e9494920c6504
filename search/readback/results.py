"""Taking a sweep's result out: the best configuration (``hpsearch best``), and its model (``export``).

The best trial is the study's own (``study.best_trial``; of a trade-off, its Pareto front ``best_trials``,
one ``Best`` per trial on it). Its full configuration is the space file's
``config:`` as the sweep ran it (the parent MLflow run's ``space.yaml``) with the trial's parameters on
top, so ``hpsearch train --from`` retrains exactly it. Its checkpoint is the MLflow artifact the trial's
run logged; ``export`` writes it in a form that loads without hpsearch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from search.errors import SweepError
from search.names import (
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_METRICS_ATTR,
    CHECKPOINT_STEP_ATTR,
    RUN_ID_ATTR,
    VALUE_STEP_ATTR,
)
from search.readback import run_files
from search.readback.scored import weights_notice
from search.readback.sweeps import load_study, objective_names, recorded_space, require_sweeps
from search.stores.store import Store

MODEL_FILE = "model.pt"
LIGHTNING_FILE = "model.ckpt"  # a Lightning checkpoint (trainables/lightning.py), as Lightning loads it
LIGHTNING_KEY = "pytorch-lightning_version"  # what every Lightning checkpoint holds


@dataclass
class Best:
    sweep: str
    trial: int
    metric: str
    mode: str
    value: float
    trainable: str
    config: dict[str, Any]  # the space's config with the trial's parameters: what train --from runs
    params: dict[str, Any]  # the searched parameters alone
    mlflow_run_id: str | None
    checkpoint: str | None  # URI of the trial's checkpoint artifact, if it logged one
    objectives: dict[str, float] = field(default_factory=dict)  # every metric's value (several: a trade-off)
    value_step: int | None = None  # the step whose report gave the value (of the first seed, with repeats)
    checkpoint_step: int | None = None  # the step whose weights the checkpoint holds
    checkpoint_metrics: dict[str, float] | None = None  # what that step reported: what the weights scored
    notice: str | None = None  # the checkpoint's step scored other values than the trial's (scored.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best(store: Store, sweep: str, trial_number: int | None = None) -> Best:
    """The study's best trial (or the numbered one) with the configuration it ran and its checkpoint."""
    study = load_study(store, sweep, require_sweeps(store, [sweep]))
    return _described(store, study, sweep, _pick(study, sweep, trial_number))


def front(store: Store, sweep: str) -> list[Best]:
    """A trade-off's Pareto front (feasible trials only), each trial as ``best`` describes one; for a
    single-objective sweep, its best trial alone."""
    study = load_study(store, sweep, require_sweeps(store, [sweep]))
    if len(study.directions) == 1:
        return [_described(store, study, sweep, _pick(study, sweep, None))]
    _require_complete(study, sweep)
    return [_described(store, study, sweep, t) for t in sorted(study.best_trials, key=lambda t: t.number)]


def _described(store: Store, study: optuna.Study, sweep: str, trial: optuna.trial.FrozenTrial) -> Best:
    run_ids = [v for k, v in sorted(trial.user_attrs.items()) if k.startswith(RUN_ID_ATTR)]
    run_id = run_ids[0] if run_ids else None  # with repeats: the first seed's run
    run = run_files.run_of(store, run_id) if run_id is not None else None
    parent = run.parent_id if run is not None else None
    space = (recorded_space(store, parent, study.user_attrs) if parent else None) or {}
    config = {**space.get("config", {}), **trial.params}
    checkpoint = None
    if run is not None and run_files.has(store, run, CHECKPOINT_ARTIFACT):
        checkpoint = run_files.uri(run, CHECKPOINT_ARTIFACT)
    names = objective_names(study)
    return Best(
        sweep=sweep,
        trial=trial.number,
        metric=names[0],
        mode="max" if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else "min",
        value=trial.values[0],
        trainable=space.get("trainable") or study.user_attrs.get("trainable", ""),
        config=config,
        params=dict(trial.params),
        mlflow_run_id=run_id,
        checkpoint=checkpoint,
        objectives=dict(zip(names, trial.values)),
        value_step=trial.user_attrs.get(VALUE_STEP_ATTR),
        checkpoint_step=trial.user_attrs.get(CHECKPOINT_STEP_ATTR) if checkpoint else None,
        checkpoint_metrics=trial.user_attrs.get(CHECKPOINT_METRICS_ATTR) if checkpoint else None,
        notice=weights_notice(trial, names) if checkpoint else None,
    )


def _pick(study: optuna.Study, sweep: str, number: int | None) -> optuna.trial.FrozenTrial:
    complete = _require_complete(study, sweep, number)
    if number is not None:
        match = [t for t in complete if t.number == number]
        if not match:
            raise SweepError(f"sweep {sweep!r} has no COMPLETE trial {number}", "--trial")
        return match[0]
    if len(study.directions) > 1:
        numbers = ", ".join(str(t.number) for t in sorted(study.best_trials, key=lambda t: t.number))
        raise SweepError(
            f"sweep {sweep!r} trades off {' vs '.join(study.metric_names or [])}: its Pareto front is trial(s) "
            f"{numbers or 'none'}; pass --trial N to pick one (hpsearch best {sweep} lists them)",
            sweep,
        )
    try:
        return study.best_trial
    except ValueError:  # constrained: no trial is feasible
        raise SweepError(f"sweep {sweep!r} has no feasible trial (every one breaks a constraint)", sweep) from None


def _require_complete(study: optuna.Study, sweep: str, number: int | None = None) -> list[optuna.trial.FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete and number is None:
        raise SweepError(f"sweep {sweep!r} has no COMPLETE trial yet (hpsearch sweeps shows its trials)", sweep)
    return complete


def render(b: Best, fmt: str) -> str:
    """YAML (comments say what each part is for) or JSON."""
    if fmt == "json":
        import json

        return json.dumps(b.as_dict(), indent=2) + "\n"
    note = f"# note: {b.notice}\n" if b.notice else ""
    if len(b.objectives) > 1:
        values = ", ".join(f"{k} = {v:.6g}" for k, v in b.objectives.items())
        return (
            f"# trial {b.trial} of sweep {b.sweep}, on its Pareto front: {values}\n{note}"
            f"# retrain it:  hpsearch train --from {b.sweep} --trial {b.trial}"
            f"        export it:  hpsearch export {b.sweep} DIR --trial {b.trial}\n"
        ) + yaml.safe_dump(b.as_dict(), sort_keys=False)
    head = (
        f"# best of sweep {b.sweep}: trial {b.trial}, {b.metric} = {b.value:.6g} ({b.mode})\n"
        f"# retrain it:  hpsearch train --from {b.sweep}        export it:  hpsearch export {b.sweep} DIR\n{note}"
    )
    return head + yaml.safe_dump(b.as_dict(), sort_keys=False)


def load_checkpoint(store: Store, b: Best) -> dict[str, Any]:
    if b.mlflow_run_id is None or b.checkpoint is None:
        raise SweepError(
            f"trial {b.trial} of {b.sweep} logged no checkpoint: report one on the last step "
            "(session.report(step, metrics, checkpoint={'model': model.state_dict()}, final=True))",
            b.sweep,
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = run_files.fetch_of(store, b.mlflow_run_id, CHECKPOINT_ARTIFACT, Path(tmp))
        except FileNotFoundError:
            raise SweepError(
                f"trial {b.trial} of {b.sweep}: its checkpoint ({b.checkpoint}) is no longer in the store",
                b.sweep,
            ) from None
        import torch  # here, not at the top: best, compare and the rest of this module need no torch

        return torch.load(path, map_location="cpu", weights_only=False)


def export_folder_problem(out: Path) -> str | None:
    """Why ``out`` cannot take an export (a file, below a file, a folder that cannot be written), or None;
    read before the checkpoint is loaded, so a bad path costs nothing and writes nothing."""
    if out.exists() and not out.is_dir():
        return "is a file, not a folder"
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"is below {existing}, a file"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written ({existing} is not writable)"
    return None


def write_model(
    trainable: str, checkpoint: dict[str, Any], config: dict[str, Any], out: Path, about: dict[str, Any]
) -> list[Path]:
    """``model.pt`` (the state dict, the configuration and where it came from; ``torch.load`` reads it
    with no hpsearch installed) and ``config.yaml``; plus what the trainable's own exporter writes
    (``save_pretrained`` for text models), and a Lightning checkpoint as it was kept, ``model.ckpt``, for
    ``LightningModule.load_from_checkpoint``."""
    import torch

    from trainables import registry

    spec = registry.get(trainable)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec.export is not None:
        params = spec.params(**config) if spec.params is not None else config
        written += spec.export(checkpoint, params, out)
    state = checkpoint.get("model")
    # What the trainable put beside the weights to use them (class names, input size, normalisation, the
    # epoch); the optimizer's state and a tokenizer's files (written by its exporter) are not the model.
    usage = {k: v for k, v in checkpoint.items() if k not in ("model", "optimizer", "tokenizer", "config")}
    if LIGHTNING_KEY in checkpoint:
        torch.save(checkpoint, out / LIGHTNING_FILE)
        written.append(out / LIGHTNING_FILE)
        state = checkpoint.get("state_dict")
        usage = {"hyper_parameters": checkpoint.get("hyper_parameters", {})}
    payload = {
        "state_dict" if state is not None else "checkpoint": state if state is not None else checkpoint,
        "config": config,
        "trainable": trainable,
        **(usage if state is not None else {}),
        **about,
    }
    torch.save(payload, out / MODEL_FILE)
    described = {"trainable": trainable, "config": config, **(usage if state is not None else {}), **about}
    (out / "config.yaml").write_text(yaml.safe_dump(_plain(described), sort_keys=False))
    return sorted({*written, out / MODEL_FILE, out / "config.yaml"})


def render_front(front: list[Best], fmt: str) -> str:
    """A Pareto front: a JSON list, or YAML documents one per trial (``--- `` between them); a single
    objective's best alone, as ``render`` writes it."""
    if all(len(b.objectives) <= 1 for b in front):
        return render(front[0], fmt)
    if fmt == "json":
        import json

        return json.dumps([b.as_dict() for b in front], indent=2) + "\n"
    return "---\n".join(render(b, fmt) for b in front)


def _plain(value: Any) -> Any:
    """YAML-safe: tuples as lists, tensors and numpy numbers as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
