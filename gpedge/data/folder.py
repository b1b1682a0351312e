"""Image-folder data set: ``ROOT/<class>/<name>.{png,jpg,jpeg,tif,tiff}``.

Classes are the sub-folder names; a folder named healthy, normal, no_tumour, no_tumor, notumour or
notumor (any case) is the no-tumour class and comes first (label 0, as in the paper), the others
follow sorted by name. ``<name>_mask.png`` next to an image is
its ground-truth mask (non-zero = tumour). 8/16-bit and float images are read as stored,
colour is converted to grey. Each image is its own patient: the file stem, or
``<class>/<stem>`` when the same stem occurs in several class folders.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from gpedge.data.dataset import SliceDataset, SliceRecord
from gpedge.errors import DataError, InputError
from gpedge.runtime.io import IMAGE_SUFFIXES, read_image

MASK_SUFFIX = "_mask"
NO_TUMOUR_NAMES = ("healthy", "normal", "no_tumour", "no_tumor", "notumour", "notumor")
DEFAULT_CHANNEL = "image"


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.lower().endswith(MASK_SUFFIX)
    )


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold at least one image, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and _images(p))


def read_grey(path: Path) -> np.ndarray:
    """One image file as a float32 (H, W) grey image of its stored values (the runtime's reader)."""
    try:
        return read_image(path).images[0, 0]
    except InputError as exc:
        raise DataError(f"{exc}; replace or remove the file") from None


def _mask_of(path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_name(f"{path.stem}{MASK_SUFFIX}{suffix}")
        if candidate.is_file():
            return candidate
    return None


class FolderSource:
    """Reads an image and its optional ``_mask.png``."""

    def read(self, key: tuple[Path, Path | None]) -> tuple[np.ndarray, np.ndarray]:
        path, mask_path = key
        image = read_grey(path)
        if mask_path is None:
            return image[None], np.zeros(image.shape, dtype=np.uint8)
        mask = read_grey(mask_path)
        if mask.shape != image.shape:
            raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but {path.name} is {image.shape[1]}x{image.shape[0]}")
        return image[None], (mask > 0).astype(np.uint8)


def open_folder(root: Path, channels: list[str] | None = None, image_size: int | tuple[int, int] | None = None) -> SliceDataset:
    """Open an image folder (see the module docstring)."""
    if channels is not None and len(channels) != 1:
        raise DataError(f"the image folder {root} has one (grey) channel; got channels {list(channels)}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass ROOT with one sub-folder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root}: no class sub-folders; expected {root}/<class>/<name>.png")
    empty = [p.name for p in folders if not _images(p)]
    if empty:
        raise DataError(f"{root}: class folder(s) {', '.join(empty)} hold no {'/'.join(IMAGE_SUFFIXES)} images")
    healthy = [p.name for p in folders if p.name.lower() in NO_TUMOUR_NAMES]
    if len(healthy) > 1:
        raise DataError(f"{root}: several no-tumour folders ({', '.join(healthy)}); merge them")
    folders.sort(key=lambda p: (p.name not in healthy, p.name))
    names = [p.name for p in folders]
    files = [(label, path) for label, folder in enumerate(folders) for path in _images(folder)]
    stems = Counter(path.stem for _, path in files)
    records = []
    for label, path in files:
        patient = path.stem if stems[path.stem] == 1 else f"{path.parent.name}/{path.stem}"
        records.append(SliceRecord(patient, 0, label, (path, _mask_of(path))))
    return SliceDataset(
        records,
        FolderSource(),
        class_names=names,
        no_tumour_class=0 if healthy else None,
        channels=[str(channels[0]).lower()] if channels else [DEFAULT_CHANNEL],
        image_size=image_size,
        format="folder",
        root=root,
    )
