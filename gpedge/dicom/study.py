"""DICOM studies as model inputs, and :func:`process_study`: series in, prediction, SEG + Parametric Map + SR out."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.dicom.channels import assign, parse_rules
from gpedge.dicom.series import DicomSeries, find_series
from gpedge.errors import InputError
from gpedge.runtime.io import DEFAULT_MAX_PIXELS, Scan, _check_pixels, check_size
from gpedge.runtime.save import key_slice
from gpedge.runtime.predictor import DISPLAY_CHANNELS
from gpedge.runtime.results import Result

ChannelRules = Mapping[str, str] | Sequence[str] | None


@dataclass
class DicomStudy:
    """One model input read from DICOM: one series per model channel (in the model's order)."""

    series: dict[str, DicomSeries]
    mapped: bool = True
    """Whether the keys of ``series`` are the model's channels (False for a series read on its own)."""

    @property
    def reference(self) -> DicomSeries:
        """The series results are written against: the channel shown in overlays (FLAIR, T1CE, T2, T1), else the first."""
        for channel in DISPLAY_CHANNELS:
            if channel in self.series:
                return self.series[channel]
        return next(iter(self.series.values()))

    @property
    def name(self) -> str:
        return self.reference.name

    def __str__(self) -> str:
        return str(self.reference) if len(self.series) == 1 else ", ".join(map(str, self.series.values()))

    @property
    def is_volume(self) -> bool:
        frames = self.reference.frames
        return len(frames) > 1 or frames[0].number is not None

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
        """Read the pixel data of every channel: (S, C, H, W) float32 axial slices in display orientation.

        The size is checked against ``max_pixels`` (per channel, see ``gpedge.runtime.io``) from the headers first.
        """
        start = time.perf_counter()
        for series in self.series.values():
            check_size((len(series.frames), *series.frames[0].size), series, max_pixels)
        stacks = [series.read() for series in self.series.values()]
        images = _check_pixels(np.stack(stacks, axis=1), str(self))
        slices = list(range(images.shape[0])) if self.is_volume else None
        reference = self.reference
        grid = reference.grid
        return Scan(
            images=images, path=reference.folder, name=self.name, slices=slices,
            channels=list(self.series) if self.mapped else None,
            load_ms=(time.perf_counter() - start) * 1e3,
            pixel_spacing=None if grid is None else tuple(reference.reorientation.display_spacing(grid.spacing)[1:]),
        )


def studies(
    series: Sequence[DicomSeries], channels: Sequence[str], rules: ChannelRules = None
) -> tuple[list[DicomStudy], list[InputError]]:
    """Model inputs from series, grouped by StudyInstanceUID and mapped to ``channels`` (see ``channels``).

    Returns the inputs and, separately, the problems of studies that could not be mapped.
    """
    parsed = parse_rules(rules, channels)
    by_study: dict[str, list[DicomSeries]] = {}
    for s in series:
        by_study.setdefault(s.study_uid or s.uid, []).append(s)
    found: list[DicomStudy] = []
    problems: list[InputError] = []
    for members in by_study.values():
        try:
            found.extend(DicomStudy(chosen) for chosen in assign(members, channels, parsed))
        except InputError as exc:
            problems.append(exc)
    return found, problems


def read_series(paths: Sequence[str | os.PathLike]) -> DicomStudy:
    """The one series held by ``paths``, whatever its contrast (for inputs named by the user, e.g. ``--t1ce``)."""
    series = find_series(paths)
    if len(series) != 1:
        where = ", ".join(map(str, paths))
        raise InputError(f"{where}: holds {len(series)} series ({'; '.join(map(str, series))}); pass one series")
    return DicomStudy({"image": series[0]}, mapped=False)


def read_study(paths: str | os.PathLike | Sequence[str | os.PathLike], channels: Sequence[str],
               rules: ChannelRules = None) -> DicomStudy:
    """The one model input held by DICOM files or folders; a clear error if there are none or several."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    series = items if items and all(isinstance(s, DicomSeries) for s in items) else find_series(items)
    found, problems = studies(series, channels, rules)
    if problems:
        raise problems[0]
    if len(found) != 1:
        where = ", ".join(map(str, items)) or "no paths"
        listed = "; ".join(str(s) for s in found)
        raise InputError(
            f"{where}: holds {len(found)} inputs for a {'/'.join(channels)} model ({listed}); pass the files of one "
            f"series, or choose one with --series {channels[0]}=UID (channel_rules in the API)"
        )
    return found[0]


@dataclass
class StudyResult:
    """What :func:`process_study` produced for one study.

    ``results`` has one :class:`Result` per axial slice (display order, feet to head). The study's
    ``label`` and ``probabilities`` are those of the key slice (largest mask, else most probable
    tumour slice, else the first; ``gpedge.runtime.save.key_slice``). ``mask_volume_ml`` is the
    mask's volume from the voxel spacing. ``paths`` holds the written DICOM files by kind
    (``seg``, ``pmap``, ``sr``), empty without DICOM output.
    """

    study: DicomStudy
    results: list[Result]
    label: str
    class_index: int
    probabilities: dict[str, float]
    key_slice: int | None
    mask_volume_ml: float | None
    paths: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": str(self.study),
            "series": {c: s.uid for c, s in self.study.series.items()},
            "label": self.label,
            "class_index": self.class_index,
            "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
            "key_slice": self.key_slice,
            "mask_volume_ml": None if self.mask_volume_ml is None else round(self.mask_volume_ml, 4),
            "slices": len(self.results),
            "out_of_distribution_slices": [r.source.slice for r in self.results if r.out_of_distribution],
            "dicom": {k: str(v) for k, v in self.paths.items()},
        }


def summarise(study: DicomStudy, results: Sequence[Result], paths: Mapping[str, Path] | None = None) -> StudyResult:
    """Study-level label, probabilities and mask volume from per-slice results."""
    key = key_slice(results)
    grid = study.reference.grid
    voxels = int(sum(r.mask_area_px for r in results))
    return StudyResult(
        study=study,
        results=list(results),
        label=key.label,
        class_index=key.class_index,
        probabilities=dict(key.probabilities),
        key_slice=key.source.slice,
        mask_volume_ml=voxels * grid.voxel_volume_ml if grid is not None else None,
        paths=dict(paths or {}),
    )


def process_study(
    predictor,
    paths_or_series: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[DicomSeries],
    out_dir: str | os.PathLike,
    *,
    channel_rules: ChannelRules = None,
    dicom_out: bool = True,
    overwrite: bool = False,
) -> StudyResult:
    """Classify one DICOM study and write its DICOM results.

    ``paths_or_series``: DICOM files or folders (searched recursively), or series from
    :func:`~gpedge.dicom.find_series`; they must hold exactly one input for the model (see
    ``gpedge.dicom.channels`` for how series are mapped to channels and ``channel_rules``).
    With ``dicom_out``, a Segmentation, a Parametric Map and a Comprehensive SR are written
    into ``out_dir`` all together or not at all, replacing existing files only with ``overwrite``.
    Raises :class:`~gpedge.errors.GpedgeError` subclasses with a clear message on bad input.
    """
    study = read_study(paths_or_series, predictor.channels, channel_rules)
    scan = predictor.read_scan(study)
    results = predictor.predict_scans([scan])[0]
    paths: dict[str, Path] = {}
    if dicom_out:
        from gpedge.dicom.writers import write_results

        paths = write_results(study, results, predictor, out_dir, overwrite=overwrite)
    return summarise(study, results, paths)
