"""A trainable file importing a package that is not installed, for the bad-space catalogue (read, not run)."""

import no_such_package_here  # noqa: F401


def train(config):
    return 0.0
