"""Brain-MRI data sets as lazily decoded 2-D slices (numpy; no torch).

- :func:`open_dataset` reads BraTS 2020, the Figshare brain-tumour set or an image folder
  into a :class:`SliceDataset` (usable directly as a ``torch.utils.data.Dataset``).
- :func:`split_patients`: patient-level, class-stratified, seeded train/val/test split.
- :func:`write_synthetic_brats`: synthetic brain MRI with tumours in the BraTS 2020 layout
  (needs nilearn and scipy, imported on first use).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gpedge.data.dataset import SliceDataset, SliceRecord
from gpedge.data.loader import detect_format, open_dataset
from gpedge.data.split import split_patients

if TYPE_CHECKING:
    from gpedge.data.synthetic import write_synthetic_brats

__all__ = ["SliceDataset", "SliceRecord", "detect_format", "open_dataset", "split_patients", "write_synthetic_brats"]


def __getattr__(name: str):
    if name == "write_synthetic_brats":
        from gpedge.data.synthetic import write_synthetic_brats

        return write_synthetic_brats
    raise AttributeError(f"module 'gpedge.data' has no attribute {name!r}")
