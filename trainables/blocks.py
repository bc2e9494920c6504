"""Model pieces shared by more than one trainable."""

from __future__ import annotations

import io
import time

import torch
import torch.nn as nn


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def checkpoint_bytes(model: nn.Module) -> int:
    """The size of the model's ``torch.save``d state dict: what a checkpoint of it costs on disk."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def run_figures(model: nn.Module, epochs_run: int, started: float) -> dict[str, float]:
    """What a trial reports once at its end, beside its metrics: epochs, speed and size."""
    return {
        "epochs_run": float(epochs_run),
        "seconds_per_epoch": (time.monotonic() - started) / epochs_run,
        "param_count": float(param_count(model)),
    }


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block; ``layer_norm=False`` drops the norms (the seed's unstable variant)."""

    def __init__(self, dim: int, heads: int, hidden_dim: int, dropout: float, layer_norm: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))
