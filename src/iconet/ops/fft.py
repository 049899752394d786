"""Centred, orthonormal 2-D FFTs and k-space resizing on the last two axes; the real DFT pair
along one axis as matrices (:func:`rdft_matrices`).

Convention (as in fastMRI's ``fftc``): the DC term sits at index ``n // 2`` of each axis, the
transform is unitary (``norm="ortho"``). With even sides, cropping or zero-padding a centred
spectrum keeps LR pixel ``m`` on HR pixel ``s * m`` (the "kspace" sampling grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal FFT over the last two axes. ``(..., H, W)`` real or complex → complex."""
    x = torch.fft.ifftshift(x, dim=DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, dim=DIMS, norm="ortho"), dim=DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c`. ``(..., H, W)`` complex → complex."""
    k = torch.fft.ifftshift(k, dim=DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(k, dim=DIMS, norm="ortho"), dim=DIMS)


def centre_crop_2d(k: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the centred block of ``size = (h, w)`` from ``(..., H, W)``; index ``H//2`` → ``h//2``."""
    H, W = k.shape[-2:]
    h, w = size
    if h > H or w > W:
        raise ValueError(f"cannot crop {(H, W)} to a larger size {(h, w)}")
    top, left = H // 2 - h // 2, W // 2 - w // 2
    return k[..., top : top + h, left : left + w]


def centre_pad_2d(k: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad ``(..., h, w)`` to ``size = (H, W)`` so that index ``h//2`` lands on ``H//2``."""
    h, w = k.shape[-2:]
    H, W = size
    if h > H or w > W:
        raise ValueError(f"cannot pad {(h, w)} to a smaller size {(H, W)}")
    top, left = H // 2 - h // 2, W // 2 - w // 2
    return F.pad(k, (left, W - w - left, top, H - h - top))


def fourier_shift(x: torch.Tensor, shift: tuple[float, float]) -> torch.Tensor:
    """Shift a real image by a sub-pixel amount (pixels, ``(dy, dx)``), periodically.

    ``out[i] = x[i - dy]``: positive shifts move content towards higher indices.
    """
    H, W = x.shape[-2:]
    ky = torch.fft.fftshift(torch.fft.fftfreq(H, device=x.device, dtype=torch.float64))
    kx = torch.fft.fftshift(torch.fft.fftfreq(W, device=x.device, dtype=torch.float64))
    phase = torch.exp(-2j * math.pi * (ky[:, None] * shift[0] + kx[None, :] * shift[1]))
    k = fft2c(x.to(torch.float64)) * phase
    return ifft2c(k).real.to(x.dtype)


def rdft_matrices(w: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The orthonormal real DFT pair along an axis of ``w`` samples as matrices.

    With ``K = w // 2 + 1`` frequencies and ``θ_jk = 2π (j·k mod w) / w`` (reduced mod ``w`` in
    integers, so the angles are exact): ``rfft(x, norm="ortho") = x @ cos − i · x @ sin`` and
    ``irfft(z, n=w, norm="ortho") = (a · Re z) @ cosᵀ − (a · Im z) @ sinᵀ`` with ``a_0 = 1``,
    ``a_{w/2} = 1`` for even ``w`` and ``a_k = 2`` otherwise (the imaginary parts of the DC and
    Nyquist terms drop out, as in ``irfft``).

    Returns:
        ``(cos, sin, a)``: float32 ``(w, K)``, ``(w, K)`` and ``(K,)``. The arithmetic runs on
        tensors, so ``w`` may be a traced, symbolic size (the ONNX export keeps it dynamic).
    """
    j = torch.arange(w, device=device)
    k = torch.arange(w // 2 + 1, device=device)
    wt = torch.ones((), dtype=torch.int64, device=device) * w  # a tensor keeps w symbolic
    n = wt.to(torch.float64)
    theta = ((j[:, None] * k[None, :]) % wt).to(torch.float64) * (2 * math.pi) / n
    cos = (torch.cos(theta) / n.sqrt()).to(torch.float32)
    sin = (torch.sin(theta) / n.sqrt()).to(torch.float32)
    a = 2 - (k == 0).to(torch.float32) - (2 * k == w).to(torch.float32)
    return cos, sin, a
