"""Write the example scans in ``examples/`` from the synthetic generator (seed unseen in training).

Usage: python scripts/make_examples.py [OUT_DIR] [--contrast flair|t1ce ...]   (needs the [train] extra)
Writes, per contrast, 16-bit PNG slices (HGG, LGG, healthy), one MR DICOM slice (HGG) and small NIfTI volumes
(HGG, LGG): 24 slices around each tumour's largest section.

The ``*_t1ce*`` files in ``examples/`` were written by this script at commit 47c7795, with the generator of that
commit; the generator has changed since (anatomy, scanners, lesions), so running the script now writes other scans.
The ``*_flair*`` files were written with ``--contrast flair`` by the generator of the commit that added them (its
``hgg_flair.nii.gz`` is ``tests/data/hgg_flair.nii.gz``, the DICOM tests' series). Check a
regenerated set with ``gpedge infer`` before it replaces the bundled one: the README's figures are those of the
bundled files.

The four ``lgg_heldout_{t1,t2,t1ce,flair}.png`` (one held-out-family LGG slice in four contrasts, for the bundled
``gp-unet-synth`` model) are not written here: each is ``LGG/heldout_lgg_000.png`` of ``gpedge synth DIR --family
heldout --format png --patients 1 --min-lesion-mm 8 --seed 7 --channel C`` (same seed, same slice).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from gpedge.data.synthetic import synthesise_patient
from gpedge.runtime.io import read_nifti, write_png

SEED = 4242
SHAPE = (240, 240, 155)


def display_slices(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(Z, rows, cols) in the runtime's display orientation, via the runtime's own NIfTI reader."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        nib.save(nib.Nifti1Image(volume, affine), path)
        return read_nifti(path).images[:, 0]


def write_dicom(path: Path, pixels: np.ndarray, description: str) -> None:
    """One MR Image Storage slice, 16-bit MONOCHROME2, 1 mm pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientName = "SYNTHETIC^EXAMPLE"
    ds.PatientID = "GPEDGE-SYNTH-0001"
    ds.SeriesDescription = description
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def main(out: Path, contrasts: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for grade in ("HGG", "LGG"):
        patient = synthesise_patient(np.random.default_rng([SEED, 1 if grade == "HGG" else 2]), grade, SHAPE)
        seg = display_slices(patient.seg.astype(np.int16), patient.affine) > 0
        area = seg.sum(axis=(1, 2))
        best = int(area.argmax())
        k = np.argmax(patient.seg.sum(axis=(0, 1)))
        affine = patient.affine.copy()
        affine[:3, 3] = patient.affine[:3, :3] @ [0, 0, max(k - 12, 0)] + patient.affine[:3, 3]
        for contrast in contrasts:
            slices = np.clip(display_slices(patient.volumes[contrast], patient.affine), 0, 65535).astype(np.uint16)
            png = slices[best]
            write_png(out / f"{grade.lower()}_{contrast}.png", png)
            if grade == "HGG":
                write_dicom(out / f"hgg_{contrast}.dcm", png, f"{contrast.upper()} synthetic HGG")
                brain_area = (slices > 0).sum(axis=(1, 2))
                far = np.abs(np.arange(len(slices)) - best) > 20
                healthy = int(np.argmax(np.where(far & (area == 0), brain_area, -1)))
                write_png(out / f"healthy_{contrast}.png", slices[healthy])
            crop = patient.volumes[contrast][:, :, max(k - 12, 0) : k + 12]
            nib.save(nib.Nifti1Image(crop.astype(np.int16), affine), out / f"{grade.lower()}_{contrast}.nii.gz")
    print(f"examples written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "examples")
    parser.add_argument("--contrast", action="append", choices=("t1", "t2", "t1ce", "flair"),
                        help="contrast to write (repeat; default: t1ce and flair)")
    args = parser.parse_args()
    main(args.out, args.contrast or ["t1ce", "flair"])
