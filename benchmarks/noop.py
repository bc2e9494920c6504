"""A trainable that does no work: ten reports and nothing else (benchmarks/overhead.py)."""


def train(config: dict, session) -> None:
    for step in range(1, 11):
        session.report(step, {"score": config["x"] * step}, final=step == 10)


def train_checkpointing(config: dict, session) -> None:
    """The same, keeping a (tiny) checkpoint at every step: ``overhead.py --checkpoints``."""
    for step in range(1, 11):
        session.report(step, {"score": config["x"] * step}, checkpoint=lambda s=step: {"step": s}, final=step == 10)
