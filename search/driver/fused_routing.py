"""The fused half of the bridge: a Ray trial that trains a group of configurations (its members), each
one Optuna trial keyed ``<ray trial id>#<member>`` (``names.member_key``).

Asking splits the trials asked together by what must be shared (``fuse_key``: the architecture, the
batches); a group's report is split per member; members are pruned one by one, and ``take_stops`` tells
the worker which to drop. ``OptunaBridge`` mixes this in and owns the state it uses (``_fused``,
``_pending``, ``_stops``, ``_asked``, the records), so one ledger holds every trial, fused or not.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from search.driver.trial_records import TrialRecord
from search.names import (
    FINAL_KEY,
    FINAL_MEMBERS_KEY,
    MEMBERS_KEY,
    RAY_TRIAL_ATTR,
    member_failures,
    member_key,
    member_results,
)

NOT_YET = object()  # ``ask``: no trial now, ask again later (a round is still running); None: no more trials


def balanced(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` runs of sizes that differ by one at most, the larger first."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


class FusedRouting:
    def _ask_fused(self, ray_trial_id: str) -> dict[str, Any] | object | None:
        """Up to ``fuse`` Optuna trials asked together (a sampler with a constant liar spreads them), split
        by what must be shared (``fuse_key``: the architecture, the batches); one group per Ray trial.

        In rounds (``round_size``), a round's trials are asked together once every trial asked before has
        ended (``NOT_YET`` until then: Ray asks again on its next loop step), and split into ``concurrency``
        groups, so the whole round trains at once and the sampler has learned from all of the last one."""
        if not self._pending:
            left = self.n_trials - self._asked
            if left <= 0:
                return None
            if self.round_size is not None and any(rec.state is None for rec in self._records.values()):
                return NOT_YET
            k = min(self.fuse if self.round_size is None else self.round_size, left)
            by_key: dict[Any, list[optuna.Trial]] = {}
            for _ in range(k):
                trial = self._ask()
                self._asked += 1
                config = {**self.fixed_config, **trial.params}
                by_key.setdefault(self.fuse_key(config) if self.fuse_key else None, []).append(trial)
            # a round trains at once: as many groups as Ray runs together (more if one would exceed fuse)
            groups = 1 if self.round_size is None else max(min(self.concurrency, k), math.ceil(k / self.fuse))
            for trials in by_key.values():
                parts = max(math.ceil(len(trials) * groups / k), math.ceil(len(trials) / self.fuse))
                self._pending.extend(balanced(trials, min(parts, len(trials))))
        trials = self._pending.pop(0)
        keys = []
        for i, trial in enumerate(trials):
            keys.append(member_key(ray_trial_id, i))
            rec = TrialRecord(trial, key=keys[-1], member=i)
            rec.seeds = [rec]
            self._records[keys[-1]] = rec
            self._writes.set_attr(trial, RAY_TRIAL_ATTR, ray_trial_id)
            self._writes.set_attr(trial, "fused_member", i)
        self._fused[ray_trial_id] = keys
        return {MEMBERS_KEY: [{**self.fixed_config, **t.params} for t in trials]}

    def members(self, ray_trial_id: str) -> list[str]:
        """The record keys of a Ray trial: its members' if it is a fused group, else its own id."""
        return self._fused.get(ray_trial_id, [ray_trial_id])

    def is_fused(self, ray_trial_id: str) -> bool:
        return ray_trial_id in self._fused

    def take_stops(self, ray_trial_id: str) -> list[int]:
        """The members of a group pruned since the last call: the worker must drop them."""
        return self._stops.pop(ray_trial_id, [])

    def _report_fused(self, ray_trial_id: str, result: dict[str, Any]) -> bool:
        """One step of a fused group: each member's metrics go to its own trial; a member that ended here
        (its last step, a failure, a missing metric) is told now, while the others go on."""
        common, by_member = member_results(result)
        finals = set(common.pop(FINAL_MEMBERS_KEY, None) or [])
        failed = member_failures(common)
        common.pop(FINAL_KEY, None)
        keys = self._fused[ray_trial_id]
        for i, metrics in sorted(by_member.items()):
            if not self.report(keys[i], {**common, **metrics, FINAL_KEY: i in finals}) or i in finals:
                self.complete(keys[i], None, error=False)  # COMPLETE, or FAIL for a missing metric
        for i, reason in failed.items():
            if (rec := self._records[keys[i]]).state is None:
                rec.failure = reason
                self.complete(keys[i], None, error=True)
        return any(self._records[k].state is None for k in keys)

    def _prune_members(self, ray_trial_id: str) -> bool:
        """Each member judged alone: the pruned ones end PRUNED now (``take_stops`` names them for the
        worker); the group stops once none is left."""
        keys = self._fused[ray_trial_id]
        for i, key in enumerate(keys):
            if self._should_prune(key):
                self.complete(key, None, error=False)
                self._stops.setdefault(ray_trial_id, []).append(i)
        return all(self._records[k].state is not None for k in keys)
