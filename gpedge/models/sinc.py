"""Sinc (Fourier) resampling as constant matrices, exportable as two MatMuls.

Fourier resampling of a length-``n_in`` signal to ``n_out`` samples is linear, so for fixed
sizes it is a real ``(n_out, n_in)`` matrix. Applying it along H and W of a feature map,
``A_H @ X @ A_W^T``, reproduces the FFT form to round-off and exports to ONNX and TensorRT
(which have no FFT) as two MatMuls.

Fourier resampling treats the signal as periodic, so a feature on one border leaks into the
opposite one (in ``sinc_matrix(16, 32)`` the last output row takes 0.635 of the first input row).
The ``mirror`` form resamples the signal joined to its mirror image (length ``2 n``), whose
periodic continuation has no jump, and keeps the first half: the same band-limited interpolation
inside the image (a DCT-II resampling), without the wrap.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn


def _fourier_resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Resample real ``x`` along axis 0 to ``n_out`` samples in the Fourier domain (float64)."""
    n_in = x.shape[0]
    spectrum = np.fft.rfft(x, axis=0)
    out = np.zeros((n_out // 2 + 1,) + x.shape[1:], dtype=np.complex128)
    n = min(n_in, n_out)
    out[: n // 2 + 1] = spectrum[: n // 2 + 1]
    if n % 2 == 0 and n_in != n_out:
        # The shared Nyquist bin is split (upsampling) or its two halves joined (downsampling).
        out[n // 2] *= 0.5 if n_out > n_in else 2.0
    return np.fft.irfft(out, n_out, axis=0) * (n_out / n_in)


@lru_cache(maxsize=64)
def _cached_matrix(n_in: int, n_out: int, mirror: bool = False) -> np.ndarray:
    if mirror:
        extension = np.concatenate([np.eye(n_in), np.eye(n_in)[::-1]])
        matrix = _fourier_resample(extension, 2 * n_out)[:n_out]
    else:
        matrix = _fourier_resample(np.eye(n_in), n_out)
    matrix.setflags(write=False)
    return matrix


def sinc_matrix(n_in: int, n_out: int, mirror: bool = False) -> np.ndarray:
    """Return the ``(n_out, n_in)`` float64 matrix of Fourier resampling from ``n_in`` to ``n_out`` samples.

    ``sinc_matrix(n_in, n_out) @ x`` equals ``scipy.signal.resample(x, n_out)`` for real ``x``;
    with ``mirror``, it resamples ``x`` joined to its mirror image and keeps the first ``n_out``
    samples (no wrap across the borders). When ``n_out == 2 * n_in``, output sample ``2 i``
    equals input sample ``i`` in both forms.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sinc_matrix needs positive lengths, got n_in={n_in}, n_out={n_out}")
    return _cached_matrix(int(n_in), int(n_out), bool(mirror)).copy()


class SincUpsample(nn.Module):
    """Upsample (N, C, H, W) by an integer factor with Fourier resampling along H and W.

    ``mirror``: resample the mirror-extended map (no wrap across the borders; see the module
    docstring). The resampling matrices are constants (not parameters, not in the state dict),
    built once per input size, device and dtype.
    """

    def __init__(self, scale: int = 2, mirror: bool = False) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"SincUpsample scale must be a positive integer, got {scale}")
        self.scale, self.mirror = int(scale), bool(mirror)
        self._constants: dict[tuple[int, int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _matrices(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (height, width, device, dtype)
        if key not in self._constants:
            a_h = torch.tensor(_cached_matrix(height, height * self.scale, self.mirror), dtype=dtype, device=device)
            a_w_t = torch.tensor(_cached_matrix(width, width * self.scale, self.mirror).T, dtype=dtype, device=device)
            self._constants[key] = (a_h, a_w_t)
        return self._constants[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w_t = self._matrices(int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype)
        return torch.matmul(torch.matmul(a_h, x), a_w_t)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mirror={self.mirror}"
