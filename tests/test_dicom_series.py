"""DICOM series in: discovery, slice order, display orientation (same as NIfTI), geometry checks,
compressed transfer syntaxes, channel mapping. Real DICOM files written with pydicom."""
from __future__ import annotations

import io as bytes_io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series import write_series
from mr_series import HGG_VOLUME
from pydicom.encaps import encapsulate
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless, generate_uid

from gpedge.dicom import find_series, read_study, studies
from gpedge.dicom.channels import classify
from gpedge.errors import InputError
from gpedge.runtime import io
from conftest import EXAMPLES


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    """The bundled example volume (240 x 240 x 24, LPS-stored) and its RAS affine."""
    img = nib.load(HGG_VOLUME)
    return np.asarray(img.dataobj), img.affine


def _nifti_images(tmp_path: Path, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    path = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return io.read_nifti(path).images


STORAGES = {
    "axial": {},
    "axial shuffled, feet-to-head flipped, columns flipped": dict(flip=(True, False, True), shuffle_seed=3),
    "axial rows and columns swapped, rows flipped": dict(swap_inplane=True, flip=(False, True, False), shuffle_seed=4),
    "enhanced multi-frame, frames shuffled": dict(enhanced=True, shuffle_seed=5),
    "coronal": dict(slice_axis=1, flip=(False, True, False), shuffle_seed=6),
}


@pytest.mark.parametrize("storage", list(STORAGES))
def test_series_reaches_the_network_as_the_nifti_does(tmp_path: Path, volume, storage: str) -> None:
    data, affine = volume
    if storage == "coronal":  # keep the reslice test small: 40 coronal slices
        data, affine = data[100:140, 80:120, :], affine @ _shift(100, 80, 0)
    write_series(tmp_path / "dicom", data, affine, **STORAGES[storage])
    scan = read_study(tmp_path / "dicom", ["t1ce"]).load()
    expected = _nifti_images(tmp_path, data, affine)
    assert scan.images.shape == expected.shape
    np.testing.assert_array_equal(scan.images, expected)
    assert scan.slices == list(range(expected.shape[0])) and scan.channels == ["t1ce"]


def _shift(i: int, j: int, k: int) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = (i, j, k)
    return out


def test_files_without_suffix_in_nested_folders_are_found(tmp_path: Path, volume) -> None:
    data, affine = volume
    written = write_series(tmp_path / "study" / "a" / "b", data[..., :6], affine, shuffle_seed=1)
    (tmp_path / "study" / "notes.txt").write_text("not DICOM")
    (tmp_path / "study" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 8)  # skipped or reported, never read as an image
    series = find_series([tmp_path / "study" / "a"])
    assert len(series) == 1 and series[0].uid == written.uid
    assert sorted(series[0].files) == sorted(written.files)
    along = [np.dot(f.position, series[0].grid.normal) for f in series[0].frames]
    assert np.all(np.diff(along) > 0)  # ordered along the slice normal, whatever the file names say
    assert [f.path for f in series[0].frames] != sorted(written.files)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(skip=(3,)), r"1 slice\(s\) missing between"),
        (dict(skip=(3, 4)), r"2 slice\(s\) missing between"),
        (dict(duplicate=2), "lie at the same position"),
    ],
)
def test_gaps_and_duplicates_are_refused(tmp_path: Path, volume, kwargs: dict, message: str) -> None:
    data, affine = volume
    write_series(tmp_path / "s", data[..., :8], affine, shuffle_seed=2, **kwargs)
    with pytest.raises(InputError, match=message) as err:
        find_series([tmp_path / "s"])
    assert str(tmp_path / "s") in str(err.value)


def test_copies_of_one_instance_are_read_once(tmp_path: Path, volume) -> None:
    """The same SOPInstanceUID in several files (an export that copied a file) is one slice, not a repeat."""
    import shutil

    data, affine = volume
    written = write_series(tmp_path / "s", data[..., :6], affine, shuffle_seed=2)
    expected = read_study(tmp_path / "s", ["t1ce"]).load().images
    (tmp_path / "s" / "copies").mkdir()
    for path in written.files[:2]:
        shutil.copy(path, tmp_path / "s" / "copies" / f"copy_{path.name}")
    (series,) = find_series([tmp_path / "s"])
    assert len(series.frames) == 6
    np.testing.assert_array_equal(read_study(tmp_path / "s", ["t1ce"]).load().images, expected)
    # without patient geometry each file is its own image: copies named on the command line are each answered
    copies = [shutil.copy(EXAMPLES / "hgg_flair.dcm", tmp_path / name) for name in ("a.dcm", "b.dcm")]
    assert [s.files for s in find_series(copies)] == [[Path(c)] for c in copies]


def test_inconsistent_orientation_spacing_and_size_are_refused(tmp_path: Path, volume) -> None:
    data, affine = volume
    edits = {
        "orientation": ("ImageOrientationPatient", [0, 1, 0, 0, 0, -1], "different orientations"),
        "spacing": ("PixelSpacing", [0.5, 0.5], "different pixel spacings"),
        "size": ("Rows", 120, "different sizes"),
    }
    for name, (keyword, value, message) in edits.items():
        written = write_series(tmp_path / name, data[..., :5], affine)
        ds = pydicom.dcmread(written.files[2])
        setattr(ds, keyword, value)
        ds.save_as(written.files[2])
        with pytest.raises(InputError, match=message):
            find_series([tmp_path / name])


def test_sheared_stack_is_refused(tmp_path: Path, volume) -> None:
    data, affine = volume
    sheared = affine.copy()
    sheared[0, 2] = 0.5  # each slice shifted 0.5 mm sideways: a gantry-tilt-like stack
    write_series(tmp_path / "s", data[..., :5], sheared)
    with pytest.raises(InputError, match="not stacked along their normal"):
        find_series([tmp_path / "s"])


def test_sagittal_isotropic_is_resliced_and_thick_sagittal_refused(tmp_path: Path, volume) -> None:
    data, affine = volume
    data, affine = data[100:130, 90:130, :], affine @ _shift(100, 90, 0)
    write_series(tmp_path / "iso", data, affine, slice_axis=0, shuffle_seed=7)
    scan = read_study(tmp_path / "iso", ["t1ce"]).load()
    np.testing.assert_array_equal(scan.images, _nifti_images(tmp_path, data, affine))
    thick = affine @ np.diag([5.0, 1.0, 1.0, 1.0])  # 5 mm between sagittal slices, 1 mm pixels
    write_series(tmp_path / "thick", data, thick, slice_axis=0)
    with pytest.raises(InputError, match="sagittal acquisition.*send an axial series or a 3-D acquisition"):
        find_series([tmp_path / "thick"])


def test_localiser_and_derived_objects_are_skipped(tmp_path: Path, volume) -> None:
    data, affine = volume
    good = write_series(tmp_path / "s" / "t1ce", data[..., :4], affine)
    loc = write_series(tmp_path / "s" / "loc", data[..., :3], affine, description="localizer")
    for path in loc.files:
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1] if path == loc.files[0] else ds.ImageOrientationPatient
        ds.save_as(path)
    assert [s.uid for s in find_series([tmp_path / "s"])] == [good.uid]


def _j2k(path: Path, out: Path) -> None:
    """Re-encode a file's pixel data as lossless JPEG 2000 with Pillow."""
    from PIL import Image

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.uint16)
    buffer = bytes_io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG2000", irreversible=False, no_jp2=True)
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(out)


def _dcmcjpeg_lossless(source: Path, target: Path) -> None:
    """JPEG Lossless (process 14, selection value 1), as PACS archives store MR, with dcmtk's encoder."""
    import subprocess

    from dcmtk import need, tool

    need("dcmcjpeg")
    target.mkdir()
    for path in source.iterdir():
        subprocess.run([tool("dcmcjpeg"), "+e1", str(path), str(target / path.name)], check=True, capture_output=True)


@pytest.mark.parametrize("syntax", ["RLE Lossless", "JPEG-LS Lossless", "JPEG 2000 Lossless", "JPEG Lossless SV1"])
def test_compressed_series_decode_to_the_same_values(tmp_path: Path, volume, syntax: str) -> None:
    from pydicom.pixels import get_decoder

    uid = {"RLE Lossless": RLELossless, "JPEG-LS Lossless": JPEGLSLossless, "JPEG 2000 Lossless": JPEG2000Lossless,
           "JPEG Lossless SV1": JPEGLosslessSV1}[syntax]
    if not get_decoder(uid).is_available:
        pytest.skip(f"no installed pydicom decoder for {syntax}")
    data, affine = volume
    data = data[60:180, 60:180, 8:12]
    plain = write_series(tmp_path / "plain", data, affine, shuffle_seed=1)
    if uid == JPEG2000Lossless:
        (tmp_path / "packed").mkdir()
        for path in plain.files:
            _j2k(path, tmp_path / "packed" / path.name)
    elif uid == JPEGLosslessSV1:
        _dcmcjpeg_lossless(tmp_path / "plain", tmp_path / "packed")
    else:
        write_series(tmp_path / "packed", data, affine, shuffle_seed=1, transfer_syntax=uid)
    assert pydicom.dcmread(next((tmp_path / "packed").iterdir())).file_meta.TransferSyntaxUID == uid
    expected = read_study(tmp_path / "plain", ["t1ce"]).load().images
    np.testing.assert_array_equal(read_study(tmp_path / "packed", ["t1ce"]).load().images, expected)


def test_undecodable_transfer_syntax_names_it_and_the_package(tmp_path: Path, volume) -> None:
    from pydicom.pixels import get_decoder

    candidates = [JPEGLosslessSV1, HTJ2KLossless, JPEGLSLossless, JPEG2000Lossless]
    syntax = next((uid for uid in candidates if not get_decoder(uid).is_available), None)
    if syntax is None:
        pytest.skip("every candidate transfer syntax has a decoder installed here")
    data, affine = volume
    written = write_series(tmp_path / "s", data[..., :2], affine)
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\0" * 64])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path)
    with pytest.raises(InputError) as err:
        read_study(tmp_path / "s", ["t1ce"]).load()
    message = str(err.value)
    assert syntax.name in message and str(syntax) in message and str(written.files[0].parent) in message
    missing = get_decoder(syntax).missing_dependencies
    assert "pip install" in message and all(dep.split(" - ")[0] in message for dep in missing)


def test_install_hint_names_the_extra_and_the_pypi_distributions() -> None:
    """gpedge[dicom] first where one of its plugins decodes the syntax; pip's name for GDCM (pydicom gives the import
    name); the plugins gpedge does not install are named as they are."""
    from gpedge.dicom.pixels import install_hint

    jpeg_lossless = ["gdcm - requires gdcm>=3.0.10", "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"]
    assert install_hint(jpeg_lossless) == (
        "install a decoder (pip install 'gpedge[dicom]' or pip install \"python-gdcm>=3.0.10\" or "
        "pip install \"pylibjpeg>=2.0\" \"pylibjpeg-libjpeg>=2.1\")")
    htj2k = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.4"]
    assert install_hint(htj2k) == 'install a decoder (pip install "pylibjpeg>=2.0" "pylibjpeg-openjpeg>=2.4")'


@pytest.mark.parametrize(
    ("names", "contrast"),
    [
        (["AX T1 POST GD", "T1+C", "T1 Gd", "MPRAGE post", "t1_mprage_tra_post", "T1CE", "AX_T1_GD", "sag 3D T1 C+",
          "T1 FS post-gad", "t1_vibe_fs_tra_ce"], "t1ce"),
        (["T1 pre", "t1_se_tra", "MPRAGE", "T1W", "AX T1 pre-contrast", "T1 postop"], "t1"),
        (["t2_tse_tra", "T2W AX", "T2 propeller"], "t2"),
        (["T2 FLAIR", "t2_tirm_tra_dark-fluid", "AX FLAIR"], "flair"),
        (["T2*", "T2 star GRE", "DWI", "ADC", "t2_swi", ""], None),
    ],
)
def test_default_channel_rules(names: list[str], contrast: str | None) -> None:
    from gpedge.dicom.series import DicomSeries

    for name in names:
        series = DicomSeries("1.2", "1", None, name, "", 1, [], {})
        assert classify(series) == contrast, name


BRATS = ["t1", "t2", "t1ce", "flair"]


@pytest.fixture()
def four_contrasts(tmp_path: Path, volume) -> tuple[Path, dict[str, str]]:
    """One study with T1, T1CE, T2, FLAIR on one grid (intensity x1..x4) plus a DWI series, some stored flipped."""
    data, affine = volume
    data = data[80:160, 80:160, 10:14]
    study, frame = generate_uid(), generate_uid()
    uids = {}
    for factor, (name, channel) in enumerate(
        [("t1_se_tra", "t1"), ("T2W AX", "t2"), ("AX T1 POST GD", "t1ce"), ("AX FLAIR", "flair")], start=1
    ):
        flip = (factor % 2 == 0, factor == 3, False)
        uids[channel] = write_series(tmp_path / "study" / channel, data * factor, affine, description=name,
                                     study_uid=study, frame_of_reference_uid=frame, flip=flip, series_number=factor).uid
    write_series(tmp_path / "study" / "dwi", data, affine, description="ep2d_diff DWI", study_uid=study,
                 frame_of_reference_uid=frame)
    return tmp_path / "study", uids


def test_contrasts_are_stacked_in_model_order(four_contrasts) -> None:
    folder, uids = four_contrasts
    study = read_study(folder, BRATS)
    assert {c: s.uid for c, s in study.series.items()} == {c: uids[c] for c in BRATS}
    scan = study.load()
    assert scan.channels == BRATS
    factors = {"t1": 1, "t2": 2, "t1ce": 3, "flair": 4}
    for c, name in enumerate(BRATS):
        np.testing.assert_array_equal(scan.images[:, c], scan.images[:, 0] * factors[name])
    t1ce_only = read_study(folder, ["t1ce"]).load()
    np.testing.assert_array_equal(t1ce_only.images[:, 0], scan.images[:, 2])


def test_channel_overrides_by_uid_and_pattern(four_contrasts) -> None:
    folder, uids = four_contrasts
    study = read_study(folder, ["t1ce"], {"t1ce": uids["flair"]})
    assert study.series["t1ce"].uid == uids["flair"]
    assert read_study(folder, ["t1ce"], ["t1ce=diff"]).series["t1ce"].description == "ep2d_diff DWI"
    with pytest.raises(InputError, match="no series matches t1ce=nothing-like-this"):
        read_study(folder, ["t1ce"], ["t1ce=nothing-like-this"])
    with pytest.raises(InputError, match="the model's channels are t1ce"):
        read_study(folder, ["t1ce"], ["t2=T2"])


def test_ambiguous_missing_and_mismatched_channels_are_refused(tmp_path: Path, four_contrasts, volume) -> None:
    folder, uids = four_contrasts
    series = find_series([folder])
    found, problems = studies(series, BRATS)
    assert len(found) == 1 and not problems
    without_flair = [s for s in series if s.uid != uids["flair"]]
    _, problems = studies(without_flair, BRATS)
    assert len(problems) == 1 and "no flair series" in str(problems[0]) and "--series flair=" in str(problems[0])
    _, problems = studies(series, BRATS, {"t2": "AX"})  # "AX" matches the T2, T1CE and FLAIR names
    assert "3 series match t2" in str(problems[0])
    other_frame = [s if s.uid != uids["t2"] else _with(s, frame_of_reference_uid="9.9.9") for s in series]
    _, problems = studies(other_frame, BRATS)
    assert "different frames of reference" in str(problems[0])
    data, affine = volume
    write_series(tmp_path / "shifted", data[80:160, 80:160, 10:14] * 2, affine @ _shift(1, 0, 0),
                           description="T2W AX", study_uid=series[0].study_uid,
                           frame_of_reference_uid=series[0].frame_of_reference_uid)
    moved = [s for s in series if s.uid != uids["t2"]] + [s for s in find_series([tmp_path / "shifted"])]
    _, problems = studies(moved, BRATS)
    assert "not on the same voxel grid" in str(problems[0]) and "(t2)" in str(problems[0])
    assert str(tmp_path / "shifted") in str(problems[0])


def _with(series, **changes):
    from dataclasses import replace

    return replace(series, **changes)


def test_one_channel_model_takes_every_matching_series(tmp_path: Path, volume) -> None:
    data, affine = volume
    study = generate_uid()
    write_series(tmp_path / "a", data[..., :3], affine, description="AX T1 POST", study_uid=study)
    write_series(tmp_path / "b", data[..., 3:6], affine, description="T1+C repeat", study_uid=study)
    found, problems = studies(find_series([tmp_path]), ["t1ce"])
    assert len(found) == 2 and not problems
    with pytest.raises(InputError, match="holds 2 inputs"):
        read_study(tmp_path, ["t1ce"])


def test_single_files_keep_working(tmp_path: Path, volume) -> None:
    """A geometry-less example file is read as stored; a T2-named series is refused for a T1CE model."""
    example = EXAMPLES / "hgg_t1ce.dcm"
    scan = io.read_file(example)
    assert scan.images.shape == (1, 1, 240, 240) and scan.slices is None and scan.name == "hgg_t1ce"
    np.testing.assert_array_equal(scan.images[0, 0], pydicom.dcmread(example).pixel_array.astype(np.float32))
    data, affine = volume
    written = write_series(tmp_path / "t2", data[..., :2], affine, description="t2_tse_tra")
    with pytest.raises(InputError, match=r"no t1ce series.*t2_tse_tra.*-> t2.*--series t1ce="):
        read_study(written.files[0], ["t1ce"])
    assert io.read_file(written.files[0]).images.shape == (1, 1, 240, 240)  # named explicitly (e.g. --t1ce): read


def test_file_without_part10_header_says_how_to_rewrite_it(tmp_path: Path, volume) -> None:
    """A data-set-only file (no preamble, no File Meta) gets a clear error; dcmtk's dcmconv makes it readable."""
    import subprocess

    from dcmtk import tool

    data, affine = volume
    (path,) = write_series(tmp_path / "s", data[..., :1], affine).files
    ds = pydicom.dcmread(path)
    ds.preamble = None
    del ds.file_meta
    bare = tmp_path / "bare.dcm"
    ds.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    with pytest.raises(InputError, match="bare.dcm: not a DICOM Part 10 file.*dcmconv IN OUT"):
        io.read_file(bare)
    if tool("dcmconv") is not None:
        subprocess.run([tool("dcmconv"), str(bare), str(tmp_path / "fixed.dcm")], check=True, capture_output=True)
        np.testing.assert_array_equal(io.read_file(tmp_path / "fixed.dcm").images, io.read_file(path).images)
