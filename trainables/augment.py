"""Batched augmentation on the trial's device: every image gets its own random transform.

Datasets here live as tensors on the device, so the presets are applied to whole batches with one
``affine_grid`` / ``grid_sample`` (flip, shift, rotation, scale) and per-image colour factors, instead of a
per-image transform in a DataLoader worker.

    none   nothing
    basic  horizontal flip + random crop (a shift of up to 4 px, zero padded), the CIFAR standard
    extra  basic + colour jitter, rotation up to 15 degrees, scale and shear (affine)
    glyph  small rotations only (up to 8 degrees), never a flip: a mirrored letter is another letter
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AffineParams:
    flip: torch.Tensor  # (N,) bool
    angle_deg: torch.Tensor  # (N,)
    scale: torch.Tensor  # (N,)
    shear_deg: torch.Tensor  # (N,)
    shift_px: torch.Tensor  # (N, 2)


def sample_affine(n: int, preset: str, size: int, gen: torch.Generator, device: torch.device) -> AffineParams:
    def u(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(device)

    zeros = torch.zeros(n, device=device)
    flip = torch.zeros(n, dtype=torch.bool, device=device)
    angle, scale, shear, shift = zeros, torch.ones(n, device=device), zeros, torch.zeros(n, 2, device=device)
    if preset in ("basic", "extra"):
        flip = (torch.rand(n, generator=gen) < 0.5).to(device)
        shift = torch.round(u(-4, 4, (n, 2)))
    if preset == "extra":
        angle, scale, shear = u(-15, 15), u(0.9, 1.1), u(-8, 8)
    if preset == "glyph":
        angle = u(-8, 8)
    return AffineParams(flip, angle, scale, shear, shift * (size / 32 if preset != "glyph" else 1))


def apply_affine(x: torch.Tensor, p: AffineParams) -> torch.Tensor:
    n, _, h, w = x.shape
    a, s = torch.deg2rad(p.angle_deg), torch.deg2rad(p.shear_deg)
    sx = torch.where(p.flip, -1.0, 1.0) / p.scale
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = torch.cos(a) * sx
    theta[:, 0, 1] = -torch.sin(a + s) / p.scale
    theta[:, 1, 0] = torch.sin(a) * sx
    theta[:, 1, 1] = torch.cos(a + s) / p.scale
    theta[:, 0, 2] = -2 * p.shift_px[:, 0] / w
    theta[:, 1, 2] = -2 * p.shift_px[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Per-image brightness, contrast and (for colour images) saturation factors in [1-s, 1+s]."""
    n = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * strength).to(x.device, x.dtype)

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    if x.shape[1] == 3:
        gray = x.mean(dim=1, keepdim=True)
        x = (x - gray) * factor() + gray
    return x


def augment(x: torch.Tensor, preset: str, gen: torch.Generator) -> torch.Tensor:
    """x: (N, C, H, W) float in [0, 1] -> augmented batch, same shape."""
    if preset == "none":
        return x
    p = sample_affine(x.shape[0], preset, x.shape[-1], gen, x.device)
    x = apply_affine(x, p)
    if preset == "extra":
        x = color_jitter(x, gen).clamp(0, 1)
    return x
