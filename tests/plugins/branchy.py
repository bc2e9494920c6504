"""A plain trainable for conditional spaces: it reports which keys its config held, so a test sees that an
inactive parameter never reached it, and a score where one branch is clearly better."""

import time


def train(config, session=None):
    base = {"alexnet": 0.3, "vgg": 0.4, "inception": 0.45, "resnet": 0.7}.get(config.get("model"), 0.5)
    score = base + 0.02 * config.get("depth", 0) / 101 + 0.01 * config.get("kernel_size", 0) / 7
    if config.get("optimizer") in ("sgd", "rmsprop"):
        score += 0.05 * config["momentum"]
    keys = sorted(k for k in config if k not in ("seed", "sleep", "steps"))
    steps = config.get("steps", 1)
    for step in range(1, steps + 1):
        time.sleep(config.get("sleep", 0))
        if session is not None:
            session.report(step, {"score": score * step / steps, "n_keys": len(keys)}, final=step == steps)
    return {"score": score, "n_keys": len(keys)}
