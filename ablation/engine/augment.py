"""Batched, per-sample augmentation on the device, driven by an explicit torch.Generator.

What the seed used, per image: ColorJitter then RandomRotation(±7°). Here each image of a batch
draws its own parameters, and one grid_sample call rotates the whole batch.

Against torchvision, for grey-scale images in [0, 1]:
- rotation: the same inverse-affine sampling about the image centre as `F.rotate` on tensors
  (grid_sample, align_corners=False, nearest by default, fill 0); a positive angle turns the image
  counter-clockwise, as there. Optional translation is a fraction of the image size, as in
  RandomAffine.
- brightness: x * b, b ~ U[1-β, 1+β]; contrast: (x - m) * c + m with m the image's mean, c ~ U[1-γ, 1+γ];
  both clamped to [0, 1], as `adjust_brightness`/`adjust_contrast` do.
- ColorJitter applies its transforms in a random order per call; here per image, between the two
  that matter (brightness first or contrast first, each with probability 1/2).
- saturation and hue do nothing to a grey image (its saturation is 0 and its hue undefined), so they
  are not parameters here.

Beyond torchvision, an elastic distortion (Simard et al., 2003, in spirit): each image draws a random
displacement of up to ±`elastic` pixels, per axis, at the 4x4 points of a coarse grid over the image;
bicubic upsampling makes it a smooth field of the image's size, which is added to the rotation's
sampling grid, so one grid_sample call still does everything. Its draws come after the six above and
only when it is on, so the streams of the steps without it are those they always had.

`until_epoch` ends the augmentation early: the last epochs then train on the images as they are,
the distribution the test set comes from (a network too small to fit its augmented images spends
its last updates on the clean ones; the same idea as fine-tuning without augmentation in FixRes,
Touvron et al., 2019). No augmentation parameters are drawn in those epochs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..study.step import Augment


NONE = Augment()
ELASTIC_GRID = 4  # control points per side of the distortion's coarse grid (about 9 pixels apart on 28x28)
SIX = 6  # the per-image parameters every config draws; an elastic field's follow them


def _uniform(n: int, half_width: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * half_width


def sample_params(n: int, cfg: Augment, generator: torch.Generator, device) -> torch.Tensor:
    """(n, 6) per-image parameters: angle (deg), dx, dy, brightness, contrast, order flag; with `elastic`,
    (n, 6 + 2 * 4 * 4): then the x and y displacements (pixels) at the coarse grid's points.

    Always the same six draws in the same order, whatever is switched on, so the random stream (and
    hence every later batch) does not shift when one knob changes.
    """
    angle = _uniform(n, cfg.rotation, generator, device)
    dx = _uniform(n, cfg.translate, generator, device)
    dy = _uniform(n, cfg.translate, generator, device)
    bright = 1 + _uniform(n, cfg.brightness, generator, device)
    contrast = 1 + _uniform(n, cfg.contrast, generator, device)
    order = (torch.rand(n, generator=generator, device=device) < 0.5).float()
    six = torch.stack([angle, dx, dy, bright, contrast, order], dim=1)
    if not cfg.elastic:
        return six
    field = _uniform(n * 2 * ELASTIC_GRID ** 2, cfg.elastic, generator, device).view(n, -1)
    return torch.cat([six, field], dim=1)


def _brightness(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (x * b).clamp(0, 1)


def _contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    m = x.mean((1, 2, 3), keepdim=True)
    return ((x - m) * c + m).clamp(0, 1)


def apply(x: torch.Tensor, params: torch.Tensor, cfg: Augment) -> torch.Tensor:
    """Augment (N, 1, H, W) float images in [0, 1] with per-image `params` from sample_params."""
    p = params[:, :SIX].reshape(-1, SIX, 1, 1, 1)
    if cfg.brightness or cfg.contrast:
        b, c, contrast_first = p[:, 3], p[:, 4], p[:, 5]
        bc = _contrast(_brightness(x, b), c)
        cb = _brightness(_contrast(x, c), b)
        x = torch.lerp(bc, cb, contrast_first)
    if cfg.warps:
        rad = params[:, 0] * (math.pi / 180)
        cos, sin = torch.cos(rad), torch.sin(rad)
        # Inverse map (output pixel -> input pixel) in normalised coordinates, as F.rotate builds it;
        # the translation is in the same units: a fraction t of the side is 2t here.
        theta = torch.stack([torch.stack([cos, -sin, -2 * params[:, 1]], 1),
                             torch.stack([sin, cos, -2 * params[:, 2]], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        if cfg.elastic:
            grid = grid + _elastic_field(params[:, SIX:], x.shape[-2:]).to(x.dtype)
        x = F.grid_sample(x, grid, mode=cfg.interpolation, padding_mode="zeros", align_corners=False)
    return x


def _elastic_field(points: torch.Tensor, size) -> torch.Tensor:
    """(N, H, W, 2) offsets in grid_sample's normalised units from (N, 2 * g * g) displacements in pixels
    at a g x g grid of points: bicubic upsampling makes them a smooth field; a pixel is 2 / side there."""
    h, w = size
    coarse = points.view(len(points), 2, ELASTIC_GRID, ELASTIC_GRID)
    fine = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    scale = torch.tensor([2 / w, 2 / h], dtype=fine.dtype, device=fine.device)
    return fine.permute(0, 2, 3, 1) * scale


def augment(x: torch.Tensor, cfg: Augment, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (N, 1, H, W) in [0, 1]; the same generator state gives the same output."""
    if not cfg.active:
        return x
    return apply(x, sample_params(len(x), cfg, generator, x.device), cfg)
