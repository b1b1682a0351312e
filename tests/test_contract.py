"""One graph contract and one dependency direction: every list of graph names comes from
gpedge.graph.contract, and the runtime, training, benchmark and evaluation code never import the exporter."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import onnx

from gpedge.graph.contract import INPUTS, OUTPUTS, input_specs, output_specs
from gpedge.tensorrt.inspection import EXPECTED_IO
from conftest import ROOT


def test_every_list_of_graph_names_is_the_contract(tiny_package: Path) -> None:
    from gpedge.graph.fused import FusedOutput

    assert FusedOutput._fields == OUTPUTS
    model = onnx.load(str(tiny_package / "model.onnx"))
    assert [v.name for v in model.graph.input] == list(INPUTS)
    assert [v.name for v in model.graph.output] == list(OUTPUTS)
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    assert manifest["outputs"] == output_specs(3, 64, 64)
    assert manifest["input"]["name"] == INPUTS[0]
    assert manifest["mask_rule"]["inputs"] == {name: input_specs(1, 64, 64)[name] for name in INPUTS[1:]}
    assert set(EXPECTED_IO) == set(INPUTS) | set(OUTPUTS)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_runtime_train_bench_and_evaluate_do_not_import_the_exporter() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("runtime", "train", "bench", "evaluate", "graph", "tensorrt")
        for path in sorted((ROOT / "gpedge" / folder).rglob("*.py"))
        for name in _imports(path)
        if name == "gpedge.export" or name.startswith("gpedge.export.")
    ]
    assert not offenders, offenders


def test_graph_and_tensorrt_modules_stay_below_the_runtime() -> None:
    """gpedge.graph and gpedge.tensorrt are used by the runtime and the exporter: they import neither."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("graph", "tensorrt")
        for path in sorted((ROOT / "gpedge" / folder).rglob("*.py"))
        for name in _imports(path)
        if name.startswith(("gpedge.runtime", "gpedge.export", "gpedge.bench", "gpedge.evaluate"))
    ]
    assert not offenders, offenders
