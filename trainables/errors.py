"""The trainables' own error: trainables/ cannot import search/ (which has ``UserError``), and the CLI
catches this one without importing the registry (and pydantic) in commands that load no trainable."""


class TrainableError(Exception):
    """A trainable that cannot be found or imported; the message is one line for the user."""
