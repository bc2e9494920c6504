"""The sequence Transformer's hyperparameters (seed D): the small classifier, the generated task's size, and
the optimizer's knobs; it trains in ``trainables/seq_transformer.py``."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainables.hyperparameters.optim import OptimizerParams
from trainables.registry import Hyperparameters, declare


class SeqParams(Hyperparameters, OptimizerParams):
    hidden: int = Field(20, ge=1, description="model dimension")
    heads: int = Field(2, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    max_grad: float = Field(5.0, ge=0, description="gradient clipping norm; 0 turns it off")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(20, ge=1)
    epochs: int = Field(30, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    classes: int = Field(10, ge=2)
    seq_len: int = Field(24, ge=6)
    train_examples: int = Field(1000, ge=10)
    test_examples: int = Field(500, ge=10, description="each of validation and test")
    stop_at_accuracy: float | None = Field(None, gt=0, le=1, description="end the trial once valid_accuracy >= this")
    data_seed: int | None = Field(None, description="the seed of the batch order; none: seed")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "SeqParams":
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        return self


# What a sequence trial reports at each step; the test split, speed and size at its end (blocks.run_figures).
SEQUENCE_METRICS = (
    "train_loss", "valid_loss", "valid_accuracy", "epoch", "test_loss", "test_accuracy", "epochs_run",
    "seconds_per_epoch", "param_count",
)  # fmt: skip

declare(
    "seq-transformer",
    params=SeqParams,
    metric="valid_accuracy",
    mode="max",
    description="Small Transformer classifying generated 10-class sequences (seed D).",
    reports=SEQUENCE_METRICS,
    trains="trainables.seq_transformer:seq_transformer",
    fused="trainables.seq_transformer:seq_transformer_fused",
    fuse_key="trainables.seq_transformer:fuse_key",
)
