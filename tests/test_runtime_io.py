"""Scan readers and writers of gpedge.runtime.io, on real files written in tmp_path."""
from __future__ import annotations

from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from gpedge.errors import InputError
from gpedge.runtime import io

BRATS = ["t1", "t2", "t1ce", "flair"]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0) -> Path:
    """A minimal valid MR DICOM file; (F, H, W) pixels give a multi-frame object."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    pixels = np.asarray(pixels, dtype=np.uint16)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_png_8_and_16_bit_keep_values(tmp_path: Path) -> None:
    for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
        data = _rng().integers(0, peak, size=(40, 56)).astype(dtype)
        path = tmp_path / f"img_{dtype.__name__}.png"
        cv2.imwrite(str(path), data)
        scan = io.read_file(path)
        assert scan.images.shape == (1, 1, 40, 56) and scan.images.dtype == np.float32
        np.testing.assert_array_equal(scan.images[0, 0], data.astype(np.float32))
        assert scan.slices is None and scan.name == path.stem


def test_colour_jpeg_and_tiff_become_grey(tmp_path: Path) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    cv2.imwrite(str(tmp_path / "red.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    grey = io.read_file(tmp_path / "red.jpg").images[0, 0]
    assert grey.shape == (48, 64)
    assert abs(float(grey.mean()) - 0.299 * 200) < 3  # luminance of red, not of blue
    tiff = _rng(1).integers(0, 60000, size=(32, 32)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "scan.tif"), tiff)
    np.testing.assert_array_equal(io.read_file(tmp_path / "scan.tif").images[0, 0], tiff.astype(np.float32))


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_tiff_layouts_opencv_misreads_are_refused(tmp_path: Path, bigtiff: bool, byteorder: str) -> None:
    """Planar colour above 8 bits is refused; interleaved, planar 8-bit and a thumbnail read (multi-page: below)."""
    import tifffile

    grey = _rng(4).integers(0, 60000, size=(40, 36)).astype(np.uint16)
    options = {"bigtiff": bigtiff, "byteorder": byteorder}

    def write(name: str, data: np.ndarray, **kwargs: object) -> Path:
        tifffile.imwrite(tmp_path / name, data, **options, **kwargs)
        return tmp_path / name

    planar = write("planar16.tif", np.stack([grey] * 3), photometric="rgb", planarconfig="separate")
    with pytest.raises(InputError, match="16-bit samples stored as separate colour planes.*PlanarConfiguration 1"):
        io.read_file(planar)
    readable = {
        "contig16.tif": (np.stack([grey] * 3, -1), {"photometric": "rgb", "planarconfig": "contig"}, grey),
        "planar8.tif": (np.stack([grey // 256] * 3).astype(np.uint8),
                        {"photometric": "rgb", "planarconfig": "separate"}, grey // 256),
        "grey16.tif": (grey, {}, grey),
    }
    for name, (data, kwargs, expected) in readable.items():
        np.testing.assert_allclose(io.read_file(write(name, data, **kwargs)).images[0, 0], expected, atol=0.01)
    with tifffile.TiffWriter(tmp_path / "thumb.tif", **options) as writer:
        writer.write(grey)
        writer.write(grey[::4, ::4], subfiletype=1)
    np.testing.assert_array_equal(io.read_file(tmp_path / "thumb.tif").images[0, 0], grey)


@pytest.mark.parametrize("bigtiff", [False, True])
def test_multi_page_tiff_is_a_stack_of_slices(tmp_path: Path, bigtiff: bool) -> None:
    """Each full-resolution page is one slice, in order; thumbnails between them are left out; pages of another
    size and stacks over --max-pixels are refused before decoding."""
    import tifffile

    pages = _rng(5).integers(0, 60000, size=(3, 40, 36)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack", bigtiff=bigtiff)
    scan = io.read_file(tmp_path / "pages.tif")
    assert scan.images.shape == (3, 1, 40, 36) and scan.slices == [0, 1, 2] and scan.volume is None
    np.testing.assert_array_equal(scan.images[:, 0], pages.astype(np.float32))
    with tifffile.TiffWriter(tmp_path / "thumbs.tif", bigtiff=bigtiff) as writer:
        for page in pages:
            writer.write(page, photometric="minisblack")
            writer.write(page[::4, ::4], photometric="minisblack", subfiletype=1)
    np.testing.assert_array_equal(io.read_file(tmp_path / "thumbs.tif").images[:, 0], pages.astype(np.float32))
    with pytest.raises(InputError, match="3 x 40 x 36 = 4,320 pixels, more than the limit"):
        io.read_file(tmp_path / "pages.tif", max_pixels=40 * 36 * 2)
    with tifffile.TiffWriter(tmp_path / "sizes.tif", bigtiff=bigtiff) as writer:
        writer.write(pages[0], photometric="minisblack")
        writer.write(pages[1][:32], photometric="minisblack")
    with pytest.raises(InputError, match="page 2 is 32x36 px, page 1 40x36.*separate files"):
        io.read_file(tmp_path / "sizes.tif")


def test_tiff_directory_loop_ends_the_chain(tmp_path: Path) -> None:
    """A next-directory offset that points back to the first directory is one page, read at once."""
    import tifffile

    grey = _rng(6).integers(0, 60000, size=(40, 36)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "one.tif", grey, byteorder="<")
    data = bytearray((tmp_path / "one.tif").read_bytes())
    first = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[first : first + 2], "little")
    next_at = first + 2 + 12 * count
    assert int.from_bytes(data[next_at : next_at + 4], "little") == 0
    data[next_at : next_at + 4] = first.to_bytes(4, "little")
    (tmp_path / "loop.tif").write_bytes(bytes(data))
    assert len(io._tiff_directories(bytes(data), limit=1000)) == 1
    np.testing.assert_array_equal(io.read_file(tmp_path / "loop.tif").images[0, 0], grey.astype(np.float32))


def test_arrays_of_the_wrong_kind_say_what_was_passed() -> None:
    """Arrays that are not raw intensities in a supported layout get their dtype or layout named."""
    with pytest.raises(InputError, match="got a bool array of shape \\(40, 48\\)"):
        io.from_array(np.ones((40, 48), bool))
    with pytest.raises(InputError, match="\\(40, 48, 3\\) is a channels-last colour image.*luminance"):
        io.from_array(np.ones((40, 48, 3), np.uint8))
    assert io.from_array(np.ones((3, 40, 48), np.uint8)).images.shape == (1, 3, 40, 48)


def test_dicom_rescale_and_monochrome1(tmp_path: Path) -> None:
    raw = _rng(2).integers(10, 4000, size=(24, 20)).astype(np.uint16)
    scan = io.read_file(write_dicom(tmp_path / "a.dcm", raw, slope=2.0, intercept=-100.0))
    np.testing.assert_allclose(scan.images[0, 0], raw * 2.0 - 100.0)
    inverted = io.read_file(write_dicom(tmp_path / "b.dcm", raw, photometric="MONOCHROME1")).images[0, 0]
    np.testing.assert_allclose(inverted, raw.max() + raw.min() - raw.astype(np.float32))
    assert np.argmax(inverted) == np.argmin(raw)


def test_dicom_palette_colour_goes_through_its_lookup_table(tmp_path: Path) -> None:
    """PALETTE COLOR pixels are indices: the grey image is the table's colours, not the indices."""
    indices = np.tile(np.arange(64, dtype=np.uint16) * 4, (40, 1))
    ds = pydicom.dcmread(write_dicom(tmp_path / "p.dcm", indices))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    red = (np.arange(256)[::-1] * 257).astype(np.uint16)
    green, blue = np.full(256, 1000, np.uint16), np.zeros(256, np.uint16)
    for colour, table in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.tobytes())
    ds.save_as(tmp_path / "p.dcm")
    grey = io.read_file(tmp_path / "p.dcm").images[0, 0]
    np.testing.assert_allclose(grey, 0.299 * red[indices].astype(np.float32) + 0.587 * 1000, rtol=1e-6)


def test_dicom_multiframe_gives_one_slice_per_frame(tmp_path: Path) -> None:
    frames = _rng(3).integers(0, 1000, size=(3, 20, 18)).astype(np.uint16)
    scan = io.read_file(write_dicom(tmp_path / "multi", frames, slope=0.5))  # no suffix: found by magic bytes
    assert scan.images.shape == (3, 1, 20, 18) and scan.slices == [0, 1, 2]
    np.testing.assert_allclose(scan.images[:, 0], frames * 0.5)


def _ras_volume() -> np.ndarray:
    """(X, Y, Z) RAS volume with a marker in the patient's right-anterior corner of every slice."""
    vol = np.ones((30, 26, 5), np.float32)
    vol[-4:, -4:, :] = 100.0  # high x = right, high y = anterior
    return vol


def test_nifti_radiological_display_orientation_is_independent_of_storage(tmp_path: Path) -> None:
    vol = _ras_volume()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "ras.nii.gz")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(vol[::-1, ::-1].copy(), lps), tmp_path / "lps.nii")
    ras, flipped = io.read_file(tmp_path / "ras.nii.gz"), io.read_file(tmp_path / "lps.nii")
    assert ras.images.shape == (5, 1, 26, 30) and ras.slices == list(range(5))
    np.testing.assert_array_equal(ras.images, flipped.images)
    # radiological: anterior at the top, patient's right on the viewer's left
    assert (ras.images[:, 0, :4, :4] == 100).all() and (ras.images[:, 0, -4:, -4:] == 1).all()


def test_nifti_colour_voxels_become_grey_and_complex_ones_are_refused(tmp_path: Path) -> None:
    """RGB24 voxels get the colour images' grey rule; complex voxels are refused, not cut to their real part."""
    vol = _ras_volume()
    grey = io.read_file(_save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "grey.nii.gz")).images
    rgb = np.zeros(vol.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = vol, vol // 2, 0
    colour = io.read_file(_save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii.gz")).images
    np.testing.assert_allclose(colour, grey * 0.299 + (grey // 2) * 0.587, rtol=1e-6)
    complex_path = _save(nib.Nifti1Image(vol.astype(np.complex64) * (1 + 1j), np.eye(4)), tmp_path / "c.nii.gz")
    with pytest.raises(InputError, match="c.nii.gz: NIfTI voxels are complex.*save the magnitude"):
        io.read_file(complex_path)


def test_nifti_2d_slice_reads_as_one_axial_slice_and_gets_its_mask_back(tmp_path: Path) -> None:
    vol = _ras_volume()
    single = io.read_file(_save(nib.Nifti1Image(vol[..., :1], np.eye(4)), tmp_path / "one.nii.gz"))
    flat = io.read_file(_save(nib.Nifti1Image(vol[..., 0], np.eye(4)), tmp_path / "flat.nii.gz"))
    assert flat.images.shape == (1, 1, 26, 30) and flat.slices == [0]
    np.testing.assert_array_equal(flat.images, single.images)
    io.write_mask_nifti(tmp_path / "mask.nii.gz", flat.images[:, 0] > 50, flat.volume)
    back = np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj)
    np.testing.assert_array_equal(back, (vol[..., 0] > 50).astype(np.uint8))
    with pytest.raises(InputError, match="shape \\(30, 26, 5, 2\\); a 3-D volume or a 2-D slice is needed"):
        io.read_file(_save(nib.Nifti1Image(np.stack([vol, vol], -1), np.eye(4)), tmp_path / "4d.nii.gz"))


def _save(img: nib.Nifti1Image, path: Path) -> Path:
    nib.save(img, path)
    return path


def test_nifti_mask_round_trip_on_source_grid(tmp_path: Path) -> None:
    vol = _rng(4).random((22, 6, 18)).astype(np.float32)  # axial = data axis 1
    affine = np.array([[0, 0, 2.0, 5], [-1.0, 0, 0, 3], [0, 1.5, 0, -7], [0, 0, 0, 1]])
    img = nib.Nifti1Image(vol, affine)
    nib.save(img, tmp_path / "odd.nii.gz")
    scan = io.read_file(tmp_path / "odd.nii.gz")
    io.write_mask_nifti(tmp_path / "mask.nii.gz", scan.images[:, 0] > 0.5, scan.volume)
    back = nib.load(tmp_path / "mask.nii.gz")
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj), (vol > 0.5).astype(np.uint8))
    assert not list(tmp_path.glob("*.tmp"))


def _brats_patient(root: Path, shape=(20, 24, 3)) -> Path:
    folder = root / "BraTS20_Training_001"
    folder.mkdir(parents=True)
    for value, contrast in enumerate(BRATS, start=1):
        nib.save(nib.Nifti1Image(np.full(shape, value * 10.0, np.float32), np.eye(4)),
                 folder / f"{folder.name}_{contrast}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), np.eye(4)), folder / f"{folder.name}_seg.nii.gz")
    return folder


def test_brats_folder_stacks_contrasts_in_model_order(tmp_path: Path) -> None:
    folder = _brats_patient(tmp_path)
    order = ["flair", "t1", "t1ce", "t2"]
    scan = io.load_input(folder, order)
    assert scan.images.shape == (3, 4, 24, 20) and scan.channels == order and scan.name == folder.name
    assert [float(scan.images[0, c, 0, 0]) for c in range(4)] == [40.0, 10.0, 30.0, 20.0]
    single = io.load_input(folder, ["t1ce"])
    assert single.images.shape == (3, 1, 24, 20) and float(single.images.max()) == 30.0
    (folder / f"{folder.name}_flair.nii.gz").unlink()
    with pytest.raises(InputError, match="flair"):
        io.load_input(folder, BRATS)


def test_contrast_mapping(tmp_path: Path) -> None:
    folder = _brats_patient(tmp_path)
    files = {c: folder / f"{folder.name}_{c}.nii.gz" for c in BRATS}
    scan = io.load_input(files, BRATS)
    assert scan.images.shape[1] == 4 and scan.name == folder.name
    with pytest.raises(InputError, match="missing t2.*--t2"):
        io.load_input({c: files[c] for c in ("t1", "t1ce", "flair")}, BRATS)
    nib.save(nib.Nifti1Image(np.ones((20, 24, 4), np.float32), np.eye(4)), tmp_path / "other_t2.nii.gz")
    with pytest.raises(InputError, match="same grid"):
        io.load_input({**files, "t2": tmp_path / "other_t2.nii.gz"}, BRATS)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.png", b"", "empty"),
        ("text.png", b"this is not an image", "not a readable image"),
        ("broken.dcm", b"\x00" * 128 + b"DICM" + b"\x01\x02garbage", "DICOM"),
        ("notes.txt", b"hello", "unsupported file type"),
        ("broken.nii.gz", b"\x1f\x8b\x08\x00garbage", "NIfTI"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        io.read_file(path)
    assert str(path) in str(info.value)


def test_truncated_too_small_and_missing(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".png", _rng(5).integers(0, 255, size=(64, 64)).astype(np.uint8))
    (tmp_path / "cut.png").write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(InputError, match="truncated"):
        io.read_file(tmp_path / "cut.png")
    cv2.imwrite(str(tmp_path / "tiny.png"), np.ones((8, 40), np.uint8))
    with pytest.raises(InputError, match="too small"):
        io.read_file(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="no such file"):
        io.read_file(tmp_path / "absent.png")


def test_channel_count_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="4 channel.*needs 1 \\(t1ce\\)"):
        io.load_input(np.ones((4, 32, 32)), ["t1ce"])
    cv2.imwrite(str(tmp_path / "one.png"), np.ones((32, 32), np.uint8))
    with pytest.raises(InputError, match="needs 4.*--t1"):
        io.load_input(tmp_path / "one.png", BRATS)
    with pytest.raises(InputError, match="NaN"):
        io.load_input(np.full((32, 32), np.nan), ["t1ce"])


def test_expand_paths_skips_outputs_and_finds_patients(tmp_path: Path) -> None:
    _brats_patient(tmp_path / "root")
    for name in ("b.png", "a.png", "a_mask.png", "a_overlay.png"):
        cv2.imwrite(str(tmp_path / "root" / name), np.ones((20, 20), np.uint8))
    found = [p.name for p in io.expand_paths([tmp_path / "root"])]
    assert found == ["BraTS20_Training_001", "a.png", "b.png"]
