"""Fused trials: many configurations trained as one stacked model, each still a first-class trial.

First the machinery alone (trainables/fused.py) and each fused trainable against its solo twin; then
whole sweeps with real Ray, SQLite and MLflow: one Optuna trial and one MLflow run per member, members
pruned or failed alone, groups split by what cannot fuse, and a member's checkpoint as a single model.
"""

import itertools
import math
import time

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.driver import plan, runner
from search.stores.store import Store
from trainables.fused import CannotFuse, FusedAdamW, FusedModels, FusedSGD, clip_per_member
from trainables.registry import get
from trainables.session import LocalGroupSession, LocalSession


@pytest.fixture
def float64():
    """Solo and fused differ only by float rounding: in float64 they must agree to ~1e-12."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def solo_and_fused(name, configs):
    spec = get(name)
    group = LocalGroupSession(len(configs))
    spec.run_group(configs, group)
    solos = []
    for config in configs:
        session = LocalSession()
        spec.run(config, session)
        solos.append(session)
    return group, solos


def largest_difference(group, solos, metric):
    """(largest relative difference of ``metric`` over every member's steps, the members' step lists agree)"""
    worst, same_steps = 0.0, True
    for m, solo in enumerate(solos):
        fused_steps = group.history[m]
        same_steps &= [s for s, _ in fused_steps] == [s for s, _ in solo.history]
        for (_, a), (_, b) in zip(fused_steps, solo.history):
            worst = max(worst, abs(a[metric] - b[metric]) / max(abs(b[metric]), 1e-12))
    return worst, same_steps


ADDITION = {"epochs": 2, "embed_dim": 8, "conv_layers": 2, "channels": 16, "batch_size": 256, "data_seed": 0}
MEMBERS = [  # every fusible hyperparameter differs somewhere
    {"lr": 8e-3, "seed": 0, "weight_decay": 0.01, "beta1": 0.8},
    {"lr": 1e-3, "seed": 1, "grad_clip": 0.5},
    {"lr": 2e-2, "seed": 2, "beta2": 0.99, "grad_clip": 0.0},
]


@pytest.mark.parametrize(
    "name, base",
    [
        ("addition-cnn", ADDITION),
        ("addition-transformer", {"epochs": 2, "batch_size": 256, "data_seed": 0, "embed_dim": 8, "encoder_layers": 1,
                                  "hidden_dim": 16, "heads": 2}),
        ("seq-transformer", {"epochs": 2, "hidden": 8, "heads": 2, "train_examples": 200, "test_examples": 50,
                             "batch_size": 20, "data_seed": 0}),
    ],
)  # fmt: skip
def test_a_member_follows_its_solo_twins_curve(name, base, float64):
    members = [{k: v for k, v in m.items() if k != "grad_clip" or name != "seq-transformer"} for m in MEMBERS]
    if name == "seq-transformer":
        members = [{**m, "max_grad": c} for m, c in zip(members, (5.0, 0.5, 0.0))]
    configs = [{**base, **m} for m in members]
    group, solos = solo_and_fused(name, configs)
    metric = "loss" if name.startswith("addition") else "train_loss"
    worst, same_steps = largest_difference(group, solos, metric)
    assert same_steps and worst < 1e-9, worst  # measured: ~1e-13 after 2 epochs
    accuracy = "exact_match" if name.startswith("addition") else "valid_accuracy"
    assert [h[-1][1][accuracy] for h in group.history.values()] == [s.last[accuracy] for s in solos]


IMAGE = {"dataset": "digits", "epochs": 2, "batch_size": 64, "train_subset": 512, "data_seed": 0, "augment": "basic"}
IMAGE_MEMBERS = [  # every fusible hyperparameter differs somewhere
    {"lr": 3e-3, "seed": 0, "weight_decay": 0.01},
    {"lr": 1e-3, "seed": 1, "label_smoothing": 0.1},
    {"lr": 1e-2, "seed": 2},
]


@pytest.mark.parametrize(
    "optimizer, model",
    [("adam", "mnist2"), ("sgd", "mnist1")],
)
def test_an_image_member_follows_its_solo_twins_curve(optimizer, model, float64):
    """The same batches and augmentation for every member: each follows its solo twin's curve."""
    configs = [{**IMAGE, "model": model, "optimizer": optimizer, **m} for m in IMAGE_MEMBERS]
    if optimizer == "sgd":
        configs = [{**c, "lr": c["lr"] * 10, "momentum": mom} for c, mom in zip(configs, (0.9, 0.0, 0.5))]
    group, solos = solo_and_fused("image-classifier", configs)
    worst, same_steps = largest_difference(group, solos, "train_loss")
    assert same_steps and worst < 1e-9, worst
    for metric in ("valid_accuracy", "test_accuracy"):
        assert [h[-1][1][metric] for h in group.history.values()] == [s.last[metric] for s in solos]


def test_image_models_fuse_unless_they_have_batch_norm():
    spec = get("image-classifier")
    fuse = {m: spec.cannot_fuse(spec.params(model=m)) for m in ("alexnet", "vgg16", "vgg50", "mnist1", "mnist2")}
    assert fuse == dict.fromkeys(fuse)  # None: each of them fuses
    for model in ("resnet18", "mnist3", "char-resnet", "inception-v1"):
        assert "has batch norm (BatchNorm2d at" in spec.cannot_fuse(spec.params(model=model))
    assert "batch norm" in spec.cannot_fuse(spec.params(model="vgg16", batch_norm=True))


def test_fused_sgd_is_torch_sgd_for_each_member(float64):
    torch.manual_seed(0)
    models = [torch.nn.Linear(3, 2) for _ in range(3)]
    fused = FusedModels(models)
    settings = [(1e-1, 0.9, 0.01), (3e-2, 0.0, 0.0), (5e-2, 0.5, 0.1)]  # lr, momentum, weight decay
    opt = FusedSGD(fused.parameters(), *zip(*settings))
    solo_opts = [
        torch.optim.SGD(m.parameters(), lr=lr, momentum=mom, weight_decay=wd)
        for m, (lr, mom, wd) in zip(models, settings)
    ]
    x = torch.randn(5, 3)
    for _ in range(4):
        opt.zero_grad()
        fused(x).pow(2).sum().backward()
        opt.step()
        for m, o in zip(models, solo_opts):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for i, m in enumerate(models):
        for name, value in fused.member_state(i).items():
            assert torch.allclose(value, m.state_dict()[name], atol=1e-12), name


def test_in_float32_a_member_stays_within_rounding_of_its_twin():
    """float32: the stacked kernels round differently, and training amplifies it; after one epoch the
    loss agrees to about 1e-4 (measured 6e-5 at lr 8e-3, 1e-7 at lr 1e-4)."""
    configs = [{**ADDITION, "epochs": 1, **m} for m in MEMBERS]
    group, solos = solo_and_fused("addition-cnn", configs)
    worst, _ = largest_difference(group, solos, "loss")
    assert worst < 1e-3, worst


def test_fused_adamw_is_torch_adamw_for_each_member(float64):
    torch.manual_seed(0)
    models = [torch.nn.Linear(3, 2) for _ in range(2)]
    fused = FusedModels(models)
    settings = [(1e-2, 0.1, (0.9, 0.999)), (3e-3, 0.0, (0.5, 0.9))]
    opt = FusedAdamW(fused.parameters(), *zip(*settings))
    solo_opts = [
        torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd, betas=b) for m, (lr, wd, b) in zip(models, settings)
    ]
    x = torch.randn(5, 3)
    for _ in range(3):
        opt.zero_grad()
        fused(x).pow(2).sum().backward()
        clip_per_member(fused.parameters(), [0.5, 0.0])
        opt.step()
        for i, (m, o) in enumerate(zip(models, solo_opts)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            if i == 0:
                torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            o.step()
    for i, m in enumerate(models):
        for name, value in fused.member_state(i).items():
            assert torch.allclose(value, m.state_dict()[name], atol=1e-12), name


def test_pruned_and_diverging_members_leave_the_group_and_the_rest_go_on():
    configs = [{**ADDITION, "epochs": 3, "lr": lr} for lr in (5e-3, 5e-3, 1e12)]  # the last one blows up
    group = LocalGroupSession(3, prune_at={1: 1})  # member 1 pruned after its first step
    get("addition-cnn").run_group(configs, group)
    assert [s for s, _ in group.history[0]] == [1, 2, 3]
    assert [s for s, _ in group.history[1]] == [1]
    assert group.history[2] == [] and "diverged" in group.failed[2]
    # a checkpoint is offered at every step (kept by the member's own rule): the pruned member has its last
    assert group.final == {0} and set(group.checkpoints) == {0, 1}


@pytest.mark.parametrize(
    ("name", "configs", "metric"),
    [
        ("addition-cnn", [{**ADDITION, "epochs": 3, **m} for m in MEMBERS], "loss"),
        (
            "image-classifier",
            [
                {**IMAGE, "epochs": 3, "model": "mnist1", "optimizer": "sgd", **m, "lr": m["lr"] * 10, "momentum": mom}
                for m, mom in zip(IMAGE_MEMBERS, (0.9, 0.0, 0.5))
            ],
            "train_loss",
        ),
    ],
)
@pytest.mark.parametrize("leaves", [0, 1])
def test_after_a_member_leaves_the_others_still_follow_their_solo_twins(name, configs, metric, leaves, float64):
    """A member other than the last leaves (pruned after step 1): the group is repacked, and each member left
    keeps its own learning rate, optimizer state and loss: its whole curve is still its solo twin's."""
    spec = get(name)
    group = LocalGroupSession(len(configs), prune_at={leaves: 1})
    spec.run_group(configs, group)
    assert [s for s, _ in group.history[leaves]] == [1]
    for m, config in enumerate(configs):
        if m == leaves:
            continue
        solo = LocalSession()
        spec.run(config, solo)
        assert [s for s, _ in group.history[m]] == [s for s, _ in solo.history] == [1, 2, 3]
        for (_, fused), (_, alone) in zip(group.history[m], solo.history):
            assert fused[metric] == pytest.approx(alone[metric], rel=1e-9), (m, fused[metric], alone[metric])


def test_a_members_checkpoint_loads_into_one_ordinary_model():
    from trainables.addition import AdditionCNN, predict

    group = LocalGroupSession(2)
    get("addition-cnn").run_group([{**ADDITION, "lr": 5e-3}, {**ADDITION, "lr": 1e-3}], group)
    model = AdditionCNN(8, 2, 16, 0.0)
    model.load_state_dict(group.checkpoints[1]["model"])
    from trainables.addition import addition_pairs

    digits, totals = addition_pairs()
    exact = (predict(model, digits) == totals).float().mean().item()
    assert exact == pytest.approx(group.history[1][-1][1]["exact_match"])


def test_batch_norm_cannot_fuse():
    with pytest.raises(CannotFuse, match="BatchNorm2d at 1 keeps running statistics per model"):
        FusedModels([torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))] * 2)


# ----------------------------------------------------------------------------- whole sweeps


MOMENTUM = {"type": "float", "low": 0.5, "high": 0.9}


@pytest.mark.slow
def test_fused_sweep_members_are_trials_runs_and_checkpoints_of_their_own(
    ray_local, write_space, tmp_path, quiet_console
):
    space = write_space(
        {
            "name": "fused",
            "trainable": "addition-cnn",
            "config": {**{k: v for k, v in ADDITION.items() if k != "channels"}, "epochs": 3},
            "space": {
                "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                "channels": {"type": "categorical", "choices": [8, 16]},  # not fusible: splits groups
                # a conditional branch: sgd members set momentum, adamw members do not; groups split by it too
                "optimizer": {"type": "categorical", "choices": {"adamw": {}, "sgd": {"momentum": MOMENTUM}}},
            },
            "sampler": {"name": "random", "seed": 0},
            "trials": 6,
            "fuse": 6,
            "concurrency": 2,
        },
        "fused.yaml",
    )
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(space)), store, console=quiet_console)
    assert outcome.counts["complete"] == 6
    study = optuna.load_study(study_name="fused", storage=store.optuna_url)
    groups = {}
    for t in study.trials:
        groups.setdefault(t.user_attrs["ray_trial_id"], set()).add((t.params["channels"], *sorted(t.params)))
    # one architecture and one set of active parameters per group
    assert 2 <= len(groups) <= 4 and all(len(c) == 1 for c in groups.values()), groups
    assert {t.params["optimizer"] for t in study.trials} == {"adamw", "sgd"}
    assert all(("momentum" in t.params) == (t.params["optimizer"] == "sgd") for t in study.trials)

    client = MlflowClient(store.mlflow_url)
    runs = [client.get_run(t.user_attrs["mlflow_run_id"]) for t in study.trials]
    assert len({r.info.run_id for r in runs}) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    for t, r in zip(study.trials, runs):
        assert r.data.tags["hpsearch.fused_group"] == t.user_attrs["ray_trial_id"]
        assert r.data.params["lr"] == str(t.params["lr"])
        history = client.get_metric_history(r.info.run_id, "exact_match")
        assert [m.step for m in history] == [1, 2, 3]
        assert max(m.value for m in history) == pytest.approx(t.value)  # its value: its best step's

    from typer.testing import CliRunner

    from search.commands.cli import app

    assert len(list((store.root / "artifacts").rglob("checkpoint.pt"))) == 6  # one a member, in its run
    assert list((store.root / "ray").rglob("*.pt")) == []  # not again in Ray's folder
    best = study.best_trial
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", "fused", str(out), "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    from trainables.addition import AdditionCNN

    saved = torch.load(out / "model.pt", weights_only=False)
    model = AdditionCNN(8, 2, best.params["channels"], 0.0)
    model.load_state_dict(saved["state_dict"])  # a member exports as one ordinary model
    assert saved["config"]["lr"] == best.params["lr"]


@pytest.mark.slow
def test_members_are_pruned_and_fail_alone_in_a_sweep(ray_local, flaky_space, tmp_path, quiet_console):
    """The flaky trainable's fused form: x in [0, 1], the score is best at 0.3; members above 0.9 fail."""
    space = flaky_space(
        "fused-prune",
        {"steps": 8, "sleep": 0.3, "fail_above": 0.9},
        sampler={"name": "random", "seed": 4},
        pruner={"name": "median", "n_startup_trials": 0, "n_warmup_steps": 1, "n_min_trials": 1},
        trials=12,
        fuse=6,
        concurrency=1,  # the second group is judged against the first one's finished members
    )
    store = Store.at(tmp_path / "store")
    runner.run(plan.prepare(str(space)), store, console=quiet_console)
    study = optuna.load_study(study_name="fused-prune", storage=store.optuna_url)
    by_state = {s: [t for t in study.trials if t.state == s] for s in TrialState}
    assert len(study.trials) == 12 and not by_state[TrialState.RUNNING]
    assert by_state[TrialState.PRUNED] and by_state[TrialState.COMPLETE]
    failing = [t for t in study.trials if t.params["x"] > 0.9 and t.state != TrialState.PRUNED]  # or pruned first
    assert failing and all(t.state == TrialState.FAIL for t in failing)
    assert all("failed on purpose" in t.user_attrs["fail_reason"] for t in failing)
    for t in by_state[TrialState.PRUNED]:  # it stopped where it was pruned: no step after that one
        assert max(t.intermediate_values) == t.user_attrs["pruned_at_step"]  # a later report is not recorded
    client = MlflowClient(store.mlflow_url)
    status = {t.number: client.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in study.trials}
    expected = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
    assert all(status[t.number] == expected[t.state] for t in study.trials)
    ray_ids = {t.user_attrs["ray_trial_id"] for t in study.trials}
    assert len(ray_ids) == 2  # 12 members in 2 Ray trials
    assert wait_for_no_stop_board(), "the fused groups' StopBoard actor outlived its sweep"


@pytest.mark.slow
def test_in_rounds_a_round_starts_only_once_the_round_before_has_ended(ray_local, flaky_space, tmp_path, quiet_console):
    """rounds: 3 of 9 trials, 2 groups at a time: each round is 2 groups (2 + 1 members), asked when Ray's
    loop polls again after the last group of the round before ended."""
    space = flaky_space(
        "fused-rounds",
        {"steps": 3, "sleep": 0.1},
        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 3},
        trials=9,
        fuse=4,
        concurrency=2,
        rounds=3,
    )
    store = Store.at(tmp_path / "store")
    outcome = runner.run(plan.prepare(str(space)), store, console=quiet_console)
    assert outcome.counts["complete"] == 9
    study = optuna.load_study(study_name="fused-rounds", storage=store.optuna_url)
    groups: dict[str, list[int]] = {}
    for t in study.trials:
        groups.setdefault(t.user_attrs["ray_trial_id"], []).append(t.number)
    assert sorted(map(len, groups.values())) == [1, 1, 1, 2, 2, 2]
    assert all(len({n // 3 for n in numbers}) == 1 for numbers in groups.values())  # no group spans two rounds
    rounds = [study.trials[i : i + 3] for i in range(0, 9, 3)]  # asked in order: numbers 0-2, 3-5, 6-8
    for before, after in itertools.pairwise(rounds):
        assert max(t.datetime_complete for t in before) <= min(t.datetime_start for t in after)


def wait_for_no_stop_board(timeout: float = 10.0) -> bool:
    from ray._private.state import actors

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [a for a in actors().values() if a["ActorClassName"].endswith("StopBoard") and a["State"] != "DEAD"]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_fused_members_share_the_set_of_parameters_they_set():
    key = runner.fuse_key(get("image-classifier"))
    a = {"dataset": "digits", "model": "mnist2", "optimizer": "sgd", "lr": 0.01}
    assert key(a) == key({**a, "lr": 0.1})  # lr is fusible
    assert key(a) != key({**a, "momentum": 0.9})  # momentum's default, yet set: another branch of the space


def test_a_fused_sgd_addition_group_follows_its_solo_twins(float64):
    members = [{"lr": 0.05, "momentum": 0.9, "seed": 0}, {"lr": 0.01, "momentum": 0.5, "seed": 1},
               {"lr": 0.1, "momentum": 0.0, "seed": 2, "weight_decay": 0.01}]  # fmt: skip
    configs = [{**ADDITION, "optimizer": "sgd", **m} for m in members]
    group, solos = solo_and_fused("addition-cnn", configs)
    worst, same_steps = largest_difference(group, solos, "loss")
    assert same_steps and worst < 1e-9, worst
    assert not math.isclose(solos[0].last["loss"], solos[1].last["loss"])  # the members did differ
