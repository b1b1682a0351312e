"""``gpedge synth``: write synthetic brain MRI, as BraTS 2020 folders or as single-slice PNG sets."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpedge.errors import DataError

FORMATS = ("brats", "png")


def main(
    out: Path = typer.Argument(..., help="New folder to write."),
    patients: int = typer.Option(20, "--patients", min=1, help="Number of patients (png: images per class, one patient each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    family: str = typer.Option("train", "--family", help="Generator family: train (MNI152 anatomy) or heldout (procedural anatomy, other tumour and intensity models; never train on it)."),
    format: str = typer.Option("brats", "--format", help="brats: NIfTI volumes + name_mapping.csv; png: OUT/{Healthy,LGG,HGG}/<name>.png + <name>_mask.png."),
    size: int = typer.Option(240, "--size", min=8, help="In-plane size in voxels (the field of view stays 240 mm)."),
    slices: Optional[int] = typer.Option(None, "--slices", min=8, help="Axial slices over 155 mm (default: 155 for brats, 24 for png)."),
    lgg_fraction: float = typer.Option(0.5, "--lgg-fraction", min=0.0, max=1.0, help="brats: share of LGG patients; the rest are HGG."),
    channel: str = typer.Option("t1ce", "--channel", help="png: the contrast written (t1, t2, t1ce or flair)."),
    skull_fraction: float = typer.Option(0.3, "--skull-fraction", min=0.0, max=1.0, help="Share of patients keeping skull and scalp (0: all skull-stripped, as BraTS ships)."),
    min_lesion_mm: float = typer.Option(
        0.0, "--min-lesion-mm", min=0.0, help="Smallest tumour radius in mm (0: the family's own sizes, down to a few voxels)."
    ),
    first_id: int = typer.Option(1, "--first-id", min=1, help="brats: number of the first patient (BraTS20_Training_<N>); the data do not change, only the ids."),
    lesion_free: bool = typer.Option(
        False, "--lesion-free", help="brats: the same patients without their tumours (their lesion-free twins: same anatomy, scanner and noise; for scripts/twin_check.py)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes synthesising patients in parallel (same data for any number)."),
) -> None:
    """Write synthetic brain MRI with gliomas (T1, T2, T1CE, FLAIR + tumour segmentation)."""
    from rich.progress import track

    from gpedge.data.synthetic import write_synthetic_brats, write_synthetic_pngs

    if format not in FORMATS:
        raise DataError(f"--format {format!r} is unknown; use brats or png")
    if format == "png" and lesion_free:
        raise DataError("--lesion-free writes the lesion-free twins of a BraTS set; png images are picked by their lesion, so use --format brats")
    if format == "png" and first_id != 1:
        raise DataError("--first-id numbers BraTS patients; png images are named by class, so leave it out with --format png")

    def progress(steps):
        return track(steps, description=f"synthesising ({family} family)", transient=True)

    if format == "brats":
        depth = slices or 155
        ids = write_synthetic_brats(
            out, patients, seed, size, depth, lgg_fraction=lgg_fraction, family=family, skull_fraction=skull_fraction,
            min_lesion_mm=min_lesion_mm, first_id=first_id, lesion_free=lesion_free, workers=workers, progress=progress,
        )
        what = "lesion-free twins of " if lesion_free else ""
        typer.echo(f"wrote {what}{len(ids)} {family}-family patients ({size}x{size}x{depth}) to {out}")
    else:
        depth = slices or 24
        paths = write_synthetic_pngs(
            out, patients, seed, size, depth, family=family, channel=channel, skull_fraction=skull_fraction,
            min_lesion_mm=min_lesion_mm, workers=workers, progress=progress,
        )
        typer.echo(f"wrote {len(paths)} {family}-family {channel} slices ({size}x{size}) with masks to {out}")
