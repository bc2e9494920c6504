"""Text trainables: data files, the from_pretrained path, the seq-transformer's learning-rate effect, a sweep."""

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.stores.store import Store
from trainables import registry, text_data, text_finetune
from trainables.session import LocalSession

ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("not dull at all", "pos"), ("never fine", "neg")]


def write_rows(path, rows, text="text", label="label"):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({text: t, label: lab}) + "\n" for t, lab in rows))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text(f"{text}{sep}{label}\n" + "".join(f'"{t}"{sep}{lab}\n' for t, lab in rows))
    return path


# ----------------------------------------------------------------------------- data files


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_each_format_reads_the_same_examples(tmp_path, suffix):
    data = text_data.read_table(write_rows(tmp_path / f"d{suffix}", ROWS), "text", "label", "train_file")
    assert data.texts == [t for t, _ in ROWS] and data.labels == [lab for _, lab in ROWS]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_wrong_column_names_the_file_the_column_and_the_option(tmp_path, suffix):
    path = write_rows(tmp_path / f"d{suffix}", ROWS, text="review", label="stars")
    with pytest.raises(ValueError) as e:
        text_data.read_table(path, "text", "stars", "train_file")
    msg = str(e.value)
    assert f"train_file {str(path)!r}: no column 'text'" in msg and "review, stars" in msg and "text_column" in msg
    with pytest.raises(ValueError, match="no column 'label'.*set label_column"):
        text_data.read_table(path, "review", "label", "train_file")


@pytest.mark.parametrize("content", ["", "text,label\n", "\n\n"], ids=["empty", "header-only", "blank-lines"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_empty_files_are_an_error(tmp_path, suffix, content):
    path = tmp_path / f"d{suffix}"
    path.write_text(content.replace(",", "\t") if suffix == ".tsv" else content)
    if suffix == ".jsonl" and content.startswith("text"):
        path.write_text("")
    with pytest.raises(ValueError, match=r"no examples \(the file is empty or has only a header\)"):
        text_data.read_table(path, "text", "label", "valid_file")


def test_bad_rows_name_their_line(tmp_path):
    bad_json = tmp_path / "d.jsonl"
    bad_json.write_text('{"text": "fine", "label": "pos"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        text_data.read_table(bad_json, "text", "label")
    empty_label = tmp_path / "d.csv"
    empty_label.write_text("text,label\nfine,pos\nbad,\n")
    with pytest.raises(ValueError, match="line 3: empty 'label'"):
        text_data.read_table(empty_label, "text", "label")
    with pytest.raises(ValueError, match="format must be .csv, .tsv or .jsonl"):
        text_data.read_table(tmp_path / "d.txt", "text", "label", "train_file")


def test_splits_by_ratio_and_labels_in_order(tmp_path):
    train = write_rows(tmp_path / "t.csv", [(f"text {i}", str(i % 3 * 5)) for i in range(100)])
    p = text_finetune.TextParams(train_file=str(train), valid_ratio=0.2, test_ratio=0.1, split_seed=3)
    s = text_finetune.load_splits(p)
    assert (len(s.train), len(s.valid), len(s.test)) == (72, 18, 10)
    assert s.label_names == ["0", "5", "10"]  # integer labels sorted as numbers
    assert not set(s.train.texts) & set(s.valid.texts) and not set(s.train.texts) & set(s.test.texts)
    assert text_finetune.load_splits(p).test.texts == s.test.texts  # the same split for every trial


def test_bad_data_file_stops_the_sweep_before_it_starts(tmp_path, write_space):
    bad = write_rows(tmp_path / "train.csv", ROWS, text="review")
    space = write_space({"name": "t", "trainable": "text-finetune", "config": {"train_file": str(bad)},
                         "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})  # fmt: skip
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {space}: config: train_file {str(bad)!r}: no column 'text' (columns: review, label); set text_column"
    ]
    assert not store.exists()


def test_relative_data_paths_are_made_absolute_for_the_trials(tmp_path, write_space, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "train.csv", ROWS * 10)
    space = write_space({"name": "t", "trainable": "text-finetune", "config": {"train_file": "train.csv"},
                         "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})  # fmt: skip
    sweep = plan.prepare(str(space))
    assert sweep.spec.config["train_file"] == str(tmp_path / "train.csv")


# ----------------------------------------------------------------------------- models


def test_hub_name_out_of_reach_says_how_to_point_at_a_local_copy(monkeypatch, tmp_path):
    import socket

    import huggingface_hub.constants

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty hub cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ValueError) as e:
        text_finetune.check_model_name("someone/not-cached-model")
    msg = str(e.value)
    assert "'someone/not-cached-model' could not be fetched" in msg and "save_pretrained" in msg


def test_hub_model_offline_is_one_line_exit_2_and_no_store(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", "bert-finetune", "--store", str(store)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "model_name 'bert-base-uncased' could not be fetched" in line and "HF_HUB_OFFLINE=1" in line
    assert not store.exists()


def test_from_pretrained_on_a_tiny_model_saved_locally(tmp_path, monkeypatch):
    """The real loading path: AutoTokenizer / AutoModelForSequenceClassification.from_pretrained(dir)."""
    p = text_finetune.TextParams(hidden_size=32, layers=1, generated_examples=600, label_noise=0.0)
    splits = text_finetune.load_splits(p)
    tokenizer, model = text_finetune.build(p, splits)
    # Saved with a 3-label head: loading for 2 labels must give it a fresh head, as fine-tuning expects.
    model.config.num_labels = 3
    model.classifier = type(model.classifier)(model.config.hidden_size, 3)
    local = tmp_path / "tiny-bert"
    model.save_pretrained(local)
    tokenizer.save_pretrained(local)
    embeddings = model.bert.embeddings.word_embeddings.weight.detach().clone()

    loaded_tok, loaded = text_finetune.build(text_finetune.TextParams(model_name=str(local)), splits)
    assert loaded.num_labels == 2 and loaded.config.id2label == {0: "negative", 1: "positive"}
    assert (loaded.bert.embeddings.word_embeddings.weight == embeddings).all()  # the saved weights, not new ones
    assert loaded_tok("the plot was not good")["input_ids"] == tokenizer("the plot was not good")["input_ids"]

    # The same model shipped inside a Python package (model_name: package:NAME), found without importing it.
    package = tmp_path / "site" / "tiny_bert_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    model.save_pretrained(package / "model")
    tokenizer.save_pretrained(package / "model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    text_finetune.check_model_name("package:tiny_bert_pkg")
    _, from_package = text_finetune.build(text_finetune.TextParams(model_name="package:tiny_bert_pkg"), splits)
    assert (from_package.bert.embeddings.word_embeddings.weight == embeddings).all()
    with pytest.raises(ValueError, match="no installed package 'no_such_pkg'.*hpsearch\\[pretrained\\]"):
        text_finetune.check_model_name("package:no_such_pkg")

    session = LocalSession()
    spec = registry.get("text-finetune")
    config = {"model_name": str(local), "generated_examples": 600, "label_noise": 0.0, "epochs": 3, "lr": 3e-3}
    spec.run(config, session)
    assert [step for step, _ in session.history] == [1, 2, 3]
    last = session.last
    assert {"train_loss", "valid_loss", "valid_accuracy", "best_epoch", "valid_loss_min_epoch"} <= set(last)
    assert last["best_valid_accuracy"] == max(m["valid_accuracy"] for _, m in session.history)
    assert 0.0 <= last["test_accuracy"] <= 1.0 and last["param_count"] == sum(t.numel() for t in loaded.parameters())
    assert session.last_checkpoint["label_names"] == ["negative", "positive"]

    # export: a Hugging Face directory that from_pretrained loads, tokenizer included, without hpsearch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    text_finetune.export_pretrained(session.last_checkpoint, None, tmp_path / "exported")
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported")
    exported_tok = AutoTokenizer.from_pretrained(tmp_path / "exported")
    assert exported.config.id2label == {0: "negative", 1: "positive"}
    assert exported_tok("the plot was not good")["input_ids"] == loaded_tok("the plot was not good")["input_ids"]
    best_state = session.last_checkpoint["model"]
    assert all((exported.state_dict()[k] == v).all() for k, v in best_state.items())


def test_scratch_bert_learns_word_order_and_lr_matters():
    """Negation and "A but B" need word order; a good lr learns them, a tiny lr does not move."""
    spec = registry.get("text-finetune")
    runs = {}
    for lr in (1e-5, 3e-3):
        session = LocalSession()
        spec.run({"lr": lr, "epochs": 5, "generated_examples": 2000, "label_noise": 0.0, "hidden_size": 32}, session)
        runs[lr] = session.last
    assert runs[1e-5]["best_valid_accuracy"] < 0.65
    assert runs[3e-3]["best_valid_accuracy"] > 0.85


def test_patience_ends_a_trial_that_stopped_improving(monkeypatch):
    session = LocalSession()
    # lr so small nothing improves after the first epoch: patience 2 stops at epoch 2, not 8.
    registry.get("text-finetune").run({"lr": 1e-7, "epochs": 8, "patience": 2, "generated_examples": 200}, session)
    assert len(session.history) == 3 and session.last["epochs_run"] == 3 and "test_accuracy" in session.last


def test_seq_transformer_reproduces_the_seed_learning_rate_effect():
    spec = registry.get("seq-transformer")
    acc = {}
    for lr in (1e-5, 1e-3):
        session = LocalSession()
        spec.run({"lr": lr, "epochs": 12}, session)
        acc[lr] = session.last["test_accuracy"]
    assert acc[1e-5] < 0.3  # ten classes: chance is 0.1
    assert acc[1e-3] > 0.9


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match=r"heads \(3\) must divide hidden \(20\)"):
        registry.get("seq-transformer").params(hidden=20, heads=3)
    with pytest.raises(ValueError, match=r"heads \(3\) must divide hidden_size \(64\)"):
        text_finetune.TextParams(heads=3)
    with pytest.raises(ValueError, match="apply to model_name: scratch only"):
        text_finetune.TextParams(model_name="bert-base-uncased", layers=4)


# ----------------------------------------------------------------------------- a sweep


@pytest.mark.slow
def test_two_trial_sweep_on_the_tiny_model_lands_in_optuna_and_mlflow(ray_local, write_space, tmp_path, quiet_console):
    space = {
        "name": "tiny-text",
        "trainable": "text-finetune",
        "config": {"hidden_size": 32, "layers": 1, "epochs": 2, "generated_examples": 400},
        "space": {"lr": {"type": "categorical", "choices": [1e-5, 3e-3]}},
        "sampler": {"name": "grid"},
        "concurrency": 2,
    }
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts == {"complete": 2, "pruned": 0, "fail": 0}

    study = optuna.load_study(study_name="tiny-text", storage=store.optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)

    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("tiny-text").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_accuracy")] == [1, 2]
        assert "test_accuracy" in run.data.metrics and "best_epoch" in run.data.metrics
        assert "checkpoint" in [a.path for a in client.list_artifacts(run.info.run_id)]
