"""Finding DICOM files: by the ``DICM`` preamble (any name) or a ``.dcm``/``.dicom`` suffix, folders recursively."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from gpedge.runtime.io import is_dicom_file


def _walk(folder: Path) -> Iterable[Path]:
    """Files under ``folder``, sorted, skipping hidden entries (temporary and system files)."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def dicom_files(paths: Sequence[str | Path]) -> list[Path]:
    """The DICOM files among ``paths``: files given are kept when they look like DICOM, folders are
    searched recursively. Order: as given, folders sorted; duplicates removed."""
    seen: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        candidates = _walk(path) if path.is_dir() else [path]
        for candidate in candidates:
            if is_dicom_file(candidate):
                seen.setdefault(candidate, None)
    return list(seen)


def split_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split command-line inputs into DICOM files (folders searched recursively) and everything else.

    Folders go to both lists: their DICOM files to the first, the folder itself to the second,
    so that the other readers still find the images, volumes and patient folders in it.
    """
    dicom: list[Path] = []
    other: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            dicom.extend(dicom_files([path]))
            other.append(path)
        elif is_dicom_file(path):
            dicom.append(path)
        else:
            other.append(path)
    return list(dict.fromkeys(dicom)), other
