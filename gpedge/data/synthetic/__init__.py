"""Synthetic brain MRI with gliomas, in the BraTS 2020 layout or as single-slice PNG sets.

A generator built so that a network trained on it has to find the tumour: anatomy, contrast,
scanner and tumours are randomised per patient, and nothing but the lesion tells the classes apart
(see ``docs/quality.md``, "Synthetic data: shortcut cues and what the generator randomises").

Stages, one module each:

- :mod:`.anatomy`: normal anatomy (MNI152 template or a procedural phantom), skull and scalp, vessels;
- :mod:`.lesions`: tumour count, location, size, shape and compartments (BraTS labels 1, 2, 4);
- :mod:`.contrast`: tissue signal per contrast (MR signal equations or an intensity table);
- :mod:`.scanner`: slice profile, resolution, bias field, noise, skull stripping, intensity scale;
- :mod:`.patient`: one patient from the stages above, for a generator :data:`FAMILIES` member;
- :mod:`.writers`: BraTS 2020 folders and PNG image folders.

Two families: ``train`` (MNI152 anatomy deformed per patient, noise-shaped tumours anywhere in
the brain, signal equations) and ``heldout`` (procedural phantom anatomy, lobulated tumours with a
white-matter location prior, intensity table): train on the first, measure generalisation on the second.
Needs scipy and nilearn (the ``[train]`` extra); nothing is downloaded.
"""
from __future__ import annotations

from gpedge.data.synthetic.contrast import CONTRASTS
from gpedge.data.synthetic.fields import FIELD_OF_VIEW_MM, smooth_field
from gpedge.data.synthetic.patient import FAMILIES, Family, SyntheticPatient, synthesise_patient
from gpedge.data.synthetic.writers import (
    MAPPING_COLUMNS,
    PNG_CLASSES,
    display_slices,
    patient_id,
    write_synthetic_brats,
    write_synthetic_pngs,
)

__all__ = [
    "CONTRASTS",
    "FAMILIES",
    "FIELD_OF_VIEW_MM",
    "MAPPING_COLUMNS",
    "PNG_CLASSES",
    "Family",
    "SyntheticPatient",
    "display_slices",
    "patient_id",
    "smooth_field",
    "synthesise_patient",
    "write_synthetic_brats",
    "write_synthetic_pngs",
]
