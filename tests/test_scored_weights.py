"""The exported model is the one that was scored: a trial keeps the checkpoint of the step that gave its
value (``value: best`` or ``last``), ``best``/``export``/the final table read that step, and a checkpoint
from another step is said in one line. Mirrors trainables/session.py (CheckpointKeeper), the bridge's
``value_step``/``checkpoint_step`` and search/readback/scored.py; the end-to-end tests re-evaluate exported models."""

import math

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.names import KEPT_KEY
from search.readback.scored import weights_notice
from search.stores.store import Store
from trainables.session import CheckpointKeeper, LocalSession


def kept_steps(keeper: CheckpointKeeper, values: list[float]) -> list[int]:
    return [step for step, v in enumerate(values, 1) if keeper.wants(step, {"m": v})]


# -- the keeper -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "values", "kept", "last_kept"),
    [
        ("max", [0.3, 0.7, 0.5, 0.7, 0.9, 0.2], [1, 2, 5], 5),  # a tie (step 4) keeps the first, as the value does
        ("min", [0.3, 0.7, 0.2, 0.25, 0.1, 0.4], [1, 3, 5], 5),
        ("max", [0.9, 0.5, 0.4, 0.3], [1], 1),  # the first step is the best: later ones never replace it
    ],
)
def test_best_rule_keeps_each_improvement_and_ends_on_the_best_step(mode, values, kept, last_kept):
    keeper = CheckpointKeeper("m", mode, "best")
    assert kept_steps(keeper, values) == kept
    assert keeper.kept_step == last_kept
    best = max(values) if mode == "max" else min(values)
    assert keeper.kept == best


def test_last_rule_keeps_every_checkpoint():
    keeper = CheckpointKeeper("m", "max", "last")
    assert kept_steps(keeper, [0.9, 0.1, 0.5]) == [1, 2, 3] and keeper.kept_step == 3


def test_a_first_checkpoint_is_kept_without_its_metric_and_nan_never_replaces_a_kept_one():
    keeper = CheckpointKeeper("m", "max", "best")
    assert keeper.wants(1, {"other": 1.0})  # a trial never ends with no checkpoint
    assert keeper.wants(2, {"m": 0.4})  # a real score beats an unknown one
    assert not keeper.wants(3, {"m": float("nan")})
    assert not keeper.wants(4, {"m": 0.3})
    assert keeper.wants(5, {"m": 0.6}) and keeper.kept_step == 5


@pytest.mark.parametrize("first", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_first_step_is_kept_only_until_a_real_score_comes(first):
    """A NaN or inf kept first and never beaten made the export step 1's weights."""
    keeper = CheckpointKeeper("m", "max", "best")
    assert kept_steps(keeper, [first, 0.5, 0.4, 0.7]) == [1, 2, 4] and keeper.kept_step == 4 and keeper.kept == 0.7


def test_min_mode_keeps_the_first_of_tied_steps_as_the_value_does():
    keeper = CheckpointKeeper("m", "min", "best")
    assert kept_steps(keeper, [0.5, 0.3, 0.4, 0.3]) == [1, 2] and keeper.kept_step == 2


@pytest.mark.parametrize("last", [float("nan"), float("inf")])
def test_last_rule_keeps_the_last_finite_steps_checkpoint_as_the_value_is(last):
    """``value: last`` with a NaN last report: the value is step 2's, and so are the weights kept."""
    keeper = CheckpointKeeper("m", "max", "last")
    assert kept_steps(keeper, [0.9, 0.1, last]) == [1, 2] and keeper.kept_step == 2


def test_a_trade_off_sweeps_trials_keep_the_last_checkpoint_not_the_best_by_its_first_metric(write_space):
    from search.space.loading import validate

    spec = validate(
        {
            "name": "t",
            "trainable": "flaky",
            "metric": ["score", "cost"],
            "mode": ["max", "min"],
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        },  # fmt: skip
        "t.yaml",
    )
    assert spec.value_rule == "last"
    keeper = CheckpointKeeper("m", "max", spec.value_rule)  # its first metric, as the worker is given it
    assert kept_steps(keeper, [0.9, 0.1, 0.5]) == [1, 2, 3]


def test_a_checkpoint_function_is_called_only_when_it_is_kept():
    made = []
    session = LocalSession(keeper=CheckpointKeeper("m", "max", "best"))
    for step, value in enumerate([0.2, 0.6, 0.4, 0.5, 0.8, 0.1], 1):
        session.report(step, {"m": value}, checkpoint=lambda step=step: made.append(step) or {"step": step})
    assert made == [1, 2, 5]
    assert session.last_checkpoint == {"step": 5} and session.checkpoint_step == 5


# -- the bridge records which step each is ------------------------------------------------------------


STORAGES = {}


@pytest.fixture(params=["sqlite", "memory"])
def study(request, tmp_path):
    """The bridge's study on SQLite (values must really be written) and in memory."""
    storage = f"sqlite:///{tmp_path / 'o.db'}" if request.param == "sqlite" else None
    study = optuna.create_study(storage=storage, direction="maximize", study_name="s")
    STORAGES[id(study)] = storage
    return study


def reloaded(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials as another process reads them (from the storage, not from the bridge's objects)."""
    url = STORAGES[id(study)]
    return study.get_trials() if url is None else optuna.load_study(study_name="s", storage=url).get_trials()


def drive(study, value_rule, reports, kept_at):
    bridge = OptunaBridge(
        study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["m"], ["max"], 1, value_rule=value_rule)
    )
    bridge.ask("t0")
    for step, value in enumerate(reports, 1):
        result = {"m": value, "step": step, **({KEPT_KEY: True} if step in kept_at else {})}
        bridge.report("t0", result)
    bridge.complete("t0", None, error=False)
    (trial,) = reloaded(study)
    return trial


def test_value_best_is_the_best_step_and_the_kept_checkpoint_is_that_steps(study):
    trial = drive(study, "best", [0.3, 0.8, 0.5, 0.6], kept_at={1, 2})
    assert trial.state == TrialState.COMPLETE and trial.value == 0.8
    assert trial.user_attrs["value_step"] == 2 and trial.user_attrs["checkpoint_step"] == 2
    assert trial.user_attrs["checkpoint_metrics"] == {"m": 0.8}
    assert weights_notice(trial, ["m"]) is None


def test_value_last_is_the_last_report(study):
    trial = drive(study, "last", [0.3, 0.8, 0.5, 0.6], kept_at={1, 2, 3, 4})
    assert trial.value == 0.6 and trial.user_attrs["value_step"] == 4
    assert trial.user_attrs["checkpoint_step"] == 4 and weights_notice(trial, ["m"]) is None


def test_value_last_with_a_nan_last_report_is_the_last_finite_steps_with_its_weights(study):
    keeper = CheckpointKeeper("m", "max", "last")
    reports = [0.3, 0.8, float("nan")]
    kept = {step for step, v in enumerate(reports, 1) if keeper.wants(step, {"m": v})}
    trial = drive(study, "last", reports, kept_at=kept)
    assert trial.value == 0.8 and trial.user_attrs["value_step"] == 2
    assert trial.user_attrs["checkpoint_step"] == 2 and weights_notice(trial, ["m"]) is None


def test_a_checkpoint_from_another_step_is_said_in_one_line(study):
    trial = drive(study, "best", [0.3, 0.8, 0.5, 0.6], kept_at={4})  # saved at the end only
    notice = weights_notice(trial, ["m"])
    assert notice.startswith("weights from step 4: m 0.6; the trial's value 0.8 is from step 2")
    assert "\n" not in notice


# -- end to end: the exported model scores the recorded value ---------------------------------------


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def sweep_and_export(write_space, tmp_path, console, space: dict) -> tuple[optuna.trial.FrozenTrial, dict]:
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=console)
    assert outcome.counts["complete"] >= 1, outcome
    best = optuna.load_study(study_name=space["name"], storage=store.optuna_url).best_trial
    result = run_cli("export", space["name"], str(tmp_path / "out"), "--store", str(store.root))
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output  # the built-ins keep the scoring step: nothing to warn of
    exported = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert exported["step"] == best.user_attrs["value_step"] == best.user_attrs["checkpoint_step"]
    assert exported["metrics"][space.get("metric", exported["metric"])] == pytest.approx(best.value)
    return best, exported


def addition_model(name: str, config: dict) -> torch.nn.Module:
    """The exported addition model rebuilt from its config alone (dropout off: it is evaluated)."""
    from trainables.addition import AdditionCNN, AdditionCNNParams, AdditionTransformer, AdditionTransformerParams

    if name == "addition-cnn":
        p = AdditionCNNParams(**config)
        return AdditionCNN(p.embed_dim, p.conv_layers, p.channels, 0.0)
    p = AdditionTransformerParams(**config)
    return AdditionTransformer(
        p.embed_dim, p.encoder_layers, p.hidden_dim, p.heads, 0.0, p.positional_encoding, p.layer_norm
    )


LRS = {"type": "categorical", "choices": [0.05, 0.1, 0.15]}
# a conditional space: AdamW at the three large rates, SGD (with its momentum) at its default rate
BRANCHES = {
    "optimizer": {
        "type": "categorical",
        "choices": {
            "adamw": {"lr": LRS},
            "sgd": {"momentum": {"type": "categorical", "choices": [0.9]}},
        },
    }
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "config", "searched"),
    [
        ("addition-cnn", {"epochs": 3, "embed_dim": 8, "channels": 8, "conv_layers": 1, "seed": 3}, BRANCHES),
        pytest.param("addition-transformer", {"epochs": 3, "embed_dim": 8, "encoder_layers": 1, "hidden_dim": 16,
                     "heads": 2}, {"lr": LRS}, marks=pytest.mark.campaign),
    ],
)  # fmt: skip
def test_exported_addition_models_score_their_recorded_exact_match(
    ray_local, write_space, tmp_path, quiet_console, name, config, searched
):
    from trainables.addition import addition_pairs, predict

    # large learning rates on a small model: exact match climbs and falls back, so a best epoch is not the last
    space = {
        "name": f"scored-{name}",
        "trainable": name,
        "config": config,
        "space": searched,
        "sampler": {"name": "grid"},
        "concurrency": 2,
    }
    sweep_and_export(write_space, tmp_path, quiet_console, space)
    store = tmp_path / "store"
    trials = optuna.load_study(study_name=space["name"], storage=f"sqlite:///{store / 'optuna.db'}").trials
    # each kept checkpoint is stored once: in its MLflow run, which export reads, not in Ray's folder too
    assert len(list((store / "artifacts").rglob("checkpoint.pt"))) == len(trials)
    assert list((store / "ray").rglob("checkpoint.pt")) == []
    digits, totals = addition_pairs()
    for trial in trials:  # every trial's export, not only the best's
        out = tmp_path / f"out-{trial.number}"
        result = run_cli("export", space["name"], str(out), "--store", str(store), "--trial", str(trial.number))
        assert result.exit_code == 0, result.output
        exported = torch.load(out / "model.pt", weights_only=True)
        assert set(exported["config"]) == set(config) | set(trial.params)  # a conditional trial's own keys only
        model = addition_model(name, exported["config"])
        model.load_state_dict(exported["state_dict"])
        rescored = (predict(model, digits) == totals).float().mean().item()
        assert rescored == pytest.approx(trial.value, abs=1e-9), trial.number
    if name == "addition-cnn":  # the test means something only if a last-epoch checkpoint would score otherwise
        assert any(t.user_attrs["value_step"] < max(t.intermediate_values) for t in trials), [
            t.intermediate_values for t in trials
        ]


@pytest.mark.slow
def test_exported_text_model_scores_the_recorded_accuracy_from_its_own_directory(
    ray_local, write_space, tmp_path, quiet_console
):
    """text-finetune's export is a Hugging Face directory: loaded with from_pretrained (model and tokenizer),
    it scores the trial's recorded validation accuracy on the same split."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.text_finetune import TextParams, batches, encode, load_splits

    space = {
        "name": "scored-text",
        "trainable": "text-finetune",
        "config": {"hidden_size": 32, "layers": 1, "epochs": 3, "generated_examples": 600, "dropout": 0.0},
        "space": {"lr": {"type": "categorical", "choices": [3e-3]}},
        "sampler": {"name": "grid"},
    }
    best, exported = sweep_and_export(write_space, tmp_path, quiet_console, space)
    out = tmp_path / "out"
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForSequenceClassification.from_pretrained(out)
    model.eval()
    p = TextParams(**exported["config"])
    splits = load_splits(p)
    valid = encode(tokenizer, splits.valid, splits.label_ids(splits.valid), p.max_length)
    correct = 0
    with torch.no_grad():
        for batch in batches(valid, 256):
            correct += (model(**batch).logits.argmax(-1) == batch["labels"]).sum().item()
    assert correct / len(splits.valid.texts) == pytest.approx(best.value, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("fuse", [pytest.param(1, marks=pytest.mark.campaign), 2])
def test_exported_image_model_scores_the_recorded_accuracy_with_what_export_wrote(
    ray_local, write_space, tmp_path, quiet_console, fuse
):
    """Rebuilt from the export alone (its class names, input shape and normalisation), the model scores
    the trial's recorded validation accuracy on the same split; solo and as a fused member."""
    from trainables import image_data, image_models

    space = {
        "name": f"scored-digits-{fuse}",
        "trainable": "image-classifier",
        "config": {"dataset": "digits", "model": "mnist2", "epochs": 5, "batch_size": 32, "optimizer": "sgd"},
        "space": {"lr": {"type": "categorical", "choices": [0.3, 0.05]}},
        "sampler": {"name": "grid"},
        "fuse": fuse,
    }
    best, exported = sweep_and_export(write_space, tmp_path, quiet_console, space)
    data = image_data.load_digits()
    assert exported["classes"] == [str(d) for d in range(10)]
    shape = exported["input"]
    assert (shape["channels"], shape["height"], shape["width"]) == tuple(data.shape)
    model = image_models.build("mnist2", shape["channels"], len(exported["classes"]), 0.0, shape["width"])
    model.load_state_dict(exported["state_dict"])
    model.eval()
    norm = exported["normalize"]
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    x, y = data.valid
    with torch.no_grad():
        predicted = model((x.float() * norm["scale"] - mean) / std).argmax(1)
    rescored = (predicted == y).float().mean().item()
    assert math.isclose(rescored, best.value, abs_tol=1e-6), (rescored, best.value)  # one image is 1/360


@pytest.mark.slow
def test_exported_seq_transformer_scores_the_recorded_accuracy(ray_local, write_space, tmp_path, quiet_console):
    from trainables.seq_transformer import FILLERS, SeqParams, SeqTransformer, task_splits

    space = {
        "name": "scored-seq",
        "trainable": "seq-transformer",
        "config": {"epochs": 5, "train_examples": 300, "test_examples": 200, "hidden": 16, "batch_size": 10},
        "space": {"lr": {"type": "categorical", "choices": [0.02]}},
        "sampler": {"name": "grid"},
    }
    best, exported = sweep_and_export(write_space, tmp_path, quiet_console, space)
    p = SeqParams(**exported["config"])
    model = SeqTransformer(p.classes + FILLERS, p.seq_len, p.hidden, p.heads, p.layers, p.classes, 0.0)
    model.load_state_dict(exported["state_dict"])
    model.eval()
    _, (x, y), _ = task_splits(p, torch.device("cpu"))
    with torch.no_grad():
        rescored = (model(x).argmax(-1) == y).float().mean().item()
    assert rescored == pytest.approx(best.value, abs=1e-9)


PLAIN = """
def train(config, session):
    for step, score in enumerate([0.5, 0.9, 0.7], 1):
        last = step == 3
        session.report(step, {"acc": score}, checkpoint={"model": {"w": step}} if last else None, final=last)
"""


@pytest.mark.slow
def test_a_plain_function_that_saves_at_its_end_is_told_in_one_line(ray_local, tmp_path, monkeypatch, quiet_console):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fn.py").write_text(PLAIN)
    space = "name: plain-end\ntrainable: ./fn.py:train\nmetric: acc\nmode: max\n"
    (tmp_path / "plain.yaml").write_text(space + "space: {x: {type: float, low: 0.0, high: 1.0}}\ntrials: 1\n")
    result = run_cli("run", "plain.yaml")
    assert result.exit_code == 0, result.output
    line = "weights from step 3: acc 0.7; the trial's value 0.9 is from step 2"
    assert f"note: {line}" in result.output  # the final table
    result = run_cli("best", "plain-end")
    assert f"# note: {line}" in result.stdout
    result = run_cli("export", "plain-end", "out")
    assert result.exit_code == 0 and f"note: {line}" in result.stderr
    assert torch.load(tmp_path / "out" / "model.pt", weights_only=True)["state_dict"] == {"w": 3}


def fake_trial(values, **attrs):
    from types import SimpleNamespace

    return SimpleNamespace(values=values, user_attrs={"value_step": 2, "checkpoint_step": 3, **attrs})


@pytest.mark.parametrize(("kept", "said"), [(0.8, False), (0.6, True), (0.7, True)])
def test_with_repeats_the_notice_compares_the_first_seeds_weights_with_the_first_seeds_value(kept, said):
    """The run and checkpoint `best` takes are the first seed's (0.8); the last seed's (0.6) or the mean (0.7)
    is another seed's value."""
    trial = fake_trial([0.7], repeat_values=[0.8, 0.6], checkpoint_metrics={"m": kept})
    notice = weights_notice(trial, ["m"])
    assert (notice is not None) is said, notice
    if said:
        assert notice.startswith(f"weights from step 3: m {kept:.4g}; the trial's value 0.8 is from step 2")


def test_weights_from_a_step_that_did_not_report_the_metric_are_said_not_to_match():
    notice = weights_notice(fake_trial([0.8], checkpoint_metrics={"loss": 0.1}), ["m"])
    assert notice is not None and notice.startswith("weights from step 3: m not reported; the trial's value 0.8")
