"""A trainable file that fails on import, for the bad-space catalogue."""

undefined_name + 1  # noqa: F821


def train(config):
    return 0.0
