"""gpedge.cpus: physical cores count hyper-threads once and only the CPUs the process may use."""
from __future__ import annotations

import sys
import types

import pytest

from gpedge import cpus


@pytest.fixture
def four_threads_on_two_cores(monkeypatch: pytest.MonkeyPatch):
    info = [{"processor": str(i), "physical id": "0", "core id": str(i % 2), "model name": "Test CPU",
             "flags": "fpu avx2 avx512f"} for i in range(4)]
    monkeypatch.setattr(cpus, "_cpuinfo", lambda: info)
    _clear()
    yield
    _clear()


def _clear() -> None:
    for cached in (cpus.physical_cores, cpus.cpu_description, cpus.native_bf16):
        cached.cache_clear()


def test_hyper_threads_count_once(four_threads_on_two_cores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "usable_cpus", lambda: {0, 1, 2, 3})
    assert cpus.physical_cores() == 2
    assert cpus.cpu_description() == "Test CPU (4 logical CPUs; avx2, avx512f)"


@pytest.mark.parametrize(
    ("field", "flags", "native"),
    [("flags", "fpu avx2 avx512f avx512_bf16", True), ("flags", "fpu avx2 amx_tile amx_bf16", True),
     ("Features", "fp asimd sve bf16", True), ("flags", "fpu avx2 avx512f", False), ("Features", "fp asimd", False)],
)
def test_native_bf16_reads_the_x86_and_arm_flags(
    monkeypatch: pytest.MonkeyPatch, field: str, flags: str, native: bool
) -> None:
    monkeypatch.setattr(cpus, "_cpuinfo", lambda: [{"processor": "0", field: flags}])
    _clear()
    try:
        assert cpus.native_bf16() is native
    finally:
        _clear()


@pytest.mark.parametrize(("value", "native"), [("1", True), ("0", False), ("", False)])
def test_native_bf16_on_macos_asks_sysctl(monkeypatch: pytest.MonkeyPatch, value: str, native: bool) -> None:
    asked = []
    monkeypatch.setattr(cpus, "_cpuinfo", list)
    monkeypatch.setattr(cpus.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(cpus, "_sysctl", lambda name: asked.append(name) or value)
    _clear()
    try:
        assert cpus.native_bf16() is native
        assert asked == ["hw.optional.arm.FEAT_BF16"]
    finally:
        _clear()


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_native_bf16_without_cpuinfo_asks_torch(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    probes = types.SimpleNamespace(_is_avx512_bf16_supported=lambda: avx512_bf16, _is_amx_tile_supported=lambda: amx)
    monkeypatch.setattr(cpus, "_cpuinfo", list)
    monkeypatch.setattr(cpus.platform, "system", lambda: "Windows")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cpu=probes))
    _clear()
    try:
        assert cpus.native_bf16() is native
    finally:
        _clear()


def test_native_bf16_without_cpuinfo_or_torch_says_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "_cpuinfo", list)
    monkeypatch.setattr(cpus.platform, "system", lambda: "Windows")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    _clear()
    try:
        assert cpus.native_bf16() is False
    finally:
        _clear()


def test_only_the_cpus_the_process_may_use(four_threads_on_two_cores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "usable_cpus", lambda: {0})
    assert cpus.physical_cores() == 1


def test_this_machine() -> None:
    assert 1 <= cpus.physical_cores() <= len(cpus.usable_cpus())
    assert f"{len(cpus.usable_cpus())} logical CPUs" in cpus.cpu_description()
