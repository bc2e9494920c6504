"""Two-digit addition (seed experiment A): a CNN over a 2x2 digit grid and a small Transformer.

Every pair 00+00 .. 99+99 is a case (10,000). The model reads the four digits and predicts the three
digits of the sum, so its mistakes look like the seed's: off by 10 or 90 when a carry goes wrong.

Split: a fixed 10% of the pairs (chosen with a constant seed, the same for every trial) is held out from
training. ``exact_match`` is scored on all 10,000 pairs, as the seed reports it; ``train_exact_match`` and
``heldout_exact_match`` say how much of it is memory and how much is addition.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.blocks import EncoderBlock, checkpoint_bytes, param_count
from trainables.fused import FusedGroup, FusedModels, batch_order_seed, fit_fused, shared_key
from trainables.hyperparameters.addition import AdditionCNNParams, AdditionParams, AdditionTransformerParams
from trainables.loop import FitLoop, optimizer_step, shuffled
from trainables.schedules import fused_optimizer, make_optimizer
from trainables.session import GroupSession, Session

SPLIT_SEED = 1234


# ----------------------------------------------------------------------------- data


def addition_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 cases: digits (N, 4) = [a tens, a ones, b tens, b ones] and sums (N,)."""
    a, b = torch.meshgrid(torch.arange(100), torch.arange(100), indexing="ij")
    a, b = a.flatten(), b.flatten()
    digits = torch.stack([a // 10, a % 10, b // 10, b % 10], dim=1)
    return digits, a + b


def sum_digits(total: torch.Tensor) -> torch.Tensor:
    """(N,) sums -> (N, 3) digits [hundreds, tens, ones]."""
    return torch.stack([total // 100, (total // 10) % 10, total % 10], dim=1)


def holdout_mask(n: int, fraction: float) -> torch.Tensor:
    """True for the held-out cases: the same for every trial, whatever its own seed."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[: round(n * fraction)]] = True
    return mask


# ----------------------------------------------------------------------------- models


class AdditionCNN(nn.Module):
    """Digits embedded, laid out as a 2x2 grid [[a tens, a ones], [b tens, b ones]], then 3x3 convs."""

    def __init__(self, embed_dim: int, conv_layers: int, channels: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, embed_dim)
        layers: list[nn.Module] = []
        in_ch = embed_dim
        for _ in range(conv_layers):
            layers += [nn.Conv2d(in_ch, channels, kernel_size=3, padding=1), nn.ReLU()]
            in_ch = channels
        self.convs = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(in_ch * 4, 3 * 10)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        x = self.embed(digits)  # (B, 4, E)
        x = x.transpose(1, 2).reshape(x.size(0), -1, 2, 2)  # (B, E, 2, 2)
        x = self.convs(x).flatten(1)
        return self.head(self.drop(x)).view(-1, 3, 10)


class AdditionTransformer(nn.Module):
    """The four digits as a 4-token sequence through a small encoder; the head reads all four tokens."""

    def __init__(
        self,
        embed_dim: int,
        encoder_layers: int,
        hidden_dim: int,
        heads: int,
        dropout: float,
        positional_encoding: bool,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, embed_dim)
        self.pos = nn.Parameter(torch.randn(4, embed_dim) * 0.02) if positional_encoding else None
        self.blocks = nn.Sequential(
            *[EncoderBlock(embed_dim, heads, hidden_dim, dropout, layer_norm) for _ in range(encoder_layers)]
        )
        self.norm = nn.LayerNorm(embed_dim) if layer_norm else nn.Identity()
        self.head = nn.Linear(4 * embed_dim, 3 * 10)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        x = self.embed(digits)
        if self.pos is not None:
            x = x + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x.flatten(1)).view(-1, 3, 10)


# ----------------------------------------------------------------------------- hyperparameters


# ----------------------------------------------------------------------------- training


def addition_cnn(p: AdditionCNNParams, session: Session) -> None:
    """CNN over the 2x2 digit grid learning two-digit addition (seed A)."""
    torch.manual_seed(p.seed)
    model = AdditionCNN(p.embed_dim, p.conv_layers, p.channels, p.dropout)
    train_addition(model, p, session)


def addition_transformer(p: AdditionTransformerParams, session: Session) -> None:
    """Transformer encoder over the 4 digit tokens learning two-digit addition (seed A)."""
    torch.manual_seed(p.seed)
    model = AdditionTransformer(
        p.embed_dim, p.encoder_layers, p.hidden_dim, p.heads, p.dropout, p.positional_encoding, p.layer_norm
    )
    train_addition(model, p, session)


def train_addition(model: nn.Module, p: AdditionParams, session: Session) -> None:
    device = session.device
    model.to(device)
    digits, totals = addition_pairs()
    digits, totals = digits.to(device), totals.to(device)
    targets = sum_digits(totals)
    held = holdout_mask(len(digits), p.holdout).to(device)
    train_x, train_y = digits[~held], targets[~held]

    opt = make_optimizer(model.parameters(), p, p.lr, p.weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(batch_order_seed(p))
    start_epoch = 0
    if (state := session.restore()) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1

    loop = FitLoop(session, len(train_x))
    # The model's size does not change while it trains: reported at every step, a trade-off sweep can
    # weigh accuracy against size from the first epoch (and prune on both).
    size = {"param_count": float(param_count(model)), "checkpoint_bytes": float(checkpoint_bytes(model))}

    def train_batch(idx: torch.Tensor) -> None:
        loss = F.cross_entropy(model(train_x[idx]).reshape(-1, 10), train_y[idx].reshape(-1))
        optimizer_step(opt, loss, model.parameters(), p.grad_clip)
        loop.add(loss.item(), len(idx))

    def evaluate_and_report(step: int, epoch: int, last_epoch: bool) -> bool:
        """Report one step; returns True when the trial is over (target, budget or last epoch)."""
        correct = predict(model, digits) == totals
        metrics = {
            "loss": loop.train_loss(),
            "exact_match": correct.float().mean().item(),
            "train_exact_match": correct[~held].float().mean().item(),
            "heldout_exact_match": correct[held].float().mean().item() if held.any() else float("nan"),
            "epoch": float(epoch + 1),  # epochs trained (a report inside the first epoch says 1)
            **size,
        }
        reached = p.stop_at_exact_match is not None and metrics["exact_match"] >= p.stop_at_exact_match
        done = last_epoch or reached or loop.out_of_time()
        if done:
            metrics |= final_summary(model, digits, totals, loop.seconds_per_epoch())

        def checkpoint() -> dict:  # offered at every step: the session keeps the one that scored the value
            return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}

        session.report(step, metrics, checkpoint=checkpoint, final=done)
        model.train()
        return done

    model.train()

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        return shuffled(len(train_x), p.batch_size, gen, device)

    loop.run(p.epochs, epoch_batches, train_batch, evaluate_and_report, start_epoch)


# ----------------------------------------------------------------------------- fused (many lr, one model)

# What may differ between the members of one fused group: each member has its own value. The rest (the
# architecture, the batches) is the group's. The seed fuses when data_seed fixes the batch order.
FUSIBLE = ("lr", "weight_decay", "beta1", "beta2", "momentum", "grad_clip", "stop_at_exact_match", "seed")


def fuse_key(p: AdditionParams) -> tuple:
    """Members with equal keys train as one group (trainables/fused.py)."""
    return shared_key(p, FUSIBLE)


def addition_cnn_fused(ps: list[AdditionCNNParams], session: GroupSession) -> None:
    """addition-cnn, many configurations trained as one stacked model."""
    models = []
    for p in ps:
        torch.manual_seed(p.seed)  # each member is initialised as it would be alone
        models.append(AdditionCNN(p.embed_dim, p.conv_layers, p.channels, p.dropout))
    train_addition_fused(models, ps, session)


def addition_transformer_fused(ps: list[AdditionTransformerParams], session: GroupSession) -> None:
    """addition-transformer, many configurations trained as one stacked model."""
    models = []
    for p in ps:
        torch.manual_seed(p.seed)
        models.append(
            AdditionTransformer(
                p.embed_dim, p.encoder_layers, p.hidden_dim, p.heads, p.dropout, p.positional_encoding, p.layer_norm
            )
        )
    train_addition_fused(models, ps, session)


def train_addition_fused(models: list[nn.Module], ps: list[AdditionParams], session: GroupSession) -> None:
    """``train_addition`` for a group: the same data, batches and reports, each member with its own
    lr, weight decay, betas, clipping and target, all as one stacked model."""
    device, first = session.device, ps[0]  # what the members share is the same in each of them
    digits, totals = addition_pairs()
    digits, totals = digits.to(device), totals.to(device)
    targets = sum_digits(totals)
    held = holdout_mask(len(digits), first.holdout).to(device)
    train_x, train_y = digits[~held], targets[~held]
    size = {"param_count": float(param_count(models[0])), "checkpoint_bytes": float(checkpoint_bytes(models[0]))}

    fused = FusedModels([m.to(device) for m in models])
    opt = fused_optimizer(fused.parameters(), ps)
    group = FusedGroup(fused, opt, [p.grad_clip for p in ps])
    gen = torch.Generator(device="cpu").manual_seed(batch_order_seed(first))
    started = time.monotonic()

    def losses(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        out = fused(train_x[idx])  # (members, batch, 3, 10)
        n = out.shape[0]
        flat = F.cross_entropy(out.reshape(-1, 10), train_y[idx].reshape(-1).repeat(n), reduction="none")
        return flat.view(n, -1).mean(dim=1), len(idx)

    def evaluate(epoch: int, last: bool) -> tuple[dict, dict, set]:
        fused.eval()
        with torch.no_grad():  # in chunks: a (members x 10,000) batch at once runs out of cache
            d = torch.cat([fused(digits[i : i + 1024]).argmax(-1) for i in range(0, len(digits), 1024)], dim=1)
        predicted = d[..., 0] * 100 + d[..., 1] * 10 + d[..., 2]
        metrics, checkpoints, final = {}, {}, set()
        seconds = (time.monotonic() - started) / epoch
        for r, m in enumerate(group.active):
            p, correct = ps[m], predicted[r] == totals
            values = {
                "loss": group.train_loss(m),
                "exact_match": correct.float().mean().item(),
                "train_exact_match": correct[~held].float().mean().item(),
                "heldout_exact_match": correct[held].float().mean().item() if held.any() else float("nan"),
                "epoch": float(epoch),
                **size,
            }
            reached = p.stop_at_exact_match is not None and values["exact_match"] >= p.stop_at_exact_match
            if last or reached:
                final.add(m)
                models[m].load_state_dict(fused.member_state(r))  # the member as one ordinary model
                values |= final_summary(models[m], digits, totals, seconds)
            # offered at every step: the session keeps the member's weights that scored its value
            checkpoints[m] = lambda r=r, e=epoch - 1: {"model": fused.member_state(r), "epoch": e}
            metrics[m] = values
        return metrics, checkpoints, final

    batches = lambda: shuffled(len(train_x), first.batch_size, gen, device)  # noqa: E731
    fit_fused(group, session, first.epochs, batches, losses, evaluate)


@torch.no_grad()
def predict(model: nn.Module, digits: torch.Tensor) -> torch.Tensor:
    model.eval()
    d = model(digits).argmax(-1)
    return d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]


def final_summary(
    model: nn.Module, digits: torch.Tensor, totals: torch.Tensor, sec_per_epoch: float
) -> dict[str, float]:
    """The seed's end-of-run figures: deviation statistics, size and speed."""
    deviation = (predict(model, digits) - totals).float().cpu()
    out: dict[str, Any] = {
        "deviation_mean": deviation.mean().item(),
        "deviation_std": deviation.std().item(),
        "zero_deviation": (deviation == 0).float().mean().item(),
        "param_count": float(param_count(model)),
        "checkpoint_bytes": float(checkpoint_bytes(model)),
        "seconds_per_epoch": sec_per_epoch,
    }
    nonzero = Counter(int(d) for d in deviation[deviation != 0].tolist())
    for rank, (dev, count) in enumerate(nonzero.most_common(5), start=1):
        out[f"deviation_top{rank}"] = float(dev)
        out[f"deviation_top{rank}_count"] = float(count)
    return out
