"""Post-hoc explanations of a GP network, for comparison with its inherent heatmaps (torch).

Both methods explain the predicted class's logit through the last decoder feature map F
(the input of the GP head, at input resolution):

- Grad-CAM (Selvaraju et al. 2017): channel weights are the spatial mean of dlogit/dF,
  map = ReLU(sum_k w_k F_k).
- Grad-CAM++ (Chattopadhay et al. 2018, exponential-score closed form): per-pixel
  coefficients a = g^2 / (2 g^2 + sum_xy(F_k) g^3) with g = dlogit/dF, channel weights
  sum_xy a * ReLU(g), map = ReLU(sum_k w_k F_k).

Maps are bilinearly resized to the network input size when F is smaller.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

POSTHOC_METHODS = ("grad_cam", "grad_cam_pp")


@dataclass
class Explanations:
    """Maps of the predicted class, all (N, H, W) float32 at the network input size."""

    predicted: np.ndarray
    """(N,) predicted class index."""
    inherent: np.ndarray
    """The network's own heatmap of the predicted class."""
    posthoc: dict[str, np.ndarray]
    """Method name -> post-hoc map."""


def _grad_cam_weights(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return grads.mean(dim=(2, 3), keepdim=True)


def _grad_cam_pp_weights(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    g2 = grads.pow(2)
    denominator = 2.0 * g2 + features.sum(dim=(2, 3), keepdim=True) * grads.pow(3)
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
    return (alpha * torch.relu(grads)).sum(dim=(2, 3), keepdim=True)


_WEIGHTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "grad_cam": _grad_cam_weights,
    "grad_cam_pp": _grad_cam_pp_weights,
}


def explain(model: nn.Module, images: torch.Tensor, methods: tuple[str, ...] = POSTHOC_METHODS) -> Explanations:
    """Inherent heatmap and post-hoc maps of the predicted class for a batch of normalised images.

    ``model`` is a GP network (``gpedge.models``: ``model.body`` gives the feature map F,
    ``model.head`` the GP head) in eval mode; ``images`` is (N, C, H, W). Gradients are taken
    through the head only, the body runs without autograd.
    """
    unknown = [m for m in methods if m not in _WEIGHTS]
    if unknown:
        raise ValueError(f"unknown post-hoc method(s) {unknown}; choose from {list(_WEIGHTS)}")
    with torch.no_grad():
        features = model.body(images)
    features = features.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, heatmaps = model.head(features)
        predicted = logits.argmax(dim=1)
        score = logits.gather(1, predicted[:, None]).sum()
        (grads,) = torch.autograd.grad(score, features)
    index = predicted[:, None, None, None].expand(-1, 1, *heatmaps.shape[-2:])
    inherent = heatmaps.detach().gather(1, index)[:, 0]
    size = tuple(images.shape[-2:])
    feats = features.detach()
    maps = {}
    for method in methods:
        cam = torch.relu((_WEIGHTS[method](feats, grads) * feats).sum(dim=1, keepdim=True))
        if tuple(cam.shape[-2:]) != size:
            cam = nnf.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        maps[method] = cam[:, 0].numpy().astype(np.float32)
    return Explanations(
        predicted=predicted.numpy(),
        inherent=inherent.numpy().astype(np.float32),
        posthoc=maps,
    )
