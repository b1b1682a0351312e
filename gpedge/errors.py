"""Exceptions that the CLI reports as one clear line (no traceback)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class GpedgeError(Exception):
    """Base class for errors caused by user input, data or model files.

    The message must say what went wrong, where (file, slice, field) and how to fix it.
    """


class InputError(GpedgeError):
    """An input scan or data set cannot be read or does not fit the model."""


class DataError(GpedgeError):
    """A training or evaluation data set is malformed."""


class PackageError(GpedgeError):
    """A model package is damaged, incompatible or of an unknown schema."""


class OutputError(GpedgeError):
    """Results cannot be written (folder not writable, disk full, a file gpedge must not overwrite)."""


class InferenceError(GpedgeError):
    """The inference backend failed on an input (the graph refused it or the device failed)."""


class BackendUnavailable(GpedgeError):
    """A requested inference backend cannot run on this machine."""


class Int8GateRefused(GpedgeError):
    """``gpedge export --int8``: the INT8 graph failed the accuracy gate against the FP32 graph."""


@contextmanager
def prefixed(context: str) -> Iterator[None]:
    """Re-raise a :class:`GpedgeError` of the block as ``"<context>: <message>"`` (e.g. the flag that named a file)."""
    try:
        yield
    except GpedgeError as exc:
        raise GpedgeError(f"{context}: {exc}") from exc


def reporting(main: Callable[[], int | None]) -> int:
    """``main()``'s exit status (``None``: 0); a :class:`GpedgeError` becomes one ``error:`` line on stderr and status 2."""
    try:
        return main() or 0
    except GpedgeError as exc:
        import typer  # its echo writes file names intact to a stderr whose encoding cannot (print escapes them)

        typer.echo(f"error: {exc}", err=True)
        return 2
