"""``gpedge infer``: classify scans and localise the tumour, with per-input error reporting."""
from __future__ import annotations

import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from gpedge.graph.contract import MASK_RULES, post_step_names


def main(
    inputs: Optional[list[Path]] = typer.Argument(
        None, metavar="FILES_OR_DIRS...", help="Images (PNG/JPEG/TIFF), DICOM, NIfTI, BraTS patient folders or folders of them."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder from 'gpedge export', or a bundled model: default (one FLAIR slice), gp-unet-t1ce (one T1CE slice), gp-unet-synth (T1, T2, T1CE, FLAIR)."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, tensorrt or torch."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the backend's choice)."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (the package's INT8 graph on the CPU where it has one, FP16 engines on TensorRT, else FP32), fp32, fp16 or int8."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for masks, heatmaps, overlays and JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out/--dicom-out (never done otherwise)."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per image or slice on stdout."),
    mask_rule: Optional[str] = typer.Option(
        None, "--mask-rule",
        help=f"Mask rule: {', '.join(MASK_RULES)}, optionally {post_step_names()} (default: the package's).",
    ),
    offset: Optional[float] = typer.Option(None, "--offset", help="The mask rule's parameter (default: the package's)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per model call."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads of the backend (default: the physical cores)."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", min=1,
        help="Largest input accepted, in pixels per channel over all its slices, read from the header before decoding (default 134217728 = 512^3).",
    ),
    every_slice: bool = typer.Option(False, "--every-slice", help="With --out, also write PNGs and JSON for every slice of a volume."),
    t1: Optional[Path] = typer.Option(None, "--t1", help="T1 file of one multi-contrast scan."),
    t2: Optional[Path] = typer.Option(None, "--t2", help="T2 file of one multi-contrast scan."),
    t1ce: Optional[Path] = typer.Option(None, "--t1ce", help="T1CE file of one multi-contrast scan."),
    flair: Optional[Path] = typer.Option(None, "--flair", help="FLAIR file of one multi-contrast scan."),
    dicom_out: Optional[Path] = typer.Option(
        None, "--dicom-out", help="Folder for DICOM results of DICOM series: Segmentation, Parametric Map, SR (needs gpedge[dicom])."
    ),
    series: Optional[list[str]] = typer.Option(
        None, "--series", metavar="CHANNEL=UID|PATTERN",
        help="Which DICOM series feeds a model channel: a SeriesInstanceUID or a regular expression on SeriesDescription/ProtocolName (repeatable).",
    ),
) -> None:
    """Predict the class, heatmap and tumour mask of each image or slice.

    DICOM files (any name; folders searched recursively) are grouped into series and mapped to
    the model's channels by their names (see --series). Each input is processed on its own: one
    that cannot be read, run or written is reported on stderr (one line) with none of its output
    files left, the others are still processed, and the exit code is then 2. Existing files are
    never replaced without --overwrite. Blank images are refused; slices far from the model's
    training data are flagged "out of distribution" and get no diagnosis.
    """
    with _quiet_readers():
        _infer(inputs, model, backend, device, precision, out, overwrite, json_lines, mask_rule, offset, batch_size,
               threads, max_pixels, every_slice, {"t1": t1, "t2": t2, "t1ce": t1ce, "flair": flair}, dicom_out, series)


def _infer(inputs, model, backend, device, precision, out, overwrite, json_lines, mask_rule, offset, batch_size, threads,
           max_pixels, every_slice, contrast_flags, dicom_out, series) -> None:
    from rich.console import Console

    from gpedge.dicom.discovery import split_inputs
    from gpedge.errors import GpedgeError
    from gpedge.runtime.io import expand_paths
    from gpedge.runtime.predictor import Predictor

    report = _Reporter()
    contrasts = {k: v for k, v in contrast_flags.items() if v is not None}
    dicom_paths, other_paths = split_inputs(inputs or [], report)
    items: list[object] = list(expand_paths(other_paths, report))
    _report_empty_folders(other_paths, [*dicom_paths, *items], report)
    if contrasts:
        items.append(contrasts)
    if not items and not dicom_paths:
        if report.count:
            raise typer.Exit(2)
        raise GpedgeError("no inputs: pass image files, DICOM series, volumes or folders, or --t1/--t2/--t1ce/--flair")

    console = Console(width=None if sys.stdout.isatty() else 200)
    rows: list[tuple[str, object]] = []
    saved: list[tuple[str, dict[str, str]]] = []
    writer = _Writer(out, dicom_out, overwrite, every_slice)
    with Predictor(model, backend=backend, device=device, offset=offset, batch_size=batch_size, threads=threads,
                   max_pixels=max_pixels, precision=precision, mask_rule=mask_rule) as predictor:
        if not json_lines:
            console.print(f"[dim]backend: {predictor.backend_description}, precision {predictor.precision}[/dim]")
        if dicom_paths:
            studies, problems = _dicom_studies(dicom_paths, predictor.channels, series)
            for problem in problems:
                report(problem)
            items.extend(studies)
        if not items and not report.count:
            raise GpedgeError(f"no inputs: {', '.join(map(str, inputs or []))} hold(s) no images, DICOM series or volumes")
        for item in items:
            label = _describe(item)
            try:
                scan = predictor.read_scan(item, name=_name(item, label))
                results = predictor.predict_scans([scan])[0]
                written = writer.write(item, scan, results, predictor)
            except GpedgeError as exc:
                report(exc)
                continue
            except Exception as exc:  # a defect of gpedge or a library: still one line, the other inputs go on
                logging.getLogger(__name__).debug("unexpected failure on %s", label, exc_info=True)
                report(f"{label}: unexpected {type(exc).__name__} ({exc}); please report this")
                continue
            if dicom_out is not None and not writer.is_dicom(item) and not json_lines:
                console.print(f"[dim]{label}: not a DICOM series, no DICOM results written for it[/dim]")
            if written:
                saved.append((label, written))
            for result in results:
                record = result.to_dict()
                record["file"] = label
                if written:
                    record["outputs"] = written
                if json_lines:
                    typer.echo(json.dumps(record))
            rows.append((label, results))
    if not json_lines and rows:
        _table(console, rows, predictor.classes)
        for label, written in saved:
            files = ", ".join(f"{kind} {path}" for kind, path in written.items() if kind in _SHOWN_OUTPUTS)
            console.print(f"{label}: {files}", highlight=False)
    if report.count:
        raise typer.Exit(2)


def _report_empty_folders(paths: list[Path], found: list[Path], report: "_Reporter") -> None:
    """Report each folder argument in which nothing readable was found (it would otherwise be skipped silently)."""
    for path in paths:
        if path.is_dir() and not any(f == path or path in f.parents for f in found):
            report(f"{path}: holds no images (PNG/JPEG/TIFF), NIfTI volumes, BraTS patient folders or DICOM files "
                   "(images and volumes are looked for in the folder itself, DICOM files at any depth)")


class _Reporter:
    """Prints each problem once, as one line on stderr, and counts them."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    @property
    def count(self) -> int:
        return len(self.seen)

    def __call__(self, problem: object) -> None:
        line = " ".join(str(problem).split())
        if line not in self.seen:
            self.seen.add(line)
            typer.echo(f"error: {line}", err=True)


class _Writer:
    """Writes every output of one input as one set (--out and --dicom-out together), never replacing a
    file it did not write in this call unless ``overwrite``; an output name another input of this
    call already took gets a numbered stem instead."""

    def __init__(self, out: Optional[Path], dicom_out: Optional[Path], overwrite: bool, every_slice: bool) -> None:
        self.out, self.dicom_out, self.overwrite, self.every_slice = out, dicom_out, overwrite, every_slice
        self.committed: set[Path] = set()

    @staticmethod
    def is_dicom(item: object) -> bool:
        from gpedge.dicom.study import DicomStudy

        return isinstance(item, DicomStudy)

    def write(self, item: object, scan, results, predictor) -> dict[str, str]:
        from gpedge.atomic import FileCollision, OutputFiles

        if self.out is None and (self.dicom_out is None or not self.is_dicom(item)):
            return {}
        for n in range(1, 10_000):
            stem = scan.name if n == 1 else f"{scan.name}_{n}"
            try:
                with OutputFiles(self.overwrite, self.committed) as files:
                    return self._stage(item, scan, results, predictor, stem, files)
            except FileCollision:
                continue
        raise AssertionError("unreachable: 10,000 inputs of the same name")

    def _stage(self, item, scan, results, predictor, stem: str, files) -> dict[str, str]:
        from gpedge.runtime.save import save_scan

        written: dict[str, str] = {}
        if self.out is not None:
            written.update(save_scan(scan, results, self.out, stem, self.every_slice, files))
        if self.dicom_out is not None and self.is_dicom(item):
            from gpedge.dicom.writers import write_results

            paths = write_results(item, results, predictor, self.dicom_out, stem, files)
            written.update({f"dicom_{kind}": str(path) for kind, path in paths.items()})
        return written


def _dicom_studies(paths: list[Path], channels: list[str], rules: Optional[list[str]]) -> tuple[list, list]:
    """DICOM series grouped into model inputs, and the problems (one per bad file, series or study)."""
    from gpedge.dicom import find_series, studies

    problems: list[Exception] = []
    found, unmapped = studies(find_series(paths, on_error=problems.append), channels, rules)
    return found, problems + unmapped


@contextmanager
def _quiet_readers() -> Iterator[None]:
    """Keep stderr to one line per problem: the readers' own messages repeat what gpedge reports.

    Native libraries (libpng, libjpeg, libtiff inside OpenCV, ONNX Runtime) write to file
    descriptor 2 directly; it is pointed at /dev/null for the call while Python's ``sys.stderr``
    (gpedge's error lines, tracebacks of defects) keeps the real one. Python warnings (pydicom,
    nibabel, numpy) are ignored and the readers' loggers only pass on critical messages.
    """
    import cv2
    import pydicom.config  # noqa: F401  (configures the "pydicom" logger, which is then quietened)

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    for name in ("pydicom", "nibabel"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sys.stderr.flush()
    real_fd = os.dup(2)
    real_stderr = sys.stderr
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(real_fd), "wb", buffering=0), write_through=True,
                                      encoding=real_stderr.encoding, errors="backslashreplace")
        os.dup2(null, 2)
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(real_fd, 2)
        sys.stderr = real_stderr
        os.close(real_fd)
        os.close(null)


def _describe(item: object) -> str:
    if isinstance(item, dict):
        return ",".join(str(p) for p in item.values())
    return str(item)


def _name(item: object, label: str) -> str:
    """Output stem of an input that is not a file (arrays are not passed here)."""
    return getattr(item, "name", None) or Path(label).name


#: Volumes with more slices than this show only their tumour slices in the table.
_MAX_ROWS_PER_VOLUME = 20


#: Output files named after the table (the JSON and per-slice files are in the same folder).
_SHOWN_OUTPUTS = ("mask", "mask_nifti", "overlay", "dicom_seg", "dicom_pmap", "dicom_sr")


def _table(console, rows, classes) -> None:
    from rich.table import Table

    table = Table(title=None, show_lines=False)
    for column, justify in (("file", "left"), ("slice", "right"), ("label", "left"), ("probabilities", "left"),
                            ("mask px", "right"), ("ms", "right")):
        table.add_column(column, justify=justify, overflow="fold", no_wrap=column != "file")
    notes = []
    for label, results in rows:
        shown = results
        flagged = sum(r.out_of_distribution for r in results)
        if len(results) > _MAX_ROWS_PER_VOLUME:
            shown = [r for r in results if r.is_tumour and not r.out_of_distribution]
            notes.append(f"{label}: {len(results)} slices, {len(shown)} predicted with tumour (only those are listed)")
        if flagged:
            first = next(r for r in results if r.out_of_distribution)
            notes.append(f"{label}: {flagged} image(s)/slice(s) out of distribution, no diagnosis "
                         f"({'; '.join(first.ood_reasons)}{'; ...' if flagged > 1 else ''})")
        for r in shown:
            if r.out_of_distribution:
                verdict, probs = "[bold red]out of distribution[/bold red]", "no diagnosis (see below)"
            else:
                verdict = f"[bold]{r.label}[/bold]"
                probs = "  ".join(f"{name} {r.probabilities[name]:.2f}" for name in classes)
            table.add_row(
                label, "" if r.source.slice is None else str(r.source.slice), verdict, probs,
                str(r.mask_area_px), f"{sum(r.speed.values()):.1f}",
            )
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
