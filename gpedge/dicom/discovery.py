"""Finding DICOM files: by the ``DICM`` preamble (any name) or a ``.dcm``/``.dicom`` suffix, folders recursively."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gpedge.errors import InputError
from gpedge.runtime.io import is_dicom_file, reading


def _walk(folder: Path, on_error: Callable[[InputError], None]) -> Iterable[Path]:
    """Files under ``folder``, sorted, skipping hidden entries (temporary and system files); a
    sub-folder that cannot be listed goes to ``on_error``."""
    try:
        with reading(folder):
            entries = sorted(folder.iterdir())
    except InputError as exc:
        on_error(exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry, on_error)
        elif entry.is_file():
            yield entry


def _raise(exc: InputError) -> None:
    raise exc


def _is_folder(path: Path, on_error: Callable[[InputError], None]) -> bool | None:
    """Whether ``path`` is a folder; None, after passing the error to ``on_error``, when it cannot be examined."""
    try:
        with reading(path):
            return path.is_dir()
    except InputError as exc:
        on_error(exc)
        return None


def dicom_files(paths: Sequence[str | Path], on_error: Callable[[InputError], None] | None = None) -> list[Path]:
    """The DICOM files among ``paths``: files given are kept when they look like DICOM, folders are
    searched recursively. Order: as given, folders sorted; duplicates removed. A path that cannot
    be examined (a folder that cannot be listed, a name too long) raises :class:`InputError`, or
    is passed to ``on_error`` and skipped."""
    report = on_error or _raise
    seen: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        folder = _is_folder(path, report)
        if folder is None:
            continue
        for candidate in _walk(path, report) if folder else [path]:
            if is_dicom_file(candidate):
                seen.setdefault(candidate, None)
    return list(seen)


def split_inputs(
    paths: Sequence[str | Path], on_error: Callable[[InputError], None] | None = None
) -> tuple[list[Path], list[Path]]:
    """Split command-line inputs into DICOM files (folders searched recursively) and everything else.

    Folders go to both lists: their DICOM files to the first, the folder itself to the second,
    so that the other readers still find the images, volumes and patient folders in it. A path
    that cannot be examined raises :class:`InputError`, or is passed to ``on_error`` and dropped.
    """
    dicom: list[Path] = []
    other: list[Path] = []
    for raw in paths:
        path = Path(raw)
        folder = _is_folder(path, on_error or _raise)
        if folder is None:
            continue
        found = dicom_files([path], on_error) if folder else ([path] if is_dicom_file(path) else [])
        dicom.extend(found)
        if folder or not found:
            other.append(path)
    return list(dict.fromkeys(dicom)), other
