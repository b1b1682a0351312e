"""DICOM out: SEG, Parametric Map and SR from ``process_study`` and ``gpedge infer --dicom-out``.

The objects are checked with dicom3tools' ``dciodvfy`` and read back with highdicom; masks and
maps are compared, source frame by source frame, with what the runtime gives for the same volume
read as NIfTI (mapped to the source files through the voxel indices the test wrote, not through
gpedge's geometry code).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dcmtk import dciodvfy, tool
from dicom_series import WrittenSeries, write_series
from mr_series import FLAIR, HGG_VOLUME
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from gpedge.dicom import process_study
from gpedge.errors import GpedgeError
from gpedge.runtime.save import key_slice
from gpedge.runtime.predictor import Predictor
from conftest import EXAMPLES

hd = pytest.importorskip("highdicom", reason="DICOM output needs highdicom (pip install 'gpedge[dicom]')")
DCIODVFY = tool("dciodvfy")


@pytest.fixture(scope="module")
def predictor():
    with Predictor(backend="onnxruntime") as p:
        yield p


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(HGG_VOLUME)
    return np.asarray(img.dataobj), img.affine


def _to_voxels(stack: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Display stack (S, rows, cols): axial, anterior up, patient's right on the left -> NIfTI voxel array.

    Written from the display convention documented in gpedge.runtime.io, with nibabel only.
    """
    ras = stack[:, ::-1, ::-1].transpose(2, 1, 0)
    to_ras = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
    inverse = ornt_transform(axcodes2ornt("RAS"), io_orientation(affine))
    assert to_ras is not None
    return apply_orientation(ras, inverse)


def _at(volume: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    return volume[voxels[..., 0], voxels[..., 1], voxels[..., 2]]


def _content_items(ds) -> list:
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out.extend(_content_items(item))
    return out


def _numbers(sr) -> list[tuple[str, float, str]]:
    """(concept meaning, value, unit code) of every NUM item."""
    found = []
    for item in _content_items(sr):
        if item.ValueType == "NUM":
            value = item.MeasuredValueSequence[0]
            found.append((item.ConceptNameCodeSequence[0].CodeMeaning, float(value.NumericValue),
                          value.MeasurementUnitsCodeSequence[0].CodeValue))
    return found


STORAGES = {
    "shuffled, feet-to-head flipped, columns flipped": dict(flip=(True, False, True), shuffle_seed=3),
    "rows and columns swapped, rows flipped": dict(swap_inplane=True, flip=(False, True, False), shuffle_seed=4),
    "enhanced multi-frame, frames shuffled": dict(enhanced=True, shuffle_seed=5),
    "coronal, reslices to axial": dict(slice_axis=1, flip=(False, True, True), shuffle_seed=6),
}


@pytest.mark.parametrize("storage", list(STORAGES))
def test_seg_pmap_sr_round_trip(tmp_path: Path, predictor, volume, storage: str) -> None:
    data, affine = volume
    first = (60, 100, 0) if storage.startswith("coronal") else (0, 0, 6)
    last = (180, 140, 24) if storage.startswith("coronal") else (240, 240, 18)
    data = data[first[0]:last[0], first[1]:last[1], first[2]:last[2]]
    affine = affine @ np.array([[1, 0, 0, first[0]], [0, 1, 0, first[1]], [0, 0, 1, first[2]], [0, 0, 0, 1]], float)
    written = write_series(tmp_path / "in", data, affine, description=FLAIR, **STORAGES[storage])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ref.nii.gz")
    reference = predictor.predict(tmp_path / "ref.nii.gz")
    nifti_mask = _to_voxels(np.stack([r.mask for r in reference]), affine)
    key = key_slice(reference)
    nifti_heat = _to_voxels(np.stack([r.heatmaps[key.class_index] for r in reference]), affine)
    assert 0 < nifti_mask.sum() < nifti_mask.size  # a mask that can be wrong in both directions

    result = process_study(predictor, tmp_path / "in", tmp_path / "out")
    assert set(result.paths) == {"seg", "pmap", "sr"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in result.paths.values())
    assert result.label == key.label and result.probabilities == key.probabilities
    assert result.mask_volume_ml == pytest.approx(nifti_mask.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000)
    if DCIODVFY:
        for path in result.paths.values():
            assert dciodvfy(path) == [], path

    _check_seg(result.paths["seg"], written, nifti_mask)
    _check_pmap(result.paths["pmap"], written, nifti_heat)
    _check_sr(result.paths["sr"], written, result, predictor)


def _check_seg(path: Path, written: WrittenSeries, nifti_mask: np.ndarray) -> None:
    seg = hd.seg.segread(path)
    expected = _at(nifti_mask, written.voxels).astype(np.uint8)
    if written.frame_numbers[0] is None:
        got = seg.get_pixels_by_source_instance(written.sop_uids, segment_numbers=[1], assert_missing_frames_are_empty=True)
    else:
        got = seg.get_pixels_by_source_frame(written.sop_uids[0], source_frame_numbers=written.frame_numbers,
                                             segment_numbers=[1], assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(got[..., 0], expected)
    source = pydicom.dcmread(written.files[0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == written.uid
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "tumour" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert "gp-unet" in algorithm.AlgorithmName and "package_sha256=" in algorithm.AlgorithmParameters


def _check_pmap(path: Path, written: WrittenSeries, nifti_heat: np.ndarray) -> None:
    pmap = pydicom.dcmread(path)
    frames = pmap.pixel_array.reshape(-1, pmap.Rows, pmap.Columns)
    expected = _at(nifti_heat, written.voxels)
    positions = {}
    for k, (file, number) in enumerate(zip(written.files, written.frame_numbers)):
        source = pydicom.dcmread(file, stop_before_pixels=True)
        ipp = (source.ImagePositionPatient if number is None else
               source.PerFrameFunctionalGroupsSequence[number - 1].PlanePositionSequence[0].ImagePositionPatient)
        positions[tuple(round(float(v), 3) for v in ipp)] = k
    assert len(frames) == len(positions)
    for f, item in enumerate(pmap.PerFrameFunctionalGroupsSequence):
        k = positions[tuple(round(float(v), 3) for v in item.PlanePositionSequence[0].ImagePositionPatient)]
        np.testing.assert_allclose(frames[f], expected[k], rtol=0, atol=1e-6)
    mapping = pmap.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "130402"  # class activation


def _check_sr(path: Path, written: WrittenSeries, result, predictor) -> None:
    sr = pydicom.dcmread(path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    numbers = _numbers(sr)
    volume = [v for name, v, unit in numbers if name == "Volume"]
    assert volume == [pytest.approx(result.mask_volume_ml, rel=1e-6)]
    probabilities = [v for name, v, unit in numbers if name == "Probability"]
    assert probabilities == pytest.approx([result.probabilities[c] for c in predictor.classes], rel=1e-6)
    items = _content_items(sr)
    seg_uid = pydicom.dcmread(result.paths["seg"], stop_before_pixels=True).SOPInstanceUID
    referenced = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"]
    assert seg_uid in referenced
    assert written.uid in [i.UID for i in items if i.ValueType == "UIDREF"]
    coded = [(i.ConceptNameCodeSequence[0].CodeValue, i.ConceptCodeSequence[0]) for i in items if i.ValueType == "CODE"]
    assert [(c.CodeValue, c.CodingSchemeDesignator) for name, c in coded if name == "278201002"] == [(result.label, "99GPEDGE")]
    findings = [c.CodeValue for name, c in coded if name == "121071"]  # finding type of each group
    assert findings == ["108369006", *predictor.classes]
    evidence = {s.SeriesInstanceUID: s for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
    assert written.uid in evidence
    assert {i.ReferencedSOPInstanceUID for i in evidence[written.uid].ReferencedSOPSequence} == set(written.sop_uids)


def test_no_partial_set_when_a_write_fails(tmp_path: Path, predictor, volume) -> None:
    from gpedge.dicom import read_study
    from gpedge.dicom.writers import default_stem

    data, affine = volume
    write_series(tmp_path / "in", data[..., 8:12], affine, description=FLAIR)
    out = tmp_path / "out"
    (out / f"{default_stem(read_study(tmp_path / 'in', predictor.channels))}_pmap.dcm").mkdir(parents=True)
    with pytest.raises(GpedgeError, match="already exists and was not written by this call"):
        process_study(predictor, tmp_path / "in", out)
    with pytest.raises(GpedgeError, match="cannot write .*No output of this input was kept"):
        process_study(predictor, tmp_path / "in", out, overwrite=True)
    assert [p.name for p in out.iterdir()] == [f"{default_stem(read_study(tmp_path / 'in', predictor.channels))}_pmap.dcm"]


def test_sources_without_type_2_patient_and_study_attributes(tmp_path: Path, predictor, volume) -> None:
    """Anonymised series often lack birth date, accession number...: the results are still valid."""
    data, affine = volume
    written = write_series(tmp_path / "in", data[..., 8:12], affine, description=FLAIR)
    for path in written.files:
        ds = pydicom.dcmread(path)
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
            delattr(ds, keyword)
        ds.save_as(path)
    result = process_study(predictor, tmp_path / "in", tmp_path / "out")
    if DCIODVFY:
        for path in result.paths.values():
            assert dciodvfy(path) == [], path
    assert "PatientBirthDate" not in pydicom.dcmread(written.files[0])


def test_empty_mask_gives_valid_objects(tmp_path: Path, predictor) -> None:
    """A series without tumour (a small bright disc): empty mask, all SEG frames kept, empty."""
    yy, xx = np.mgrid[:64, :64]
    disc = (((yy - 32) ** 2 + (xx - 32) ** 2) < 36).astype(np.int16) * 500
    written = write_series(tmp_path / "in", np.repeat(disc[..., None], 4, axis=2), np.diag([-1.0, -1.0, 1.0, 1.0]),
                           description=FLAIR)
    result = process_study(predictor, tmp_path / "in", tmp_path / "out")
    assert result.mask_volume_ml == 0, "this test needs a study without mask"
    assert len(predictor.predict(tmp_path / "in")) == 4  # the Predictor reads DICOM folders too
    if DCIODVFY:
        for path in result.paths.values():
            assert dciodvfy(path) == [], path
    seg = hd.seg.segread(result.paths["seg"])
    got = seg.get_pixels_by_source_instance(written.sop_uids, segment_numbers=[1])
    assert got.shape == (4, 64, 64, 1) and not got.any()


def test_a_study_without_a_diagnosis_gets_no_dicom_results(tmp_path: Path, predictor, volume) -> None:
    """Every slice out of distribution (noise around the head): no SEG/SR stating a class the runtime does not
    diagnose, a clear error, and another study of the same call still gets its results."""
    data, affine = volume
    part = data[..., 8:12].astype(np.float32)
    noise = np.random.default_rng(5).uniform(0, part.max(), part.shape) * (part == 0)
    write_series(tmp_path / "scans" / "noisy", (part + noise).astype(np.int16), affine, description=FLAIR)
    results = predictor.predict(tmp_path / "scans" / "noisy")
    assert all(r.out_of_distribution for r in results) and any(r.is_tumour for r in results), "test needs these"
    with pytest.raises(GpedgeError, match="every slice is out of distribution .* no DICOM results are written"):
        process_study(predictor, tmp_path / "scans" / "noisy", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    write_series(tmp_path / "scans" / "good", data[..., 8:12], affine, description=FLAIR, series_number=7)
    command = [sys.executable, "-m", "gpedge.cli", "infer", str(tmp_path / "scans"), "--json",
               "--dicom-out", str(tmp_path / "dicom"), "--backend", "onnxruntime"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "every slice is out of distribution" in errors[0], done.stderr
    written = sorted(p.name for p in (tmp_path / "dicom").iterdir())
    assert len(written) == 3, written
    assert {json.loads(line)["outputs"]["dicom_sr"] for line in done.stdout.splitlines()} == {
        str(tmp_path / "dicom" / name) for name in written if name.endswith("_sr.dcm")}


def test_missing_highdicom_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpedge.dicom.identity import require_highdicom

    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(GpedgeError, match=r"pip install 'gpedge\[dicom\]'"):
        require_highdicom()


def test_infer_cli_dicom_folder_and_dicom_out(tmp_path: Path, volume) -> None:
    data, affine = volume
    written = write_series(tmp_path / "scans" / "patient" / "flair", data[..., 4:10], affine, shuffle_seed=9, description=FLAIR)
    write_series(tmp_path / "scans" / "patient" / "gappy", data[..., :6], affine, skip=(2,), description="FLAIR gappy")
    shutil.copy(EXAMPLES / "hgg_flair.dcm", tmp_path / "scans" / "secondary.dcm")  # no patient geometry
    command = [sys.executable, "-m", "gpedge.cli", "infer", str(tmp_path / "scans"), "--json",
               "--dicom-out", str(tmp_path / "dicom"), "--backend", "onnxruntime"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2, done.stderr
    assert any("slice(s) missing" in e and "gappy" in e for e in errors)
    assert any("secondary.dcm" in e and "no patient geometry" in e for e in errors)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    series_records = [r for r in records if FLAIR in r["file"]]
    assert [r["slice"] for r in series_records] == list(range(6))
    assert [r for r in records if r["file"].endswith("secondary.dcm")] == []  # its outputs failed: no partial result
    outputs = series_records[0]["outputs"]
    assert set(outputs) == {"dicom_seg", "dicom_pmap", "dicom_sr"}
    seg = pydicom.dcmread(outputs["dicom_seg"], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == written.uid
    if DCIODVFY:
        for path in outputs.values():
            assert dciodvfy(Path(path)) == [], path


def test_dciodvfy_is_here_or_skipped() -> None:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: DICOM objects were not validated")
