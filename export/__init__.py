"""gpedge.export: turn a training run into a deployable model package (fused ONNX FP32/FP16, TensorRT engines).

``export_package(run_dir, out_dir, ...)`` is the entry point (torch, onnx needed: ``[export]``
extra). ``gpedge.export.tensorrt_build`` needs neither torch nor onnx, so the runtime can build
engines on the target; importing this package imports nothing heavy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["export_package"]


def export_package(run_dir: Any, out_dir: Any, **options: Any) -> Path:
    """Export a training run folder to a model package; see :func:`gpedge.export.exporter.export_package`."""
    from gpedge.export.exporter import export_package as _export

    return _export(run_dir, out_dir, **options)
