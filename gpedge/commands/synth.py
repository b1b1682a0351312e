"""``gpedge synth``: write a synthetic brain-MRI data set in the BraTS 2020 layout."""
from __future__ import annotations

from pathlib import Path

import typer


def main(
    out: Path = typer.Argument(..., help="New folder to write (BraTS 2020 training layout)."),
    patients: int = typer.Option(20, "--patients", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    size: int = typer.Option(240, "--size", min=8, help="In-plane size in voxels (the field of view stays 240 mm)."),
    slices: int = typer.Option(155, "--slices", min=8, help="Axial slices (over 155 mm)."),
    lgg_fraction: float = typer.Option(0.5, "--lgg-fraction", min=0.0, max=1.0, help="Share of LGG patients; the rest are HGG."),
) -> None:
    """Write synthetic brain MRI (T1, T2, T1CE, FLAIR + tumour segmentation) as BraTS 2020 folders."""
    from rich.progress import track

    from gpedge.data.synthetic import write_synthetic_brats

    def progress(steps):
        return track(steps, description=f"synthesising {patients} patients", transient=True)

    ids = write_synthetic_brats(out, patients, seed, size, slices, lgg_fraction=lgg_fraction, progress=progress)
    typer.echo(f"wrote {len(ids)} patients ({size}x{size}x{slices}) to {out}")
