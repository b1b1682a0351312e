"""``open_dataset``: recognise a data set on disk and open it as a :class:`SliceDataset`."""
from __future__ import annotations

import os
from pathlib import Path

from gpedge.data.dataset import SliceDataset
from gpedge.errors import DataError

FORMATS = ("brats", "figshare", "folder")


def detect_format(path: Path) -> str:
    """``"brats"``, ``"figshare"`` or ``"folder"`` from what ``path`` holds."""
    from gpedge.data import brats, figshare, folder

    if path.is_file() and path.suffix.lower() == ".mat":
        return "figshare"
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; pass the data set's root folder")
    if (path / brats.MAPPING_CSV).is_file() or brats.patient_folders(path):
        return "brats"
    if figshare.mat_files(path):
        return "figshare"
    if folder.class_folders(path):
        return "folder"
    raise DataError(
        f"{path}: cannot tell the data set format; expected a BraTS 2020 folder "
        "(name_mapping.csv and <patient>/<patient>_<contrast>.nii.gz), Figshare .mat files, "
        "or an image folder (<class>/<name>.png); or pass format= explicitly"
    )


def open_dataset(
    path: str | os.PathLike,
    format: str = "auto",
    channels: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> SliceDataset:
    """Open a BraTS 2020, Figshare or image-folder data set as lazily decoded slices.

    ``format`` is ``"auto"`` (detected from the content) or one of ``brats``, ``figshare``,
    ``folder``. ``channels`` selects and orders contrasts (BraTS: any of t1, t2, t1ce, flair;
    Figshare: t1ce; folder: one name, default ``image``). ``image_size`` (int or (H, W)) resizes
    every slice; None keeps the stored size. ``cache_dir`` holds decoded BraTS slices (default
    ``$GPEDGE_CACHE`` or ``~/.cache/gpedge``).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; pass the data set's root folder")
    kind = detect_format(root) if format == "auto" else format
    if kind == "brats":
        from gpedge.data.brats import open_brats

        return open_brats(root, channels, image_size, cache_dir)
    if kind == "figshare":
        from gpedge.data.figshare import open_figshare

        return open_figshare(root, channels, image_size)
    if kind == "folder":
        from gpedge.data.folder import open_folder

        return open_folder(root, channels, image_size)
    raise DataError(f"unknown data set format {format!r}; use auto, {', '.join(FORMATS)}")
