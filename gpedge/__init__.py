"""gpedge: edge deployment of inherently-explainable brain-tumour classifiers.

``import gpedge`` needs no torch: the runtime (``Predictor``, ``Result``) runs on ONNX Runtime
or TensorRT. Training (``gpedge.train``), models (``gpedge.models``) and export
(``gpedge.export``) need the ``[train]``/``[export]`` extras.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gpedge._version import __version__
from gpedge.errors import GpedgeError, InputError, PackageError

if TYPE_CHECKING:
    from gpedge.runtime.predictor import Predictor
    from gpedge.runtime.results import Result

__all__ = ["__version__", "GpedgeError", "InputError", "PackageError", "Predictor", "Result"]


def __getattr__(name: str):
    if name == "Predictor":
        from gpedge.runtime.predictor import Predictor

        return Predictor
    if name == "Result":
        from gpedge.runtime.results import Result

        return Result
    raise AttributeError(f"module 'gpedge' has no attribute {name!r}")
