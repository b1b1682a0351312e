"""Model packages are validated at load: the manifest against its typed schema, then against the graph's own I/O."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gpedge.errors import PackageError


def edited(package: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    copy = folder / "pkg"
    shutil.copytree(package, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(manifest: dict) -> None:
        *parents, key = path.split(".")
        target = manifest
        for name in parents:
            target = target[name]
        if value is KeyError:
            del target[key]
        else:
            target[key] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("files", ["model.onnx"]), "'files' must be a JSON object"),
        (lambda m: m["files"].__setitem__("model.onnx", "abc"), "'files.model.onnx' must be an object with 'sha256'"),
        (_set("input.channels", KeyError), "'input.channels' must list the channel names"),
        (_set("mask_rule.offset", "abc"), "'mask_rule.offset' must be a finite number, got 'abc'"),
        (_set("input.max_batch", 0), "'input.max_batch' must be a whole number >= 1, got 0"),
        (_set("input.height", 64.5), "'input.height' must be a whole number"),
        (_set("classes", ["Healthy"]), "'classes' must list at least two distinct class names"),
        (_set("mask_rule.empty_for_class", 7), "'mask_rule.empty_for_class' must be null or a class index below 3"),
        (_set("mask_rule.method", "watershed"), "does not know"),
        (_set("input_statistics", {"features": ["x"], "channels": ["t1ce"], "low": [[0]], "high": "x"}),
         "'input_statistics.high' must be 1 x 1 finite numbers"),
    ],
    ids=["files-list", "files-entry-string", "no-channels", "offset-abc", "max-batch-0", "height-float",
         "one-class", "empty-class-out-of-range", "unknown-rule", "statistics-shape"],
)
def test_malformed_manifest_fields_are_package_errors(tiny_package: Path, tmp_path: Path, edit, message) -> None:
    from gpedge.package import ModelPackage

    copy = edited(tiny_package, tmp_path, edit)
    with pytest.raises(PackageError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        ModelPackage.load(copy)
    assert "re-export" in str(info.value)


def test_missing_sha256_is_a_package_error(tiny_package: Path, tmp_path: Path) -> None:
    from gpedge.package import ModelPackage

    copy = edited(tiny_package, tmp_path, lambda m: m["files"]["model.onnx"].pop("sha256"))
    with pytest.raises(PackageError, match="'files.model.onnx.sha256' must be 64 lower-case hex digits, got None"):
        ModelPackage.load(copy)


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("classes", ["Healthy", "Tumour"]), r"'probs' has shape \['batch', 3\], the manifest implies \['N', 2\]"),
        (_set("input.height", 32), r"'image' has shape \[.*64, 64\], the manifest implies \['N', 1, 32, 64\]"),
        (_set("input.channels", ["t1", "t1ce"]), r"'image' has shape .*the manifest implies \['N', 2, 64, 64\]"),
    ],
    ids=["two-classes-on-a-three-class-graph", "size", "channels"],
)
def test_manifest_that_does_not_fit_the_graph_is_refused_at_load(tiny_package: Path, tmp_path: Path, edit, message) -> None:
    from gpedge.runtime.predictor import Predictor

    copy = edited(tiny_package, tmp_path, edit)
    with pytest.raises(PackageError, match=message) as info:
        Predictor(copy, backend="onnxruntime")
    assert "model.onnx does not fit" in str(info.value)


def test_the_exported_package_is_valid(tiny_package: Path) -> None:
    from gpedge.package import ModelPackage, manifest_problems

    assert manifest_problems(ModelPackage.load(tiny_package).manifest) == []
