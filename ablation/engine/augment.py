"""Batched, per-sample augmentation on the device, driven by an explicit torch.Generator.

What the seed used, per image: ColorJitter then RandomRotation(±7°). Here each image of a batch
draws its own parameters, and one grid_sample call rotates the whole batch.

Against torchvision, for grey-scale images in [0, 1]:
- rotation: the same inverse-affine sampling about the image centre as `F.rotate` on tensors
  (grid_sample, align_corners=False, nearest, fill 0); a positive angle turns the image
  counter-clockwise, as there.
- brightness: x * b, b ~ U[1-β, 1+β]; contrast: (x - m) * c + m with m the image's mean, c ~ U[1-γ, 1+γ];
  both clamped to [0, 1], as `adjust_brightness`/`adjust_contrast` do.
- ColorJitter applies its transforms in a random order per call; here per image, between the two
  that matter (brightness first or contrast first, each with probability 1/2).
- saturation and hue do nothing to a grey image (its saturation is 0 and its hue undefined), so they
  are not parameters here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..study.step import Augment


NONE = Augment()
PARAMS = 4  # the per-image parameters: angle, brightness, contrast, order


def _uniform(n: int, half_width: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * half_width


def sample_params(n: int, cfg: Augment, generator: torch.Generator, device) -> torch.Tensor:
    """(n, 4) per-image parameters: angle (deg), brightness, contrast, order flag.

    Always the same draws in the same order, whatever is switched on, so the random stream (and
    hence every later batch) does not shift when one knob changes. Between the angle and the brightness
    come the two draws of a shift this engine no longer has (issue 28): still taken, and thrown away, so that
    every seed's stream is the one its records were made with.
    """
    angle = _uniform(n, cfg.rotation, generator, device)
    for _ in range(2):
        torch.rand(n, generator=generator, device=device)
    bright = 1 + _uniform(n, cfg.brightness, generator, device)
    contrast = 1 + _uniform(n, cfg.contrast, generator, device)
    order = (torch.rand(n, generator=generator, device=device) < 0.5).float()
    return torch.stack([angle, bright, contrast, order], dim=1)


def _brightness(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (x * b).clamp(0, 1)


def _contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    m = x.mean((1, 2, 3), keepdim=True)
    return ((x - m) * c + m).clamp(0, 1)


def apply(x: torch.Tensor, params: torch.Tensor, cfg: Augment) -> torch.Tensor:
    """Augment (N, 1, H, W) float images in [0, 1] with per-image `params` from sample_params."""
    p = params.reshape(-1, PARAMS, 1, 1, 1)
    if cfg.brightness or cfg.contrast:
        b, c, contrast_first = p[:, 1], p[:, 2], p[:, 3]
        bc = _contrast(_brightness(x, b), c)
        cb = _brightness(_contrast(x, c), b)
        x = torch.lerp(bc, cb, contrast_first)
    if cfg.rotation:
        rad = params[:, 0] * (math.pi / 180)
        cos, sin, zero = torch.cos(rad), torch.sin(rad), torch.zeros_like(rad)
        # Inverse map (output pixel -> input pixel) in normalised coordinates, as F.rotate builds it.
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x


def augment(x: torch.Tensor, cfg: Augment, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (N, 1, H, W) in [0, 1]; the same generator state gives the same output."""
    if not cfg.active:
        return x
    return apply(x, sample_params(len(x), cfg, generator, x.device), cfg)
