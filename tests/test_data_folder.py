"""Image-folder reader and format detection."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpedge.data import detect_format, open_dataset
from gpedge.errors import DataError


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("glioma", "No_Tumor", "meningioma"):
        (root / cls).mkdir(parents=True)
    cv2.imwrite(str(root / "glioma" / "g1.png"), rng.integers(0, 255, (20, 24), dtype=np.uint8))
    mask = np.zeros((20, 24), np.uint8)
    mask[4:9, 5:10] = 255
    cv2.imwrite(str(root / "glioma" / "g1_mask.png"), mask)
    cv2.imwrite(str(root / "glioma" / "g2.tif"), rng.integers(0, 60000, (20, 24), dtype=np.uint16))
    colour = np.zeros((20, 24, 3), np.uint8)
    colour[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(root / "No_Tumor" / "n1.png"), colour)
    cv2.imwrite(str(root / "meningioma" / "m1.jpg"), rng.integers(0, 255, (20, 24), dtype=np.uint8))
    (root / "meningioma" / "notes.txt").write_text("ignored")
    return root


def test_classes_labels_and_images(tmp_path):
    root = make_folder(tmp_path / "images")
    ds = open_dataset(root)
    assert ds.format == "folder" and ds.class_names == ["No_Tumor", "glioma", "meningioma"]
    assert ds.no_tumour_class == 0 and ds.channels == ["image"]
    assert [(r.patient, r.label) for r in ds.records] == [("n1", 0), ("g1", 1), ("g2", 2 - 1), ("m1", 2)]
    g1 = ds[1]
    assert g1["image"].shape == (1, 20, 24) and g1["image"].max() == pytest.approx(1.0)
    assert g1["mask"].sum() == 25 and g1["mask"].max() == 1
    g2 = ds[2]
    raw = cv2.imread(str(root / "glioma" / "g2.tif"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert np.allclose(g2["image"][0], raw / raw.max())  # 16-bit kept, not cut to 8 bits
    assert not g2["mask"].any()
    grey = ds[0]["image"][0]
    assert np.allclose(grey, 1.0)  # colour -> grey, then slice-max normalised


def test_no_tumour_class_comes_first(tmp_path):
    """The no-tumour folder is label 0 whatever its name sorts as; the others follow by name."""
    root = tmp_path / "grades"
    for name in ("LGG", "Healthy", "HGG"):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / f"{name.lower()}.png"), np.full((8, 8), 100, np.uint8))
    ds = open_dataset(root)
    assert ds.class_names == ["Healthy", "HGG", "LGG"] and ds.no_tumour_class == 0
    assert [(r.patient, r.label) for r in ds.records] == [("healthy", 0), ("hgg", 1), ("lgg", 2)]


def test_resize_and_channel_name(tmp_path):
    root = make_folder(tmp_path / "images")
    ds = open_dataset(root, channels=["t1ce"], image_size=16)
    assert ds.channels == ["t1ce"] and ds[1]["image"].shape == (1, 16, 16) and ds[1]["mask"].any()


def test_duplicate_stems_get_class_prefix(tmp_path):
    root = make_folder(tmp_path / "images")
    cv2.imwrite(str(root / "meningioma" / "g1.png"), np.full((20, 24), 9, np.uint8))
    ds = open_dataset(root)
    assert {"glioma/g1", "meningioma/g1"} <= set(ds.patients)


def test_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the data set format"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="no class sub-folders"):
        open_dataset(tmp_path / "empty", format="folder")
    root = make_folder(tmp_path / "images")
    (root / "pituitary").mkdir()
    with pytest.raises(DataError, match="class folder\\(s\\) pituitary hold no"):
        open_dataset(root, format="folder")
    (root / "pituitary").rmdir()
    (root / "glioma" / "g3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="g3.png: not a readable image.*replace or remove the file"):
        open_dataset(root)[3]
    (root / "glioma" / "g3.png").unlink()
    cv2.imwrite(str(root / "glioma" / "g1_mask.png"), np.zeros((30, 30), np.uint8))
    with pytest.raises(DataError, match="g1_mask.png: mask is 30x30 but g1.png is 24x20"):
        open_dataset(root)[1]
    with pytest.raises(DataError, match="one \\(grey\\) channel"):
        open_dataset(root, channels=["a", "b"])
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown data set format"):
        open_dataset(root, format="dicom")


def test_detect_format(tmp_path):
    from test_data_brats import make_brats
    from test_data_figshare import _slice, write_mat

    assert detect_format(make_folder(tmp_path / "images")) == "folder"
    assert detect_format(make_brats(tmp_path / "brats")) == "brats"
    (tmp_path / "fig").mkdir()
    image, mask = _slice(1)
    write_mat(tmp_path / "fig" / "1.mat", image, 1, "7", mask)
    assert detect_format(tmp_path / "fig") == "figshare"
    assert detect_format(tmp_path / "fig" / "1.mat") == "figshare"
