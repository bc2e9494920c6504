"""A user's own images (dataset: folder), and datasets that cannot be downloaded here, checked before any trial."""

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image
from torchvision import datasets
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.stores.store import Store
from trainables import image_folder
from trainables.registry import get
from trainables.session import LocalSession

CLASSES = "AbC7"


@pytest.fixture(scope="module")
def glyph_folder(tmp_path_factory):
    """Seed C's kind of data as a user would have it: DIR/train/<class>/*.png and DIR/valid/<class>/*.png."""
    return image_folder.write_glyph_folder(tmp_path_factory.mktemp("glyphs"), CLASSES, per_class=9, size=40)


def folder_space(data_dir, **config) -> dict:
    return {
        "name": "folder",
        "trainable": "image-classifier",
        "config": {"dataset": "folder", "data_dir": str(data_dir), "image_size": 32, "epochs": 1, **config},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "trials": 1,
    }


def test_folder_loads_splits_with_the_train_classes(glyph_folder):
    splits, classes = image_folder.load(glyph_folder, size=24)
    assert classes == ["7", "b", "upper_A", "upper_C"]  # upper-case names are marked: folders may be case-blind
    x, y = splits["train"]
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (1, 24, 24)  # grayscale PNGs stay one channel
    assert sorted(set(y.tolist())) == [0, 1, 2, 3]
    assert len(splits["valid"][0]) == 4 * 3  # valid/ as given; test cut from train with a fixed seed
    assert len(splits["test"][0]) + len(x) == 4 * 9


def test_a_flat_colour_folder_is_split_by_ratio(tmp_path):
    for c, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (10 + i, 12), colour).save(tmp_path / c / f"{i}.jpg")
    splits, classes = image_folder.load(tmp_path, size=16, valid_ratio=0.1, test_ratio=0.2)
    assert classes == ["blue", "red"]
    assert splits["train"][0].shape[1:] == (3, 16, 16)
    assert [len(splits[s][0]) for s in ("train", "valid", "test")] == [14, 2, 4]
    again, _ = image_folder.load(tmp_path, size=16, valid_ratio=0.1, test_ratio=0.2)
    assert (again["test"][1] == splits["test"][1]).all()  # the same split for every trial


@pytest.mark.slow
def test_a_folder_dataset_sweeps_the_zoo(ray_local, glyph_folder, write_space, tmp_path, quiet_console):
    models = ["mnist1", "mnist2", "mnist3", "alexnet", "vgg16", "inception-v1", "resnet18", "char-resnet"]
    space = folder_space(glyph_folder, batch_size=16)
    space["space"] = {"model": {"type": "categorical", "choices": models}}
    space |= {"sampler": {"name": "grid"}, "concurrency": 2}
    del space["trials"]  # the grid's size
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    study = optuna.load_study(study_name="folder", storage=store.optuna_url)
    assert outcome.counts["complete"] == len(models), [t.user_attrs for t in study.trials]
    assert sorted(t.params["model"] for t in study.trials) == sorted(models)
    assert all(t.state == TrialState.COMPLETE and 0 <= t.value <= 1 for t in study.trials)


def test_a_folder_trains_in_process_and_learns(glyph_folder):
    session = LocalSession()
    config = {"dataset": "folder", "data_dir": str(glyph_folder), "image_size": 24, "model": "mnist2"}
    get("image-classifier").run(config | {"epochs": 12, "lr": 3e-3, "batch_size": 8}, session)
    assert session.last["valid_accuracy"] > 0.5  # four classes: chance is 0.25


def bad_folders(root):
    """Each broken layout, and the words its one-line error must contain."""
    (root / "empty" / "train" / "a").mkdir(parents=True)
    (root / "empty" / "train" / "b").mkdir(parents=True)
    for c in ("a",):
        (root / "one" / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / "one" / c / "0.png")
    for c in ("a", "b"):
        (root / "unreadable" / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / "unreadable" / c / "0.png")
    (root / "unreadable" / "b" / "1.png").write_text("not an image")
    for split, classes in (("train", "ab"), ("valid", "ac")):
        for c in classes:
            (root / "differ" / split / c).mkdir(parents=True)
            Image.new("L", (8, 8)).save(root / "differ" / split / c / "0.png")
    (root / "no-train" / "valid" / "a").mkdir(parents=True)
    return {
        "empty": "no images in class folder(s)",
        "one": "only one class ('a'); a classifier needs at least two",
        "unreadable": "1.png' cannot be read as an image",
        "differ": "its classes differ from train/'s (not in train/: c; missing here: b)",
        "no-train": "has valid/ but no train/",
        "missing": "no such folder",
    }


def test_each_bad_folder_is_one_line_exit_2_and_nothing_written(tmp_path):
    for name, words in bad_folders(tmp_path / "data").items():
        space = tmp_path / f"{name}.yaml"
        space.write_text(yaml.safe_dump(folder_space(tmp_path / "data" / name)))
        store = tmp_path / f"store-{name}"
        result = CliRunner().invoke(app, ["run", str(space), "--store", str(store)])
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (name, result.output)
        assert lines[0].startswith(f"error: {space}: config: ") and words in lines[0], (name, lines[0])
        assert not store.exists()


def test_download_without_network_fails_before_any_trial(tmp_path, monkeypatch):
    # Point torchvision's MNIST mirrors at a closed port on this machine: no network, whatever the host has.
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/mnist/"])
    space = tmp_path / "mnist.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "name": "mnist-offline",
                "trainable": "image-classifier",
                "config": {"dataset": "mnist", "data_dir": str(tmp_path / "data"), "download": True},
                "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            }
        )
    )
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(tmp_path / "store")])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "download: true, but 127.0.0.1 cannot be reached from here" in lines[0]
    assert not (tmp_path / "store").exists()
