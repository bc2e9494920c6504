"""Image trainables: models, datasets on generated stand-ins, augmentation presets, the training loop."""

import pytest
import torch

from trainables import augment, glyphs, image_data, image_models
from trainables.blocks import param_count
from trainables.image_classify import ImageParams
from trainables.registry import get
from trainables.session import LocalSession

# (architecture, options, channels, size, parameter count)
MODELS = [
    ("alexnet", {}, 3, 32, 7_506_762),
    ("vgg16", {}, 3, 32, 33_638_218),  # the seed's 33.6M
    ("vgg16", {"kernel_size": 7}, 3, 32, 99_018_058),  # the seed's 99.0M
    ("vgg50", {}, 3, 32, 87_104_202),
    ("inception-v1", {}, 3, 32, 239_674),
    ("inception-v1", {"reduce_1x1": False}, 3, 32, 564_586),
    ("inception50", {}, 3, 32, None),
    ("resnet18", {}, 3, 32, 11_173_962),
    ("resnet50", {}, 3, 32, 23_520_842),
    ("resnet101", {}, 3, 32, 42_512_970),
    ("mnist1", {}, 1, 28, 822_522),
    ("mnist2", {}, 1, 28, 222_352),
    ("mnist3", {}, 1, 28, 432_098),
    ("char-resnet", {"blocks": [1]}, 1, 90, None),
    ("char-resnet", {"blocks": [1, 1], "width": 0.5}, 1, 90, None),
    ("char-resnet", {"blocks": [2, 2, 2, 2]}, 1, 90, None),
]


@pytest.mark.parametrize("name, options, channels, size, params", MODELS, ids=[f"{m[0]}{m[1]}" for m in MODELS])
def test_model_forward_backward_and_params(name, options, channels, size, params):
    torch.manual_seed(0)
    model = image_models.build(name, channels, 10, 0.1, size, **options)
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if params is not None:
        assert param_count(model) == params


def test_inception_without_reductions_has_about_twice_the_parameters():
    count = {r: param_count(image_models.build("inception-v1", 3, 10, 0, 32, reduce_1x1=r)) for r in (True, False)}
    assert 1.8 < count[False] / count[True] < 3  # the seed's 320k vs 661k


@pytest.mark.parametrize(
    "options, message",
    [
        ({"model": "alexnet", "kernel_size": 7}, "model alexnet does not take 'kernel_size'"),
        ({"model": "vgg", "depth": 19}, "model vgg: depth must be one of [16, 50]"),
        ({"model": "resnet18", "depth": 50}, "model resnet18 fixes depth=18"),
        ({"model": "mnist1", "blocks": [1]}, "model mnist1 does not take 'blocks'"),
        ({"model": "lenet"}, "unknown model 'lenet'"),
    ],
)
def test_an_option_the_architecture_does_not_take_is_an_error(options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ImageParams(**options)


def test_cifar10_standin_loads_through_torchvision(tmp_path):
    image_data.write_cifar10_standin(tmp_path)
    data = image_data.load("cifar10", str(tmp_path), verify=False)
    assert data.shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.train[0]) + len(data.valid[0]) == 250 and len(data.test[0]) == 100
    assert data.train[0].dtype == torch.uint8


def test_cifar10_standin_fails_the_real_checksum(tmp_path):
    image_data.write_cifar10_standin(tmp_path)
    with pytest.raises(image_data.DatasetMissing, match="CIFAR-10 not found"):
        image_data.load("cifar10", str(tmp_path))


def test_missing_cifar10_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(image_data.DatasetMissing) as e:
        image_data.load("cifar10", str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in str(e.value) and "download: true" in str(e.value)


def test_mnist_standin_loads_through_torchvision(tmp_path):
    image_data.write_mnist_standin(tmp_path)
    data = image_data.load("mnist", str(tmp_path))
    assert data.shape == (1, 28, 28)
    assert len(data.train[0]) + len(data.valid[0]) == 240 and len(data.test[0]) == 60


def test_missing_mnist_is_clear(tmp_path):
    with pytest.raises(image_data.DatasetMissing, match="MNIST not found"):
        image_data.load("mnist", str(tmp_path))


def test_digits_are_the_bundled_sklearn_set():
    data = image_data.load("digits")
    assert data.shape == (1, 8, 8)
    assert sum(len(s[0]) for s in (data.train, data.valid, data.test)) == 1797


def test_glyphs_are_52_classes_deterministic_and_fonts_held_out(tmp_path):
    a = glyphs.glyph_splits(train_per_class=11, eval_per_class=3, size=32, seed=0, cache_dir=str(tmp_path / "a"))
    b = glyphs.glyph_splits(train_per_class=11, eval_per_class=3, size=32, seed=0, cache_dir=str(tmp_path / "b"))
    assert torch.equal(a["train"][0], b["train"][0])
    assert a["train"][0].shape == (52 * 11, 1, 32, 32)
    assert set(a["valid"][1].tolist()) == set(range(52))
    assert not set(glyphs.TRAIN_FONTS) & set(glyphs.VALID_FONTS + glyphs.TEST_FONTS)


def test_augmentation_presets_do_what_they_say():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 8:24, 4:10] = 1.0  # a bar on the left: a flip moves it to the right
    assert torch.equal(augment.augment(x, "none", gen), x)

    left = lambda y: y[..., :16].sum(dim=(1, 2, 3))  # noqa: E731
    right = lambda y: y[..., 16:].sum(dim=(1, 2, 3))  # noqa: E731
    basic = augment.augment(x, "basic", gen)
    assert ((right(basic) > left(basic)).sum() > 10) and ((left(basic) > right(basic)).sum() > 10)  # flips
    glyph = augment.augment(x, "glyph", gen)
    assert (left(glyph) > right(glyph)).all()  # never a flip
    assert not torch.equal(glyph, x)  # but rotated

    p = augment.sample_affine(1000, "glyph", 32, gen, torch.device("cpu"))
    assert p.angle_deg.abs().max() <= 8 and not p.flip.any() and (p.shift_px == 0).all()
    p = augment.sample_affine(1000, "basic", 32, gen, torch.device("cpu"))
    assert (p.angle_deg == 0).all() and p.shift_px.abs().max() <= 4 and 0.4 < p.flip.float().mean() < 0.6
    p = augment.sample_affine(1000, "extra", 32, gen, torch.device("cpu"))
    assert p.angle_deg.abs().max() > 10 and (p.scale != 1).all()

    colour = torch.rand(16, 3, 8, 8, generator=gen)
    jittered = augment.augment(colour, "extra", gen)
    assert jittered.shape == colour.shape and 0 <= jittered.min() and jittered.max() <= 1


def test_image_classifier_learns_digits_and_reports_everything():
    session = LocalSession()
    get("image-classifier").run(
        {"dataset": "digits", "model": "mnist2", "epochs": 4, "lr": 3e-3, "batch_size": 64, "grad_norms": True},
        session,
    )
    final = session.last
    assert len(session.history) == 4
    assert final["valid_accuracy"] > 0.8 and final["test_accuracy"] > 0.8
    assert final["param_count"] > 0 and final["seconds_per_epoch"] > 0
    norms = [k for k in final if k.startswith("grad_norm.")]
    assert len(norms) == 6 and all(final[k] > 0 for k in norms)  # 4 conv + 2 linear layers


def test_image_classifier_on_the_cifar_standin_with_augmentation(tmp_path):
    image_data.write_cifar10_standin(tmp_path)
    session = LocalSession()
    config = {"dataset": "cifar10", "data_dir": str(tmp_path), "verify_checksums": False}
    get("image-classifier").run(config | {"model": "alexnet", "epochs": 2, "augment": "extra"}, session)
    assert 0 <= session.last["test_accuracy"] <= 1 and len(session.history) == 2


def test_image_classifier_with_a_dataloader_under_a_time_budget():
    session = LocalSession(budget_s=3, report_interval_s=1)
    config = {"dataset": "digits", "model": "mnist1", "epochs": 1000, "num_workers": 1, "batch_size": 32}
    get("image-classifier").run(config, session)
    steps = [s for s, _ in session.history]
    assert steps[-1] <= 4 and "test_accuracy" in session.last


def test_the_cifar_architectures_space_on_the_standin_is_seed_bs_nine_models(tmp_path):
    """The conditional space of seed B (spaces/cifar-architectures.yaml) against the CIFAR-10 stand-in: its
    grid is the tree's 9 configurations, each one the trainable takes, with the seed's parameter counts."""
    from search.driver import plan

    image_data.write_cifar10_standin(tmp_path)
    local = [("config.data_dir", str(tmp_path)), ("config.download", False), ("config.verify_checksums", False)]
    sweep = plan.prepare("cifar-architectures", local)
    assert sweep.n_trials == 9 and sweep.spec.repeats == 5
    counts = {}
    for point in sweep.enqueued:
        p = get("image-classifier").params(**{**sweep.spec.config, **point})
        with torch.device("meta"):
            model = image_models.build(p.model, 3, 10, p.dropout, 32, **p.arch_options())
        counts[tuple(sorted(point.items(), key=str))] = param_count(model)
    vgg = {k: n for k, n in counts.items() if ("model", "vgg16") in k}
    assert len(vgg) == 3 and len(counts) == 9
    # the seed's table: VGG-16 3x3 33.6M, 7x7 99.0M; ResNet-18/50/101 ~11M / 25M / 44M
    assert vgg[(("batch_norm", True), ("kernel_size", 3), ("model", "vgg16"))] == pytest.approx(33.6e6, rel=0.01)
    assert vgg[(("batch_norm", True), ("kernel_size", 7), ("model", "vgg16"))] == pytest.approx(99.0e6, rel=0.01)
    resnet = sorted(n for k, n in counts.items() if ("model", "resnet") in k)
    assert resnet == pytest.approx([11e6, 25e6, 44e6], rel=0.1)
