"""Distillation from a teacher network (``gpedge train --distil-from``): image labels only, end to end.

A network trained on more contrasts (say GP-UNet on T1, T2, T1CE and FLAIR, where a non-enhancing
tumour is bright on T2 and FLAIR) sees lesions that a network given one contrast must find from
fainter cues (on T1CE, a patch of white matter turned grey-matter dark). The teacher was itself
trained from image-level labels, so its heatmaps are weak labels too; matching them tells the
student where in the slice the teacher found each class, which the image label alone does not.

The student's input is the teacher's channels it was asked for, re-normalised by their own slice
maximum (what the student's data set and the exported graph do). The term added to the loss is the
KL divergence from the teacher's class probabilities plus the mean squared difference of the two
networks' heatmaps, each standardised per slice and class (zero mean, unit variance over the
pixels): the heatmaps' scale is each network's own, their shape is what is taught.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gpedge.errors import GpedgeError, prefixed
from gpedge.graph.fused import normalise_slice_max
from gpedge.pretrained import resolve_init
from gpedge.runs import RunConfig, build_model, load_weights


class Teacher:
    """A trained network in eval mode, frozen, and where the student's channels lie among its own."""

    def __init__(self, model: nn.Module, channels: list[str], student_channels: list[str]) -> None:
        self.model = model.eval().requires_grad_(False)
        self.channels = list(channels)
        self.index = [self.channels.index(name) for name in student_channels]

    @classmethod
    def load(cls, value: str | Path, student_channels: list[str], class_names: list[str], device: torch.device) -> "Teacher":
        """The best weights of the run folder (or bundled network, :mod:`gpedge.pretrained`) ``value``.

        Its classes must be the student's, in order, and its channels must include the student's.
        """
        flag = f"--distil-from {value}"
        folder = resolve_init(value, "--distil-from")
        with prefixed(flag):
            config = RunConfig.load(folder)
        if config.class_names != list(class_names):
            raise GpedgeError(f"{flag}: the teacher's classes are {config.class_names}, this run's {list(class_names)}; "
                              "distil from a network trained on the same classes")
        missing = [name for name in student_channels if name not in config.channels]
        if missing:
            raise GpedgeError(f"{flag}: the teacher was trained on {config.channels}, without {missing}; "
                              "distil from a network whose channels include this run's --channels")
        model = build_model(config)
        with prefixed(flag):
            load_weights(model, folder, config.arch)
        return cls(model.to(device), config.channels, student_channels)

    def student_input(self, images: torch.Tensor) -> torch.Tensor:
        """The student's channels of a (N, C, H, W) batch in the teacher's channels, re-normalised by their own maximum."""
        return normalise_slice_max(images[:, self.index])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor):
        return self.model(images)


def standardised(maps: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) maps with zero mean and unit variance over the pixels of each slice and class."""
    mean = maps.mean(dim=(2, 3), keepdim=True)
    std = maps.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (maps - mean) / std


def distil_loss(student, teacher) -> torch.Tensor:
    """KL(teacher's class probabilities || student's) + MSE of the standardised heatmaps (outputs with
    ``logits`` (N, K) and ``heatmaps`` (N, K, H, W); the maps are compared at the student's resolution)."""
    target = F.softmax(teacher.logits.float(), dim=1)
    classes = F.kl_div(F.log_softmax(student.logits.float(), dim=1), target, reduction="batchmean")
    taught = teacher.heatmaps.float()
    if taught.shape[-2:] != student.heatmaps.shape[-2:]:
        taught = F.interpolate(taught, size=student.heatmaps.shape[-2:], mode="bilinear", align_corners=False)
    maps = F.mse_loss(standardised(student.heatmaps.float()), standardised(taught))
    return classes + maps
