"""A trainable that does no work: ten reports and nothing else (benchmarks/overhead.py)."""


def train(config: dict, session) -> None:
    for step in range(1, 11):
        session.report(step, {"score": config["x"] * step}, final=step == 10)
