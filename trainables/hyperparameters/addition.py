"""The two-digit addition trainables' hyperparameters (seed A): the CNN over the 2x2 digit grid and the
Transformer encoder over the 4 digit tokens, with the optimizer's knobs; they train in
``trainables/addition.py``."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainables.hyperparameters.optim import OptimizerParams
from trainables.registry import Hyperparameters, declare


class AdditionParams(Hyperparameters, OptimizerParams):
    lr: float = Field(5e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    embed_dim: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    data_seed: int | None = Field(None, description="the seed of the batch order; none: seed")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 turns clipping off")
    holdout: float = Field(0.1, ge=0, lt=1, description="fraction of the 10,000 pairs never trained on")
    stop_at_exact_match: float | None = Field(
        None, gt=0, le=1, description="end the trial once exact_match reaches this"
    )


class AdditionCNNParams(AdditionParams):
    conv_layers: int = Field(2, ge=1)
    channels: int = Field(32, ge=1)


class AdditionTransformerParams(AdditionParams):
    embed_dim: int = Field(32, ge=1)
    encoder_layers: int = Field(2, ge=1)
    hidden_dim: int = Field(64, ge=1)
    heads: int = Field(2, ge=1)
    positional_encoding: bool = True
    layer_norm: bool = True

    @model_validator(mode="after")
    def _heads_divide_embed_dim(self) -> "AdditionTransformerParams":
        if self.embed_dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide embed_dim ({self.embed_dim})")
        return self


# What an addition trial reports at each step; the deviation figures and speed at its end (trainables/addition.py).
ADDITION_METRICS = (
    "loss", "exact_match", "train_exact_match", "heldout_exact_match", "epoch", "param_count", "checkpoint_bytes",
    "deviation_mean", "deviation_std", "zero_deviation", "deviation_top*", "seconds_per_epoch",
)  # fmt: skip

declare(
    "addition-cnn",
    params=AdditionCNNParams,
    metric="exact_match",
    mode="max",
    description="CNN over the 2x2 digit grid learning two-digit addition (seed A).",
    reports_by_time=True,
    reports=ADDITION_METRICS,
    trains="trainables.addition:addition_cnn",
    fused="trainables.addition:addition_cnn_fused",
    fuse_key="trainables.addition:fuse_key",
)
declare(
    "addition-transformer",
    params=AdditionTransformerParams,
    metric="exact_match",
    mode="max",
    description="Transformer encoder over the 4 digit tokens learning two-digit addition (seed A).",
    reports_by_time=True,
    reports=ADDITION_METRICS,
    trains="trainables.addition:addition_transformer",
    fused="trainables.addition:addition_transformer_fused",
    fuse_key="trainables.addition:fuse_key",
)
