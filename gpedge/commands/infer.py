"""``gpedge infer``: classify scans and localise the tumour, with per-input error reporting."""
from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer


def main(
    inputs: Optional[list[Path]] = typer.Argument(
        None, metavar="FILES_OR_DIRS...", help="Images (PNG/JPEG/TIFF), DICOM, NIfTI, BraTS patient folders or folders of them."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder from 'gpedge export' (default: the bundled model)."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, tensorrt or torch."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the backend's choice)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for masks, heatmaps, overlays and JSON."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per image or slice on stdout."),
    mask_rule: Optional[str] = typer.Option(
        None, "--mask-rule",
        help="Mask rule: paper, relative, contrast, head or contrast-head, optionally +clean (default: the package's).",
    ),
    offset: Optional[float] = typer.Option(None, "--offset", help="The mask rule's parameter (default: the package's)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per model call."),
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
    the model's channels by their names (see --series). Inputs that cannot be read are reported
    on stderr (one line each) and skipped; the exit code is then 2.
    """
    from rich.console import Console

    from gpedge.dicom.discovery import split_inputs
    from gpedge.dicom.study import DicomStudy
    from gpedge.errors import GpedgeError
    from gpedge.runtime.io import expand_paths
    from gpedge.runtime.save import save_scan
    from gpedge.runtime.predictor import Predictor

    _quiet_readers()
    contrasts = {k: v for k, v in {"t1": t1, "t2": t2, "t1ce": t1ce, "flair": flair}.items() if v is not None}
    dicom_paths, other_paths = split_inputs(inputs or [])
    items: list[object] = list(expand_paths(other_paths))
    if contrasts:
        items.append(contrasts)
    if not items and not dicom_paths:
        raise GpedgeError("no inputs: pass image files, DICOM series, volumes or folders, or --t1/--t2/--t1ce/--flair")

    console = Console(width=None if sys.stdout.isatty() else 200)
    rows: list[tuple[str, object]] = []
    saved: list[tuple[str, dict[str, str]]] = []
    failed = 0
    stems: set[str] = set()
    dicom_stems: set[str] = set()
    with Predictor(model, backend=backend, device=device, offset=offset, batch_size=batch_size,
                   mask_rule=mask_rule) as predictor:
        if not json_lines:
            console.print(f"[dim]backend: {predictor.backend_description}[/dim]")
        if dicom_paths:
            studies, problems = _dicom_studies(dicom_paths, predictor.channels, series)
            for problem in problems:
                typer.echo(f"error: {problem}", err=True)
            failed += len(problems)
            items.extend(studies)
        if not items and not failed:
            raise GpedgeError(f"no inputs: {', '.join(map(str, inputs or []))} hold(s) no images, DICOM series or volumes")
        for item in items:
            label = _describe(item)
            try:
                scan = item.load() if isinstance(item, DicomStudy) else predictor.read_scan(item, name=Path(label).name)
            except GpedgeError as exc:
                typer.echo(f"error: {exc}", err=True)
                failed += 1
                continue
            results = predictor.predict_scans([scan])[0]
            written = {}
            if out is not None:
                written = save_scan(scan, results, out, _unique(scan.name, stems), every_slice)
            if dicom_out is not None and isinstance(item, DicomStudy):
                try:
                    written.update(_write_dicom(item, results, predictor, dicom_out, _unique(item.name, dicom_stems)))
                except GpedgeError as exc:
                    typer.echo(f"error: {exc}", err=True)
                    failed += 1
            elif dicom_out is not None and not json_lines:
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
    if not json_lines:
        _table(console, rows, predictor.classes)
        for label, written in saved:
            files = ", ".join(f"{kind} {path}" for kind, path in written.items() if kind in _SHOWN_OUTPUTS)
            console.print(f"{label}: {files}", highlight=False)
    if failed:
        raise typer.Exit(2)


def _dicom_studies(paths: list[Path], channels: list[str], rules: Optional[list[str]]) -> tuple[list, list]:
    """DICOM series grouped into model inputs, and the problems (one per bad file, series or study)."""
    from gpedge.dicom import find_series, studies

    problems: list[Exception] = []
    found, unmapped = studies(find_series(paths, on_error=problems.append), channels, rules)
    return found, problems + unmapped


def _write_dicom(study, results, predictor, folder: Path, stem: str) -> dict[str, str]:
    from gpedge.dicom.writers import write_results

    return {f"dicom_{kind}": str(path) for kind, path in write_results(study, results, predictor, folder, stem).items()}


def _quiet_readers() -> None:
    """Keep stderr to one line per failed input: the readers' own warnings repeat what we report."""
    import cv2
    import pydicom.config  # noqa: F401  (configures the "pydicom" logger, which is then quietened)

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(pydicom|nibabel)\.")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _describe(item: object) -> str:
    if isinstance(item, dict):
        return ",".join(str(p) for p in item.values())
    return str(item)


def _unique(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


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
        if len(results) > _MAX_ROWS_PER_VOLUME:
            shown = [r for r in results if r.is_tumour]
            notes.append(f"{label}: {len(results)} slices, {len(shown)} predicted with tumour (only those are listed)")
        for r in shown:
            probs = "  ".join(f"{name} {r.probabilities[name]:.2f}" for name in classes)
            table.add_row(
                label, "" if r.source.slice is None else str(r.source.slice), f"[bold]{r.label}[/bold]", probs,
                str(r.mask_area_px), f"{sum(r.speed.values()):.1f}",
            )
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
