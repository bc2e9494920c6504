"""Fused trials: many configurations of one architecture trained as one stacked model (plain PyTorch).

A small model leaves a GPU, and even a CPU core, waiting on kernel launches and Python. HFTA (MLSys 2021)
showed that training M such models together, each with its own weights and its own hyperparameters,
runs far faster than M separate trainings. Here:

* ``FusedModels`` stacks M copies of a module (``torch.func.stack_module_state``) and runs them with one
  ``vmap`` of ``functional_call``: every layer's weights gain a leading member dimension, and each member
  sees the same batch. Any module without batch norm works unchanged (batch norm keeps running
  statistics that a vmapped call cannot update per member).
* ``FusedAdamW`` is AdamW over the stacked weights whose hyperparameters (``lr``, ``weight_decay``,
  ``betas``) are tensors with one entry per member (as HFTA's fused Adam does), so each member follows
  exactly the update its own ``torch.optim.AdamW`` would make; ``FusedSGD`` does the same for SGD with
  momentum. ``clip_per_member`` clips each member's
  gradient norm on its own, as ``clip_grad_norm_`` would.
* ``FusedGroup`` keeps which members are still training: one the search prunes, or whose loss diverges,
  leaves the group, and the stacked weights and optimizer state are repacked without it.
* ``fit_fused`` is the epoch loop every fused trainable shares: a trainable gives its batches, its losses
  and what it measures at an epoch's end, as it does to ``loop.FitLoop`` alone.

The fused optimizers are not ``torch.optim.Optimizer`` subclasses, on purpose: an Optimizer's param groups
hold one value of each hyperparameter per group, where these hold one per member along the stacked weights'
first dimension, and the one thing a subclass would add, ``state_dict``, would be written into checkpoints
that nothing reads: a checkpoint here is one member's model (``member_state``), for ``best`` and ``export``,
and ``hpsearch resume`` runs an unfinished trial again from its start, never from a checkpoint.

The losses of the members are summed before ``backward``: each member's weights get exactly its own
loss's gradient. No Ray, Optuna or MLflow here: a group session (``trainables.session.GroupSession``)
carries each member's reports to the search.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap

from trainables.session import GroupSession


def batch_order_seed(p: Any) -> int:
    """The seed of a trainable's batch order: its ``data_seed``, else its ``seed`` (as it trains alone)."""
    return p.seed if p.data_seed is None else p.data_seed


def shared_key(p: Any, fusible: Sequence[str]) -> tuple:
    """What the members of one group must share: every hyperparameter but the ``fusible`` ones, and the
    batch order (so the seed fuses only where ``data_seed`` fixes that order). Equal keys fuse."""
    shared = p.model_dump(exclude=set(fusible) | {"data_seed", "seed"})
    return (*sorted(shared.items()), ("batch_order", batch_order_seed(p)))


class CannotFuse(ValueError):
    """A model or setting that cannot be fused; the message says why."""


def check_fusible(model: nn.Module) -> None:
    """Batch norm's running statistics are updated in place: a vmapped call cannot keep them per member."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise CannotFuse(f"{type(module).__name__} at {name or 'the top'} keeps running statistics per model")


class FusedModels:
    """M models of one architecture as stacked weights and one vmapped forward."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        for m in models:
            check_fusible(m)
        self.template = copy.deepcopy(models[0]).to("meta")  # the architecture, without weights
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params  # name -> (M, ...) leaf tensors that require grad
        self.buffers: dict[str, torch.Tensor] = buffers
        self.training = True

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def train(self, mode: bool = True) -> "FusedModels":
        self.training = mode
        self.template.train(mode)
        return self

    def eval(self) -> "FusedModels":
        return self.train(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same input: (M, batch, ...) outputs."""

        def one(params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template, (params, buffers), (inputs,))

        with warnings.catch_warnings():  # attention on the CPU loops over members inside vmap: slower, exact
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            return vmap(one, in_dims=(0, 0, None), randomness="different")(self.params, self.buffers, x)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i`` as the state dict of one ordinary model (it loads with ``load_state_dict``)."""
        state = {k: v[i].detach().clone() for k, v in self.params.items()}
        state |= {k: v[i].clone() for k, v in self.buffers.items()}
        return state

    def keep(self, rows: list[int]) -> None:
        """Keep only these members (indices into the current stack)."""
        index = torch.tensor(rows, device=next(iter(self.params.values())).device)
        self.params = {k: v.detach()[index].clone().requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v[index].clone() for k, v in self.buffers.items()}


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=like.dtype, device=like.device)


class FusedAdamW:
    """AdamW over stacked weights, each member with its own lr, weight decay and betas (one-entry-per-member
    tensors), computed as ``torch.optim.AdamW`` computes it for one model."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: Sequence[float],
        weight_decay: Sequence[float],
        betas: Sequence[tuple[float, float]],
        eps: float = 1e-8,
    ) -> None:
        like = params[0]
        self.params = params
        self.lr = _per_member(lr, like)
        self.weight_decay = _per_member(weight_decay, like)
        self.beta1 = _per_member([b[0] for b in betas], like)
        self.beta2 = _per_member([b[1] for b in betas], like)
        self.eps = eps
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        t = self.step_count
        bias1 = 1 - self.beta1**t
        bias2_sqrt = (1 - self.beta2**t).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            g = p.grad
            p.mul_(1 - (self.lr * self.weight_decay).view(shape))
            m.lerp_(g, (1 - self.beta1).view(shape).expand_as(m))
            v.mul_(self.beta2.view(shape)).addcmul_(g, g * (1 - self.beta2).view(shape))
            denom = (v.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
            p.sub_((self.lr / bias1).view(shape) * (m / denom))  # as addcdiv_(m, denom, value=-lr/bias1)

    def rebind(self, params: list[torch.Tensor], rows: list[int]) -> None:
        """After ``FusedModels.keep(rows)``: the new weight tensors, and each kept member's state."""
        index = torch.tensor(rows, device=params[0].device)
        self.params = params
        self.exp_avg = [m[index].clone() for m in self.exp_avg]
        self.exp_avg_sq = [v[index].clone() for v in self.exp_avg_sq]
        self.lr, self.weight_decay = self.lr[index], self.weight_decay[index]
        self.beta1, self.beta2 = self.beta1[index], self.beta2[index]


class FusedSGD:
    """SGD with momentum over stacked weights, each member with its own lr, momentum and weight decay,
    computed as ``torch.optim.SGD`` computes it for one model (no dampening, no Nesterov)."""

    def __init__(
        self, params: list[torch.Tensor], lr: Sequence[float], momentum: Sequence[float], weight_decay: Sequence[float]
    ) -> None:
        like = params[0]
        self.params = params
        self.lr = _per_member(lr, like)
        self.momentum = _per_member(momentum, like)
        self.weight_decay = _per_member(weight_decay, like)
        self.buffers: list[torch.Tensor | None] = [None] * len(params)  # made at the first step, as SGD's

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            d = p.grad.add(p * self.weight_decay.view(shape))
            if self.buffers[i] is None:
                self.buffers[i] = d.clone()
            else:  # a member with momentum 0 keeps no history: its buffer is its gradient, as SGD's d_p
                self.buffers[i].mul_(self.momentum.view(shape)).add_(d)
            p.sub_(self.lr.view(shape) * self.buffers[i])

    def rebind(self, params: list[torch.Tensor], rows: list[int]) -> None:
        """After ``FusedModels.keep(rows)``: the new weight tensors, and each kept member's momentum."""
        index = torch.tensor(rows, device=params[0].device)
        self.params = params
        self.buffers = [None if b is None else b[index].clone() for b in self.buffers]
        self.lr, self.momentum, self.weight_decay = self.lr[index], self.momentum[index], self.weight_decay[index]


@torch.no_grad()
def clip_per_member(params: list[torch.Tensor], max_norm: Sequence[float]) -> None:
    """Each member's gradients scaled to its own ``max_norm`` (0: no clipping), as ``clip_grad_norm_``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    limits = _per_member(max_norm, grads[0])
    norms = torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads]).norm(dim=0)
    coef = torch.where(limits > 0, (limits / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms))
    for g in grads:
        g.mul_(coef.view((-1,) + (1,) * (g.dim() - 1)))


class FusedGroup:
    """The members still training, by their index in the group as the search gave it (0..M-1), and the
    one step they all take: backward through the sum of their losses, each clipped to its own norm."""

    def __init__(self, models: FusedModels, optimizer: FusedAdamW | FusedSGD, max_norm: Sequence[float]) -> None:
        self.models = models
        self.optimizer = optimizer
        self.active: list[int] = list(range(len(models)))  # row r of the stack is member active[r]
        self.failed: dict[int, str] = {}
        self._unreported: dict[int, str] = {}  # failures the search has not been told of yet
        self._max_norm = list(max_norm)  # by member
        self._loss = [0.0] * len(self.active)  # by member: summed batch losses since the last report
        self._n = [0] * len(self.active)

    def step(self, losses: torch.Tensor, examples: int) -> set[int]:
        """One optimizer step on the active members' mean batch losses (one per row); returns the members
        that diverged, which have left the group (their weights never touch the others')."""
        self.optimizer.zero_grad()
        losses.sum().backward()
        clip_per_member(self.models.parameters(), [self._max_norm[m] for m in self.active])
        self.optimizer.step()
        values = losses.detach().tolist()
        for r, v in enumerate(values):
            self._loss[self.active[r]] += v * examples
            self._n[self.active[r]] += examples
        bad = self.diverged(losses)
        self.leave(bad)
        return bad

    def train_epoch(self, batches: Iterable[Any], losses: Callable[[Any], tuple[torch.Tensor, int]]) -> bool:
        """A step per batch: ``losses(batch)`` gives each active member's mean loss (by row) and the batch's
        example count. Members that diverge leave. Whether any member is left."""
        for batch in batches:
            self.step(*losses(batch))
            if not self.active:
                return False
        return True

    def train_loss(self, member: int) -> float:
        """The member's mean training loss since its last report; the count starts again."""
        mean = self._loss[member] / max(self._n[member], 1)
        self._loss[member], self._n[member] = 0.0, 0
        return mean

    def row(self, member: int) -> int:
        return self.active.index(member)

    def leave(self, members: set[int]) -> None:
        """These members stop updating and leave; the stack is repacked without them."""
        gone = members & set(self.active)
        if not gone:
            return
        rows = [r for r, m in enumerate(self.active) if m not in gone]
        self.active = [self.active[r] for r in rows]
        if rows:
            self.models.keep(rows)
            self.optimizer.rebind(self.models.parameters(), rows)

    def report(
        self,
        session: GroupSession,
        step: int,
        metrics: dict[int, dict[str, float]],
        checkpoints: dict[int, dict],
        final: set[int],
    ) -> bool:
        """Report a step of the members still training, and the members that failed since the last report;
        those that ended here or that the search stopped leave. Whether any member is left."""
        failed, self._unreported = self._unreported, {}
        session.report(step, metrics, checkpoints=checkpoints, final=final, failed=failed)
        self.leave(set(final) | session.stopped())
        return bool(self.active)

    def diverged(self, losses: torch.Tensor) -> set[int]:
        """Members whose loss is not finite: they fail alone (their weights never touch the others')."""
        bad = {self.active[r] for r, v in enumerate(losses.tolist()) if not math.isfinite(v)}
        for m in bad:
            self.failed[m] = self._unreported[m] = "the training loss diverged (not a finite number)"
        return bad


# evaluate(epoch, last) -> (metrics, checkpoints, final), by member index: what a fused trainable measures
# at an epoch's end, the checkpoints it offers, and the members that end here.
Evaluate = Callable[[int, bool], tuple[dict[int, dict[str, float]], dict[int, Any], set[int]]]


def fit_fused(
    group: FusedGroup,
    session: GroupSession,
    epochs: int,
    batches: Callable[[], Iterable[Any]],
    losses: Callable[[Any], tuple[torch.Tensor, int]],
    evaluate: Evaluate,
) -> None:
    """The epoch loop every fused trainable shares (``loop.FitLoop`` is the solo one): an epoch of steps for
    the members still training, then ``evaluate`` and one report, until every member has ended (its last
    epoch, its target, pruned by the search, diverged). If every member fails in an epoch the search is
    told at that epoch's step, with no metrics."""
    group.models.train()
    for epoch in range(1, epochs + 1):
        if not group.train_epoch(batches(), losses):
            group.report(session, epoch, {}, {}, set())
            return
        metrics, checkpoints, final = evaluate(epoch, epoch == epochs)
        group.models.train()
        if not group.report(session, epoch, metrics, checkpoints, final):
            return
