"""DICOM results (highdicom): Segmentation, Parametric Map and Comprehensive SR (TID 1500), written as one set.

- **Segmentation** (binary): one segment "tumour", category SCT 49755003 *Morphologically abnormal
  structure*, type SCT 108369006 *Neoplasm*, automatic, with the algorithm identification (model
  name, version, package sha256, backend, mask offset).
- **Parametric Map** (float32): the study's predicted class's heatmap; quantity DCM 130402
  *Class activation*, unit "no units" (UCUM ``1``).
- **Comprehensive SR**, TID 1500 *Imaging Measurement Report*: a volumetric ROI group referencing
  the SEG segment and its source series (finding *Neoplasm*, site *Brain*, *Volume* in mL, the
  predicted class as *Finding*), then one group per class with its *Probability* (DCM 122157).
  Class names are coded in the private scheme ``99GPEDGE`` (code value = class name).

All three use the reference series' frame of reference and source geometry: frames in the
source images' order, masks and maps mapped back from the display orientation.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from gpedge.dicom.identity import CLASS_SCHEME, ModelIdentity, require_highdicom
from gpedge.dicom.series import DicomSeries
from gpedge.dicom.study import DicomStudy, StudyResult, summarise
from gpedge.atomic import OutputFiles
from gpedge.errors import InputError
from gpedge.runtime.results import Result

#: Series numbers of the results: the source's plus these offsets.
SERIES_OFFSETS = {"seg": 1000, "pmap": 2000, "sr": 3000}
MILLILITRE = ("mL", "UCUM", "milliliter")
MRI = ("113091000", "SCT", "Magnetic resonance imaging")


def default_stem(study: DicomStudy) -> str:
    """Output stem of a study: its name plus a short hash of its series UID (unique per series)."""
    return f"{study.name}_{hashlib.sha1(study.reference.uid.encode()).hexdigest()[:8]}"


def write_results(
    study: DicomStudy,
    results: Sequence[Result],
    predictor,
    out_dir: str | os.PathLike,
    stem: str | None = None,
    files: OutputFiles | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``<stem>_seg.dcm``, ``<stem>_pmap.dcm`` and ``<stem>_sr.dcm`` into ``out_dir``; all or nothing.

    A study whose every slice is flagged out of distribution gets none (:class:`InputError`): an SR would
    state a class the runtime does not diagnose. Flagged slices of other studies have empty masks.

    ``files``: the caller's set of one input's outputs to stage them in (the caller commits it);
    without it they are written as a set of their own, replacing existing files only with ``overwrite``.
    """
    if all(r.out_of_distribution for r in results):
        raise InputError(
            f"{study}: every slice is out of distribution for this model ({'; '.join(results[0].ood_reasons)}), so "
            f"there is no diagnosis to report and no DICOM results are written; check that the series "
            f"{'is' if len(predictor.channels) == 1 else 'are'} {'/'.join(predictor.channels)} axial brain MR"
        )
    summary = summarise(study, results)
    try:
        datasets = build_results(study, summary, ModelIdentity.of(predictor))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom's checks of unusual sources
        raise InputError(f"{study}: the DICOM results cannot be built from this series ({exc})") from exc
    stem = stem or default_stem(study)
    paths = {kind: Path(out_dir) / f"{stem}_{kind}.dcm" for kind in datasets}
    if files is None:
        with OutputFiles(overwrite) as own:
            return write_results(study, results, predictor, out_dir, stem, own)
    for kind, ds in datasets.items():
        files.write_bytes(paths[kind], _encode(ds))
    return paths


def build_results(study: DicomStudy, summary: StudyResult, identity: ModelIdentity) -> dict[str, Dataset]:
    """The SEG, Parametric Map and SR of one study's results, in memory."""
    reference = study.reference
    if reference.grid is None:
        raise InputError(
            f"{reference}: has no patient geometry (ImagePositionPatient/ImageOrientationPatient); "
            "DICOM SEG, Parametric Map and SR need it (use --out for PNG/JSON results)"
        )
    sources, order = source_frames(reference)
    mask = reference.to_source(np.stack([r.mask for r in summary.results]))[order]
    heat = reference.to_source(np.stack([r.heatmaps[summary.class_index] for r in summary.results]))[order]
    seg = build_seg(sources, mask.astype(bool), identity, _series_number(reference, "seg"))
    pmap = build_pmap(sources, heat.astype(np.float32), summary.label, identity, _series_number(reference, "pmap"))
    evidence = [ds for series in study.series.values() for ds in _headers(series)]
    sr = build_sr(evidence, seg, reference.uid, summary, identity, _series_number(reference, "sr"))
    return {"seg": seg, "pmap": pmap, "sr": sr}


def source_frames(series: DicomSeries) -> tuple[list[Dataset], np.ndarray]:
    """The source datasets highdicom refers to and the order taking stack frames to their frames.

    Single-frame series: one dataset per slice, in stack order. One multi-frame object: that
    object, frames in its own order.
    """
    files = series.files
    if all(f.number is None for f in series.frames):
        return [_complete(series.headers[f.path]) for f in series.frames], np.arange(len(series.frames))
    if len(files) == 1:
        order = np.argsort([f.number for f in series.frames])
        return [_complete(series.headers[files[0]])], order
    raise InputError(f"{series}: a series of several multi-frame objects; DICOM output supports one multi-frame object per series")


def _headers(series: DicomSeries) -> list[Dataset]:
    return [_complete(series.headers[p]) for p in series.files]


#: Type 2 patient and study attributes that highdicom copies from the sources (empty when absent).
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _complete(header: Dataset) -> Dataset:
    """The source header, or a copy (sharing its elements) with the absent Type 2 patient/study attributes empty."""
    missing = [keyword for keyword in _PATIENT_STUDY if keyword not in header]
    if not missing:
        return header
    out = Dataset(dict(header))
    out.file_meta = header.file_meta
    for keyword in missing:
        setattr(out, keyword, "")
    return out


def _series_number(series: DicomSeries, kind: str) -> int:
    return (series.number or 0) + SERIES_OFFSETS[kind]


def build_seg(sources: list[Dataset], mask: np.ndarray, identity: ModelIdentity, series_number: int) -> Dataset:
    """Binary Segmentation with one segment "tumour" on the source frames."""
    hd = require_highdicom()
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="tumour",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identity.algorithm_sequence(),
        anatomic_regions=[codes.SCT.Brain],
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        content_label="TUMOUR",
        content_description="gpedge tumour mask (thresholded class heatmap)",
        omit_empty_frames=bool(mask.any()),
        **identity.device,
    )
    seg.SeriesDescription = "gpedge tumour segmentation"
    return seg


def build_pmap(sources: list[Dataset], heat: np.ndarray, label: str, identity: ModelIdentity, series_number: int) -> Dataset:
    """Float Parametric Map of the predicted class's heatmap (class activation)."""
    hd = require_highdicom()
    low, high = float(heat.min()), float(heat.max())
    if high <= low:
        high = low + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="CAM",
        lut_explanation=f"{label} class activation"[:64],
        unit=codes.UCUM.NoUnits,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=codes.DCM.ClassActivation,
    )
    pmap = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=heat,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(  # LINEAR_EXACT: heatmap ranges may be narrower than 1
            window_center=(low + high) / 2, window_width=high - low, voi_lut_function="LINEAR_EXACT",
        )],
        content_label="CAM",
        content_description=f"gpedge {label} class activation map"[:64],
        **identity.device,
    )
    pmap.SeriesDescription = f"gpedge {label} heatmap"[:64]
    if "BodyPartExamined" not in pmap:  # an unpaired body part: Laterality (Type 2C) is then not required
        pmap.BodyPartExamined = "BRAIN"
    return pmap


def _class_code(name: str):
    hd = require_highdicom()
    return hd.sr.CodedConcept(value=name[:16], scheme_designator=CLASS_SCHEME, meaning=name[:64])


def build_sr(
    evidence: list[Dataset], seg: Dataset, source_series_uid: str, summary: StudyResult, identity: ModelIdentity,
    series_number: int,
) -> Dataset:
    """Comprehensive SR (TID 1500): predicted class, probabilities, mask volume, model, references."""
    hd = require_highdicom()
    sr = hd.sr
    algorithm = sr.AlgorithmIdentification(
        name=identity.name, version=identity.version, parameters=[f"{k}={v}" for k, v in identity.parameters.items()]
    )
    observer = sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="gpedge", manufacturer_name="gpedge", model_name=identity.name,
            serial_number=identity.package_sha256[:16],
        ),
    )
    predicted = sr.QualitativeEvaluation(name=codes.SCT.Classification, value=_class_code(summary.label))
    tumour = sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=sr.TrackingIdentifier(uid=hd.UID(), identifier="tumour"),
        referenced_segment=sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=1,
            source_series=sr.SourceSeriesForSegmentation(source_series_uid),
        ),
        finding_type=codes.SCT.Neoplasm,
        finding_sites=[sr.FindingSite(anatomic_location=codes.SCT.Brain)],
        algorithm_id=algorithm,
        measurements=[sr.Measurement(
            name=codes.SCT.Volume, value=float(summary.mask_volume_ml or 0.0),
            unit=sr.CodedConcept(*MILLILITRE), algorithm_id=algorithm,
        )],
        qualitative_evaluations=[predicted],
    )
    classes = [
        sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=sr.TrackingIdentifier(uid=hd.UID(), identifier=f"class {name}"[:64]),
            finding_type=_class_code(name),
            algorithm_id=algorithm,
            measurements=[sr.Measurement(
                name=codes.DCM.Probability, value=float(p), unit=codes.UCUM.NoUnits, algorithm_id=algorithm,
            )],
        )
        for name, p in summary.probabilities.items()
    ]
    report = sr.MeasurementReport(
        observation_context=sr.ObservationContext(observer_device_context=observer),
        procedure_reported=sr.CodedConcept(*MRI),
        imaging_measurements=[tumour, *classes],
        title=codes.DCM.ImagingMeasurementReport,
    )
    document = sr.ComprehensiveSR(
        evidence=[*evidence, seg],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="gpedge",
        is_complete=True,
    )
    document.SeriesDescription = "gpedge measurement report"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = CLASS_SCHEME
    scheme.CodingSchemeName = "gpedge model class names"
    scheme.CodingSchemeResponsibleOrganization = "gpedge"
    document.CodingSchemeIdentificationSequence = [scheme]
    return document


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
