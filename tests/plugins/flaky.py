"""A trainable for tests: raises on purpose when asked to, reports a wrong metric when asked to."""

import time

from trainables.registry import Hyperparameters, fusable, trainable


class FlakyParams(Hyperparameters):
    x: float = 0.5
    steps: int = 3
    fail_above: float = 2.0  # x above this raises at step 1
    metric_name: str = "score"
    sleep: float = 0.0  # seconds per step, to keep a trial running while a test acts on it
    hang_after: int | None = None  # stop reporting after this many steps and hang 90 s (a stuck data loader)
    hog_above: float = 2.0  # x above this takes memory until the host runs out (Ray's memory monitor kills it)


@trainable("flaky", params=FlakyParams, metric="score", mode="max")
def flaky(p: FlakyParams, session) -> None:
    """Scores -(x - 0.3)^2 per step; raises when x > fail_above."""
    for step in range(p.steps):
        if step == 1 and p.x > p.fail_above:
            raise RuntimeError(f"flaky trial failed on purpose at x={p.x}")
        if step == 1 and p.x > p.hog_above:
            hog = []
            for _ in range(32):  # 8 GiB at most (the test sets Ray's kill threshold well below), 256 MiB a time
                hog.append(bytearray(256 << 20))
                time.sleep(0.05)
        time.sleep(p.sleep)
        if p.hang_after is not None and step == p.hang_after:
            time.sleep(90)  # long enough to fail the test, short enough not to hang the suite
        last = step == p.steps - 1
        session.report(step + 1, {p.metric_name: -((p.x - 0.3) ** 2) * (p.steps - step)}, final=last)


class TradeoffParams(Hyperparameters):
    x: float = 0.5  # more x: more accuracy, more cost
    y: float = 0.0  # more y: less accuracy at the same cost (a dominated trial)
    steps: int = 4
    sleep: float = 0.0
    size_at_end: bool = False  # report size only with the last step (as end-of-run figures are)


@trainable("tradeoff", params=TradeoffParams, metric="accuracy", mode="max")
def tradeoff(p: TradeoffParams, session) -> None:
    """Two objectives that pull apart: accuracy (x - y) grows with the steps, cost is x; size is 1000 x."""
    for step in range(1, p.steps + 1):
        time.sleep(p.sleep)
        last = step == p.steps
        metrics = {"accuracy": (p.x - p.y) * step / p.steps, "cost": p.x}
        if last or not p.size_at_end:
            metrics["size"] = 1000 * p.x
        session.report(step, metrics, final=last)


def flaky_fused(ps: list[FlakyParams], session) -> None:
    """flaky's fused form: the members share steps and sleep; each scores as it would alone, one whose x is
    above fail_above fails alone at step 2, and a member the search stops leaves at once."""
    active = set(range(len(ps)))
    steps, sleep = ps[0].steps, ps[0].sleep
    for step in range(steps):
        time.sleep(sleep)
        failed = {
            m: f"flaky member failed on purpose at x={ps[m].x}"
            for m in active
            if step == 1 and ps[m].x > ps[m].fail_above
        }
        active -= set(failed)
        last = step == steps - 1
        metrics = {m: {ps[m].metric_name: -((ps[m].x - 0.3) ** 2) * (steps - step)} for m in active}
        session.report(step + 1, metrics, final=set(active) if last else set(), failed=failed)
        active -= session.stopped()
        if not active:
            return


def flaky_fuse_key(p: FlakyParams) -> tuple:
    return tuple(sorted(p.model_dump(exclude={"x", "fail_above"}).items()))


fusable("flaky", flaky_fused, flaky_fuse_key)
