"""Reader robustness: mutated files of every format give a GpedgeError (or are read), never another exception.

The fuzz test is bounded (a fixed number of derandomised hypothesis examples per seed: about 20 s
in all on two cores); ``scripts/fuzz_readers.py`` is the long run, its result in
``docs/results/fuzz-readers.json``. The regression tests below pin the failures the issue listed.
"""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_readers import KINDS, Choices, Seed, make_seeds, mutate, read
from gpedge.errors import InputError
from gpedge.runtime.io import load_input
from conftest import EXAMPLES

EXAMPLES_PER_SEED = 120


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Seed]:
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_inputs_never_leak_a_raw_exception(
    kind: str, seeds: dict[str, Seed], tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed = seeds[kind]
    folder = tmp_path_factory.mktemp(f"fuzz-{kind}")

    @settings(max_examples=EXAMPLES_PER_SEED, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data: st.DataObject) -> None:
        choose = Choices(lambda low, high: data.draw(st.integers(low, high)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom and nibabel warn about what they then refuse
            assert read(seed, mutate(seed, choose), folder / "input") in ("ok", "refused")

    check()


def test_the_seeds_themselves_are_read(seeds: dict[str, Seed], tmp_path: Path) -> None:
    """The fuzz test starts from files the readers accept (else it would test nothing but refusals)."""
    for seed in seeds.values():
        assert read(seed, seed.files[seed.target], tmp_path / seed.kind) == "ok", seed.kind


def _dicom(tmp_path: Path, **values) -> Path:
    ds = pydicom.dcmread(EXAMPLES / "hgg_t1ce.dcm")
    for keyword, (vr, raw) in values.items():
        from pydicom.dataelem import RawDataElement
        from pydicom.datadict import tag_for_keyword

        tag = tag_for_keyword(keyword)
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    path = tmp_path / "damaged.dcm"
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize(
    "values, message",
    [
        ({"RescaleIntercept": ("DS", b"0\\0\\0\\0\\0\\0 ")}, "RescaleIntercept|damaged|malformed"),
        ({"RescaleSlope": ("DS", b"abc ")}, "damaged|malformed"),
        ({"Rows": ("ZZ", b"\x00\x01")}, "malformed DICOM header"),
        ({"SeriesInstanceUID": ("US", b"\x01\x02\x03")}, "malformed DICOM header"),
    ],
    ids=["multi-valued intercept", "text slope", "unknown VR", "bad length"],
)
def test_lazily_parsed_dicom_values_are_input_errors(tmp_path: Path, values: dict, message: str) -> None:
    path = _dicom(tmp_path, **values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=message) as info:
            load_input(path, ["t1ce"])
    assert str(path) in str(info.value)


@pytest.mark.parametrize("affine", ["zero", "nan"])
def test_nifti_with_a_degenerate_affine_is_an_input_error(tmp_path: Path, affine: str) -> None:
    path = tmp_path / "volume.nii"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    value = 0.0 if affine == "zero" else float("nan")
    struct.pack_into("<hh", data, 252, 0, 1)  # qform_code 0, sform_code 1
    struct.pack_into("<12f", data, 280, *([value] * 12))  # srow_x, srow_y, srow_z
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="affine"):
        load_input(path, ["t1ce"])


def test_a_file_name_too_long_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="File name too long"):
        load_input(tmp_path / ("x" * 300 + ".png"), ["t1ce"])
