"""The small Transformer classifier of seed experiment D on a generated ten-class sequence task.

Task: a sequence of ``seq_len`` tokens drawn from ``classes`` symbols (plus filler tokens); one symbol is
planted more often than any other, and the class is that symbol. Counting needs every position, so the
model must attend over the whole sequence; with the seed's settings (hidden 20, 2 heads, 1 layer, batch
20, 30 epochs) lr 1e-5 stays near chance and lr 1e-3 reaches ~1.00, as the seed saw.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainables.blocks import EncoderBlock, run_figures
from trainables.fused import FusedGroup, FusedModels, batch_order_seed, fit_fused, shared_key
from trainables.hyperparameters.sequence import SeqParams
from trainables.loop import FitLoop, optimizer_step, shuffled
from trainables.schedules import fused_optimizer, make_optimizer
from trainables.session import GroupSession, Session

DATA_SEED = 4321  # the same examples for every trial, whatever its own seed
FILLERS = 6  # tokens that are never a class


def majority_task(n: int, seq_len: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, seq_len) token ids and (n,) labels: the class symbol that occurs most often.

    The label symbol occurs ``k`` times (k >= 3) and every other class symbol at most ``k - 1`` times, so
    the answer is unique; the rest of the positions hold filler tokens.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    x = torch.empty(n, seq_len, dtype=torch.long)
    for i in range(n):
        k = int(torch.randint(3, max(4, seq_len // 3), (1,), generator=g))
        tokens = [int(labels[i])] * k
        others = [c for c in range(classes) if c != labels[i]]
        while len(tokens) < seq_len:
            pick = int(torch.randint(len(others) + FILLERS, (1,), generator=g))
            if pick < len(others):
                symbol = others[pick]
                if tokens.count(symbol) < k - 1:
                    tokens.append(symbol)
            else:
                tokens.append(classes + pick - len(others))
        x[i] = torch.tensor(tokens)[torch.randperm(seq_len, generator=g)]
    return x, labels


class SeqTransformer(nn.Module):
    """Token + position embeddings, pre-norm encoder blocks, mean over positions, a linear head."""

    def __init__(self, vocab: int, seq_len: int, hidden: int, heads: int, layers: int, classes: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(torch.randn(seq_len, hidden) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(hidden, heads, 2 * hidden, dropout, True) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(tokens) + self.pos)
        return self.head(self.norm(x).mean(dim=1))


def task_splits(p: SeqParams, device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Train, validation and test (tokens, labels): the same examples for every trial."""
    x, y = majority_task(p.train_examples + 2 * p.test_examples, p.seq_len, p.classes, DATA_SEED)
    x, y = x.to(device), y.to(device)
    n, m = p.train_examples, p.test_examples
    return (x[:n], y[:n]), (x[n : n + m], y[n : n + m]), (x[n + m :], y[n + m :])


def seq_transformer(p: SeqParams, session: Session) -> None:
    """Small Transformer classifying generated 10-class sequences (seed D)."""
    device = session.device
    train, valid, test = task_splits(p, device)
    n = p.train_examples

    torch.manual_seed(p.seed)
    model = SeqTransformer(p.classes + FILLERS, p.seq_len, p.hidden, p.heads, p.layers, p.classes, p.dropout)
    model.to(device)
    opt = make_optimizer(model.parameters(), p, p.lr, p.weight_decay)
    gen = torch.Generator().manual_seed(batch_order_seed(p))

    @torch.no_grad()
    def evaluate(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        model.eval()
        logits = model(split[0])
        model.train()
        return F.cross_entropy(logits, split[1]).item(), (logits.argmax(-1) == split[1]).float().mean().item()

    loop = FitLoop(session, n)

    def train_batch(idx: torch.Tensor) -> None:
        loss = F.cross_entropy(model(train[0][idx]), train[1][idx])
        optimizer_step(opt, loss, model.parameters(), p.max_grad)
        loop.add(loss.item(), len(idx))

    def report(step: int, epoch: int, last: bool) -> bool:
        valid_loss, valid_accuracy = evaluate(valid)
        metrics = {"train_loss": loop.train_loss(), "valid_loss": valid_loss, "valid_accuracy": valid_accuracy}
        metrics["epoch"] = float(epoch + 1)
        reached = p.stop_at_accuracy is not None and valid_accuracy >= p.stop_at_accuracy
        done = last or reached or loop.out_of_time()
        if done:
            metrics["test_loss"], metrics["test_accuracy"] = evaluate(test)
            metrics |= run_figures(model, epoch + 1, start)
        # offered at every step (made only when kept): the session keeps the weights that scored the value
        session.report(step, metrics, checkpoint=lambda: {"model": model.state_dict(), "epoch": epoch + 1}, final=done)
        return done

    start = time.monotonic()
    model.train()
    loop.run(p.epochs, lambda epoch: shuffled(n, p.batch_size, gen, device), train_batch, report)


# ----------------------------------------------------------------------------- fused (trainables/fused.py)

FUSIBLE = ("lr", "weight_decay", "beta1", "beta2", "momentum", "max_grad", "stop_at_accuracy", "seed")


def fuse_key(p: SeqParams) -> tuple:
    """Members with equal keys train as one group: the same architecture and batches."""
    return shared_key(p, FUSIBLE)


def seq_transformer_fused(ps: list[SeqParams], session: GroupSession) -> None:
    """seq-transformer, many configurations trained as one stacked model."""
    device, first = session.device, ps[0]
    train, valid, test = task_splits(first, device)
    models = []
    for p in ps:
        torch.manual_seed(p.seed)
        models.append(SeqTransformer(p.classes + FILLERS, p.seq_len, p.hidden, p.heads, p.layers, p.classes, p.dropout))
    fused = FusedModels([m.to(device) for m in models])
    opt = fused_optimizer(fused.parameters(), ps)
    group = FusedGroup(fused, opt, [p.max_grad for p in ps])
    gen = torch.Generator().manual_seed(batch_order_seed(first))
    n, start = first.train_examples, time.monotonic()

    @torch.no_grad()
    def evaluate(split: tuple[torch.Tensor, torch.Tensor]) -> list[tuple[float, float]]:
        fused.eval()
        logits = fused(split[0])  # (members, N, classes)
        fused.train()
        return [
            (F.cross_entropy(out, split[1]).item(), (out.argmax(-1) == split[1]).float().mean().item())
            for out in logits
        ]

    def losses(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        out = fused(train[0][idx])
        k = out.shape[0]
        flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), train[1][idx].repeat(k), reduction="none")
        return flat.view(k, -1).mean(dim=1), len(idx)

    def measure(epoch: int, last: bool) -> tuple[dict, dict, set]:
        scores, metrics, checkpoints, final = evaluate(valid), {}, {}, set()
        tests = None
        for r, m in enumerate(group.active):
            p = ps[m]
            valid_loss, valid_accuracy = scores[r]
            values = {"train_loss": group.train_loss(m), "valid_loss": valid_loss, "valid_accuracy": valid_accuracy}
            values["epoch"] = float(epoch)
            if last or (p.stop_at_accuracy is not None and valid_accuracy >= p.stop_at_accuracy):
                tests = tests or evaluate(test)
                final.add(m)
                models[m].load_state_dict(fused.member_state(r))
                values["test_loss"], values["test_accuracy"] = tests[r]
                values |= run_figures(models[m], epoch, start)
            # offered at every step: the session keeps the member's weights that scored its value
            checkpoints[m] = lambda r=r, e=epoch: {"model": fused.member_state(r), "epoch": e}
            metrics[m] = values
        return metrics, checkpoints, final

    batches = lambda: shuffled(n, first.batch_size, gen, device)  # noqa: E731
    fit_fused(group, session, first.epochs, batches, losses, measure)
