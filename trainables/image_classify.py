"""One image-classification loop for every model of seed experiments B, C and E.

Data are tensors on the trial's device (or a DataLoader when the space asks for workers); augmentation
is batched on the device; mixed precision and channels-last switch on with CUDA. Reports per step: train
loss, validation loss and accuracy (and per-layer gradient norms with ``grad_norms``); at the end: test
accuracy, seconds per epoch and the parameter count.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from trainables import image_data, image_models
from trainables.augment import augment
from trainables.blocks import param_count
from trainables.fused import (
    CannotFuse,
    FusedAdamW,
    FusedGroup,
    FusedModels,
    FusedSGD,
    batch_order_seed,
    check_fusible,
    fit_fused,
    shared_key,
)
from trainables.hyperparameters.image import ImageParams
from trainables.loop import FitLoop, optimizer_step, shuffled
from trainables.schedules import scheduler
from trainables.session import GroupSession, Session

Tensors = tuple[torch.Tensor, torch.Tensor]


def load_data(p: ImageParams) -> tuple[image_data.ImageData, Tensors, torch.Tensor, torch.Tensor]:
    """The data set, its training images (the first ``train_subset`` of them) and their per-channel mean and
    std on a 0..1 scale."""
    data = image_data.load(
        p.dataset, p.data_dir, p.download, p.verify_checksums, p.glyph_size, p.glyph_train_per_class,
        p.image_size, p.color, p.valid_ratio, p.test_ratio,
    )  # fmt: skip
    train_x, train_y = data.train
    if p.train_subset:
        train_x, train_y = train_x[: p.train_subset], train_y[: p.train_subset]
    pixels = train_x.to(torch.get_default_dtype())  # the models' float type (float32 unless a test says)
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True) / 255
    std = pixels.std(dim=(0, 2, 3), keepdim=True) / 255 + 1e-6
    return data, (train_x, train_y), mean, std


def how_to_use(data: image_data.ImageData, mean: torch.Tensor, std: torch.Tensor) -> dict[str, Any]:
    """What a checkpoint needs beside its weights to be used without hpsearch: the class names in output
    order, the input's shape, and the normalisation the model was trained on (pixels / 255, then
    (x - mean) / std per channel)."""
    channels, height, width = data.shape
    return {
        "classes": data.classes,
        "input": {"channels": channels, "height": height, "width": width},
        "normalize": {"scale": 1 / 255, "mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
    }


def preflight(p: ImageParams) -> None:
    image_data.check_available(p.dataset, p.data_dir, p.download)


def image_classifier(p: ImageParams, session: Session) -> None:
    """CNN zoo on CIFAR-10, MNIST, digits, glyphs or your own image folder (seeds B, C, E)."""
    torch.manual_seed(p.seed)
    device = session.device
    cuda = device.type == "cuda"
    data, (train_x, train_y), mean, std = load_data(p)
    channels, size = data.shape[0], data.shape[-1]

    model = image_models.build(p.model, channels, data.num_classes, p.dropout, size, **p.arch_options()).to(device)
    memory_format = torch.channels_last if cuda and p.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    params = param_count(model)
    if p.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    schedule = scheduler(opt, p, p.lr, math.ceil(len(train_x) / p.batch_size), p.epochs)
    use_amp = cuda and p.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(batch_order_seed(p))  # the batch order and the augmentation
    usage = how_to_use(data, mean, std)  # travels with each checkpoint: the model is usable without hpsearch
    mean, std = mean.to(device), std.to(device)

    def prepare(x: torch.Tensor, train: bool) -> torch.Tensor:
        x = x.to(device, non_blocking=True).to(mean.dtype) / 255
        if train:
            x = augment(x, p.augment, gen)
        return ((x - mean) / std).contiguous(memory_format=memory_format)

    def batches():
        if p.num_workers or p.pin_memory:  # the seed's data-loader settings, swept in experiment C
            loader = DataLoader(
                TensorDataset(train_x, train_y), batch_size=p.batch_size, shuffle=True,
                num_workers=p.num_workers, pin_memory=p.pin_memory and cuda, generator=gen,
                persistent_workers=False,
            )  # fmt: skip
            yield from loader
        else:
            for idx in shuffled(len(train_x), p.batch_size, gen):
                yield on_device_x[idx], on_device_y[idx]

    use_loader = bool(p.num_workers or p.pin_memory)
    on_device_x = train_x if use_loader else train_x.to(device)
    on_device_y = train_y if use_loader else train_y.to(device)

    @torch.no_grad()
    def evaluate(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        model.eval()
        x_all, y_all = split
        loss, correct = 0.0, 0
        for i in range(0, len(x_all), 1024):
            x, y = prepare(x_all[i : i + 1024], False), y_all[i : i + 1024].to(device)
            with torch.autocast(device.type, enabled=use_amp):
                out = model(x)
            loss += F.cross_entropy(out.to(mean.dtype), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
        model.train()
        return loss / len(x_all), correct / len(x_all)

    loop = FitLoop(session, len(train_x))
    norms: dict[str, float] = defaultdict(float)
    norm_steps = 0

    def add_grad_norms() -> None:
        nonlocal norm_steps
        for name, prm in model.named_parameters():
            if prm.grad is not None and prm.dim() > 1:  # weights of conv and linear layers
                norms[name.removesuffix(".weight")] += prm.grad.norm().item()
        norm_steps += 1

    def train_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = prepare(batch[0], True), batch[1].to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = F.cross_entropy(model(x), y, label_smoothing=p.label_smoothing)
        optimizer_step(opt, loss, scaler=scaler, before_step=add_grad_norms if p.grad_norms else None)
        schedule.step()
        loop.add(loss.item(), len(y))

    def report(step: int, epoch: int, last: bool) -> bool:
        nonlocal norm_steps
        valid_loss, valid_acc = evaluate(data.valid)
        metrics = {
            "train_loss": loop.train_loss(),
            "valid_loss": valid_loss,
            "valid_accuracy": valid_acc,
            "epoch": float(epoch + 1),
            # size and speed at every step, so a trade-off sweep can weigh them while it prunes
            "seconds_per_epoch": loop.seconds_per_epoch(),
            "param_count": float(params),
        }
        if p.grad_norms and norm_steps:
            metrics |= {f"grad_norm.{k}": v / norm_steps for k, v in norms.items()}
            norms.clear()
            norm_steps = 0
        done = last or loop.out_of_time()
        if done:
            metrics["test_accuracy"] = evaluate(data.test)[1]
        # offered at every step (made only when kept): the session keeps the weights that scored the value
        checkpoint = (lambda: {"model": model.state_dict(), "epoch": epoch + 1, **usage}) if p.save_model else None
        session.report(step, metrics, checkpoint=checkpoint, final=done)
        return done

    model.train()
    loop.run(p.epochs, lambda epoch: batches(), train_batch, report)


# ----------------------------------------------------------------------------- fused (many lr, one model)

# What may differ between the members of one fused group; the rest (model, data, batch size, augmentation,
# dropout) is the group's. The seed fuses when data_seed fixes the batch order and augmentation.
FUSIBLE = ("lr", "weight_decay", "momentum", "label_smoothing", "seed")


def fuse_key(p: ImageParams) -> tuple:
    return shared_key(p, FUSIBLE)


def cannot_fuse(p: ImageParams) -> str | None:
    """Why this configuration cannot train in a fused group (None: it can)."""
    if p.num_workers or p.pin_memory:
        return "num_workers / pin_memory feed one model through a DataLoader; fused members share device tensors"
    if p.grad_norms:
        return "grad_norms reports the gradient norms of one model's layers"
    if p.lr_schedule != "none":
        return f"lr_schedule: {p.lr_schedule} is not in the fused optimizers yet; fuse with lr_schedule: none"
    with torch.device("meta"):  # the architecture only: no memory, no time
        model = image_models.build(p.model, 3, 10, p.dropout, p.image_size, **p.arch_options())
    try:
        check_fusible(model)
    except CannotFuse as e:
        fusing = "alexnet, vgg16 and vgg50 (batch_norm: false), mnist1, mnist2 fuse"
        return f"model {p.model} has batch norm ({e}); {fusing}"
    return None


def smoothed_cross_entropy(out: torch.Tensor, y: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy with its own label smoothing, as ``F.cross_entropy`` computes it:
    out (members, batch, classes), y (batch,), smoothing (members,) -> (members,)."""
    logp = out.log_softmax(-1)
    nll = -logp.gather(-1, y.expand(out.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    uniform = -logp.mean(-1)
    eps = smoothing.view(-1, 1)
    return ((1 - eps) * nll + eps * uniform).mean(dim=1)


def image_classifier_fused(ps: list[ImageParams], session: GroupSession) -> None:
    """image-classifier for a group: the same data, batches and augmentation for every member, each with its
    own initialisation, lr, weight decay, momentum and label smoothing, all as one stacked model. Members
    train in float32 (no AMP); with dropout each member draws its own masks."""
    first, device = ps[0], session.device
    data, (train_x, train_y), mean, std = load_data(first)
    channels, size = data.shape[0], data.shape[-1]
    models = []
    for p in ps:
        torch.manual_seed(p.seed)  # each member is initialised as it would be alone
        models.append(image_models.build(p.model, channels, data.num_classes, p.dropout, size, **p.arch_options()))
    params = param_count(models[0])
    fused = FusedModels([m.to(device) for m in models])
    if first.optimizer == "adam":
        opt = FusedAdamW(fused.parameters(), [p.lr for p in ps], [p.weight_decay for p in ps], [(0.9, 0.999)] * len(ps))
    else:
        opt = FusedSGD(fused.parameters(), [p.lr for p in ps], [p.momentum for p in ps], [p.weight_decay for p in ps])
    group = FusedGroup(fused, opt, [0.0] * len(ps))
    smoothing = torch.tensor([p.label_smoothing for p in ps], device=device)
    gen = torch.Generator().manual_seed(batch_order_seed(first))
    usage = how_to_use(data, mean, std)  # travels with each checkpoint: the model is usable without hpsearch
    mean, std = mean.to(device), std.to(device)
    on_device_x, on_device_y = train_x.to(device), train_y.to(device)

    def prepare(x: torch.Tensor, train: bool) -> torch.Tensor:
        x = x.to(device).to(mean.dtype) / 255
        if train:
            x = augment(x, first.augment, gen)
        return (x - mean) / std

    @torch.no_grad()
    def evaluate(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[list[float], list[float]]:
        """Each active member's validation loss and accuracy (by row)."""
        fused.eval()
        x_all, y_all = split
        loss = torch.zeros(len(group.active), device=device)
        correct = torch.zeros(len(group.active), device=device)
        for i in range(0, len(x_all), 1024):
            x, y = prepare(x_all[i : i + 1024], False), y_all[i : i + 1024].to(device)
            out = fused(x)  # (members, batch, classes)
            loss += (
                F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="none")
                .view(out.shape[0], -1)
                .sum(dim=1)
            )
            correct += (out.argmax(-1) == y).sum(dim=1)
        fused.train()
        return (loss / len(x_all)).tolist(), (correct / len(x_all)).tolist()

    def losses(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, y = prepare(on_device_x[idx], True), on_device_y[idx]
        rows = torch.tensor(group.active, device=device)
        return smoothed_cross_entropy(fused(x), y, smoothing[rows]), len(y)

    def measure(epoch: int, last: bool) -> tuple[dict, dict, set]:
        valid_loss, valid_acc = evaluate(data.valid)
        test_acc = evaluate(data.test)[1] if last else None
        seconds = (time.monotonic() - started) / epoch
        metrics, checkpoints = {}, {}
        for r, m in enumerate(group.active):
            metrics[m] = {
                "train_loss": group.train_loss(m),
                "valid_loss": valid_loss[r],
                "valid_accuracy": valid_acc[r],
                "epoch": float(epoch),
                "seconds_per_epoch": seconds,
                "param_count": float(params),
            }
            if last:
                metrics[m]["test_accuracy"] = test_acc[r]
            if ps[m].save_model:  # offered at every step: the session keeps the one that scored the value
                checkpoints[m] = lambda r=r, e=epoch: {"model": fused.member_state(r), "epoch": e, **usage}
        return metrics, checkpoints, set(group.active) if last else set()

    started = time.monotonic()
    batches = lambda: shuffled(len(train_x), first.batch_size, gen)  # noqa: E731
    fit_fused(group, session, first.epochs, batches, losses, measure)
