"""gpedge.export: turn a training run into a deployable model package (fused ONNX FP32/FP16, TensorRT engines).

``export_package(run_dir, out_dir, ExportOptions(...))`` is the entry point (torch and onnx
needed: ``[export]`` extra); importing this package imports nothing heavy. The fused graph and
its contract live in :mod:`gpedge.graph`, engines in :mod:`gpedge.tensorrt`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gpedge.export.options import ExportOptions

__all__ = ["ExportOptions", "export_package"]


def export_package(run_dir: Any, out_dir: Any, options: ExportOptions | None = None) -> Path:
    """Export a training run folder to a model package; see :func:`gpedge.export.exporter.export_package`."""
    from gpedge.export.exporter import export_package as _export

    return _export(run_dir, out_dir, options)
