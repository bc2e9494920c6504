"""Taking a sweep's result out: the best configuration (``hpsearch best``), and its model (``export``).

The best trial is the study's own (``study.best_trial``). Its full configuration is the space file's
``config:`` as the sweep ran it (the parent MLflow run's ``space.yaml``) with the trial's parameters on
top, so ``hpsearch train --from`` retrains exactly it. Its checkpoint is the MLflow artifact the trial's
run logged; ``export`` writes it in a form that loads without hpsearch.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.errors import SweepError
from search.store import Store
from search.sweeps import load_study, recorded_space, require_sweeps

CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.pt"
MODEL_FILE = "model.pt"


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best(store: Store, sweep: str, trial_number: int | None = None) -> Best:
    """The study's best trial (or the numbered one) with the configuration it ran and its checkpoint."""
    require_sweeps(store, [sweep])
    study = load_study(store, sweep)
    trial = _pick(study, sweep, trial_number)
    client = MlflowClient(store.mlflow_url)
    run_ids = [v for k, v in sorted(trial.user_attrs.items()) if k.startswith("mlflow_run_id")]
    run_id = run_ids[0] if run_ids else None  # with repeats: the first seed's run
    run = client.get_run(run_id) if run_id is not None else None
    parent = run.data.tags.get("mlflow.parentRunId") if run is not None else None
    space = (recorded_space(client, parent, study.user_attrs) if parent else None) or {}
    config = {**space.get("config", {}), **trial.params}
    checkpoint = None
    if run is not None and _has_artifact(client, run_id, CHECKPOINT_ARTIFACT):
        checkpoint = f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT}"
    return Best(
        sweep=sweep,
        trial=trial.number,
        metric=(study.metric_names or ["value"])[0],
        mode="max" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "min",
        value=trial.value,
        trainable=space.get("trainable") or study.user_attrs.get("trainable", ""),
        config=config,
        params=dict(trial.params),
        mlflow_run_id=run_id,
        checkpoint=checkpoint,
    )


def _pick(study: optuna.Study, sweep: str, number: int | None) -> optuna.trial.FrozenTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if number is not None:
        match = [t for t in complete if t.number == number]
        if not match:
            raise SweepError(f"sweep {sweep!r} has no COMPLETE trial {number}", "--trial")
        return match[0]
    if not complete:
        raise SweepError(f"sweep {sweep!r} has no COMPLETE trial yet (hpsearch sweeps shows its trials)", sweep)
    return study.best_trial


def _has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return any(a.path == path for a in client.list_artifacts(run_id, folder or None))


def render(b: Best, fmt: str) -> str:
    """YAML (comments say what each part is for) or JSON."""
    if fmt == "json":
        import json

        return json.dumps(b.as_dict(), indent=2) + "\n"
    head = (
        f"# best of sweep {b.sweep}: trial {b.trial}, {b.metric} = {b.value:.6g} ({b.mode})\n"
        f"# retrain it:  hpsearch train --from {b.sweep}        export it:  hpsearch export {b.sweep} DIR\n"
    )
    return head + yaml.safe_dump(b.as_dict(), sort_keys=False)


def load_checkpoint(store: Store, b: Best) -> dict[str, Any]:
    if b.mlflow_run_id is None or b.checkpoint is None:
        raise SweepError(
            f"trial {b.trial} of {b.sweep} logged no checkpoint: report one on the last step "
            "(session.report(step, metrics, checkpoint={'model': model.state_dict()}, final=True))",
            b.sweep,
        )
    client = MlflowClient(store.mlflow_url)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(b.mlflow_run_id, CHECKPOINT_ARTIFACT, tmp)
        return torch.load(path, map_location="cpu", weights_only=False)


def write_model(
    trainable: str, checkpoint: dict[str, Any], config: dict[str, Any], out: Path, about: dict[str, Any]
) -> list[Path]:
    """``model.pt`` (the state dict, the configuration and where it came from; ``torch.load`` reads it
    with no hpsearch installed) and ``config.yaml``; plus what the trainable's own exporter writes
    (``save_pretrained`` for text models)."""
    from trainables import registry

    spec = registry.get(trainable)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if spec.export is not None:
        params = spec.params(**config) if spec.params is not None else config
        written += spec.export(checkpoint, params, out)
    state = checkpoint.get("model")
    payload = {
        "state_dict" if state is not None else "checkpoint": state if state is not None else checkpoint,
        "config": config,
        "trainable": trainable,
        **about,
    }
    torch.save(payload, out / MODEL_FILE)
    (out / "config.yaml").write_text(yaml.safe_dump({"trainable": trainable, "config": config, **about}))
    return sorted({*written, out / MODEL_FILE, out / "config.yaml"})
