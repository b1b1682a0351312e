"""``SliceDataset``: 2-D slices of a brain-MRI data set, decoded lazily, one sample per index.

Samples are dicts of numpy arrays and Python scalars (a ``torch.utils.data.DataLoader`` with the
default collate turns them into tensors; this module never imports torch):

- ``image``: float32 (C, H, W), resized to ``image_size`` then divided by the slice maximum
  taken jointly over the channels (:mod:`gpedge.preprocess`);
- ``label``: int class index; ``mask``: uint8 (H, W) ground-truth tumour mask (0/1, zeros if
  none); ``patient``: str; ``slice``: int (axial slice or frame number in the source).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gpedge.errors import DataError
from gpedge.preprocess import fit_image, fit_mask, normalise_slice_max


@dataclass(frozen=True)
class SliceRecord:
    """What is known about one slice without decoding it; ``key`` addresses it in its source."""

    patient: str
    slice: int
    label: int
    key: Any


class SliceSource(Protocol):
    """Decodes the raw slice behind a :class:`SliceRecord` key."""

    def read(self, key: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(image float32 (C, H, W) raw intensities, mask uint8 (H, W) 0/1)``."""


def as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Normalise an ``image_size`` argument (int, (height, width) or None) to a tuple or None."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise DataError(f"image_size {image_size!r} is invalid; pass a positive int or (height, width)")
    return int(size[0]), int(size[1])


class SliceDataset:
    """Indexable, lazily decoded slices with labels, patients and class metadata.

    ``labels``, ``patient_of`` and ``patients`` come from the index, without decoding images.
    """

    def __init__(
        self,
        records: Sequence[SliceRecord],
        source: SliceSource,
        *,
        class_names: Sequence[str],
        no_tumour_class: int | None,
        channels: Sequence[str],
        image_size: int | Sequence[int] | None = None,
        format: str,
        root: Path,
    ) -> None:
        self._records = list(records)
        self._source = source
        self.class_names = list(class_names)
        self.no_tumour_class = no_tumour_class
        self.channels = list(channels)
        self.image_size = as_size(image_size)
        self.format = format
        self.root = Path(root).absolute()  # recorded in run configs: export and evaluate find it from any folder

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self._records[index]
        image, mask = self._source.read(record.key)
        if self.image_size is not None:
            image = fit_image(image, self.image_size)
            mask = fit_mask(mask, self.image_size)
        return {
            "image": normalise_slice_max(image),
            "label": record.label,
            "mask": np.ascontiguousarray(mask, dtype=np.uint8),
            "patient": record.patient,
            "slice": record.slice,
        }

    def mask(self, index: int) -> np.ndarray:
        """The tumour mask of sample ``index`` at the data set's size, uint8 (H, W) 0/1."""
        _, mask = self._source.read(self._records[index].key)
        if self.image_size is not None:
            mask = fit_mask(mask, self.image_size)
        return np.ascontiguousarray(mask, dtype=np.uint8)

    @property
    def records(self) -> list[SliceRecord]:
        """The slice index (a copy)."""
        return list(self._records)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every sample, int64 (N,)."""
        return np.array([r.label for r in self._records], dtype=np.int64)

    @property
    def patient_of(self) -> list[str]:
        """Patient id of every sample."""
        return [r.patient for r in self._records]

    @property
    def patients(self) -> list[str]:
        """Sorted unique patient ids."""
        return sorted({r.patient for r in self._records})

    @property
    def patient_classes(self) -> dict[str, int]:
        """One class per patient, for stratified splits.

        The most frequent tumour class among the patient's slices (ties: the lower index), or the
        no-tumour class when the patient has only tumour-free slices.
        """
        counts: dict[str, Counter] = {}
        for r in self._records:
            counts.setdefault(r.patient, Counter())
            if r.label != self.no_tumour_class:
                counts[r.patient][r.label] += 1
        return {
            patient: (min(c, key=lambda k: (-c[k], k)) if c else int(self.no_tumour_class))
            for patient, c in sorted(counts.items())
        }

    def class_counts(self) -> dict[str, int]:
        """Number of samples per class name."""
        counts = Counter(r.label for r in self._records)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def subset(self, patients: Iterable[str]) -> "SliceDataset":
        """The slices of the given patients (same source, metadata and preprocessing)."""
        wanted = set(patients)
        unknown = wanted - {r.patient for r in self._records}
        if unknown:
            shown = ", ".join(sorted(unknown)[:5])
            raise DataError(
                f"{len(unknown)} patient(s) not in the data set at {self.root} ({shown}); "
                "the split was made on a different data set"
            )
        return self.take(i for i, r in enumerate(self._records) if r.patient in wanted)

    def take(self, indices: Iterable[int]) -> "SliceDataset":
        """The slices at ``indices``, in that order (same source, metadata and preprocessing)."""
        return SliceDataset(
            [self._records[int(i)] for i in indices],
            self._source,
            class_names=self.class_names,
            no_tumour_class=self.no_tumour_class,
            channels=self.channels,
            image_size=self.image_size,
            format=self.format,
            root=self.root,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for run configs and logs)."""
        return {
            "format": self.format,
            "path": str(self.root),
            "channels": self.channels,
            "class_names": self.class_names,
            "no_tumour_class": self.no_tumour_class,
            "image_size": list(self.image_size) if self.image_size else None,
            "num_slices": len(self),
            "num_patients": len(self.patients),
            "class_counts": self.class_counts(),
        }

    def __repr__(self) -> str:
        return (
            f"SliceDataset(format={self.format!r}, root={str(self.root)!r}, slices={len(self)}, "
            f"patients={len(self.patients)}, classes={self.class_names}, channels={self.channels})"
        )
