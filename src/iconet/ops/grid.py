"""Upsampling on the sampling grid of a degradation.

Two grids exist (docs/design.md §2):

* ``"kspace"`` — k-space truncation with centred FFTs and even sides: LR pixel ``m`` sits on
  HR pixel ``s·m``. An HR pixel ``j`` therefore reads LR coordinate ``j / s``. The image is
  periodic (it came from an FFT), so borders wrap around.
* ``"centre"`` — area / bicubic downsampling: pixel centres of the field of view stay aligned,
  HR pixel ``j`` reads LR coordinate ``(j + 0.5) / s - 0.5``; borders replicate.

Interpolating on the wrong grid shifts the image by ``(s - 1) / 2`` HR pixels and costs
5–7 dB of PSNR; every upsampler in iconet goes through :func:`upsample`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from iconet.ops.fft import centre_pad_2d, fft2c, fourier_shift, ifft2c

Grid = Literal["kspace", "centre"]
GRIDS: tuple[str, ...] = ("kspace", "centre")

_PAD = 2  # bicubic support radius in LR pixels


def _lr_coords(n_hr: int, scale: int, grid: str, device: torch.device) -> torch.Tensor:
    j = torch.arange(n_hr, device=device, dtype=torch.float64)
    if grid == "kspace":
        return j / scale
    if grid == "centre":
        return (j + 0.5) / scale - 0.5
    raise ValueError(f"unknown sampling grid {grid!r}; expected one of {GRIDS}")


def _circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Periodic padding by ``p`` on the last two axes, also for sides smaller than ``p``."""
    h, w = x.shape[-2:]
    if min(h, w) >= p:
        return F.pad(x, (p, p, p, p), mode="circular")
    ry, rx = -(-p // h), -(-p // w)  # copies needed on each side
    tiled = x.repeat(1, 1, 2 * ry + 1, 2 * rx + 1)
    return tiled[..., ry * h - p : ry * h + h + p, rx * w - p : rx * w + w + p]


def upsample(x: torch.Tensor, scale: int, grid: str, mode: str = "bicubic") -> torch.Tensor:
    """Interpolate ``x`` of shape ``(B, C, h, w)`` to ``(B, C, s·h, s·w)`` on the given grid.

    Args:
        x: LR images (any float dtype).
        scale: integer upscaling factor ``s``.
        grid: ``"kspace"`` or ``"centre"`` (see module docstring).
        mode: ``"bicubic"`` or ``"bilinear"`` (``"nearest"`` also accepted).
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, h, w) tensor, got shape {tuple(x.shape)}")
    if grid == "centre" and mode in ("bicubic", "bilinear"):
        # PyTorch's align_corners=False is exactly the pixel-centre grid (border replicated).
        return F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
    B, C, h, w = x.shape
    # Sampling coordinates need float32 at least: in bf16/fp16 they would be rounded by up to
    # a pixel on ordinary image sizes. Interpolate in float32 (or float64) and cast back.
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if grid == "kspace":
        xp = _circular_pad(work, _PAD)
    else:
        xp = F.pad(work, (_PAD, _PAD, _PAD, _PAD), mode="replicate")
    ys = _lr_coords(h * scale, scale, grid, x.device) + _PAD
    xs = _lr_coords(w * scale, scale, grid, x.device) + _PAD
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..n-1.
    gy = 2 * ys / (h + 2 * _PAD - 1) - 1
    gx = 2 * xs / (w + 2 * _PAD - 1) - 1
    g = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
    g = g.to(work.dtype).unsqueeze(0).expand(B, -1, -1, -1)
    out = F.grid_sample(xp, g, mode=mode, padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def zero_fill_upsample(x: torch.Tensor, scale: int, grid: str) -> torch.Tensor:
    """Sinc interpolation by zero-padding the centred spectrum of ``x`` ``(..., h, w)``.

    The result is rescaled so a constant image keeps its value and is real. On the
    ``"centre"`` grid the input is first shifted by ``(s - 1) / (2 s)`` LR pixels so that
    pixel centres line up as they do for area/bicubic downsampling.
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown sampling grid {grid!r}; expected one of {GRIDS}")
    h, w = x.shape[-2:]
    src = x.to(torch.float64)
    if grid == "centre":
        d = (scale - 1) / (2 * scale)
        src = fourier_shift(src, (d, d))
    k = centre_pad_2d(fft2c(src), (h * scale, w * scale))
    out = ifft2c(k).real * scale
    # The centred FFT's origin is pixel n // 2. For an odd side n that puts LR pixel m on HR
    # pixel s·m + (s·n)//2 - s·(n//2) (= s/2 for even s), not on s·m: roll it back (exact, the
    # result is periodic) so both grids mean the same thing as in `upsample` for any side.
    off = ((scale * h) // 2 - scale * (h // 2), (scale * w) // 2 - scale * (w // 2))
    if any(off):
        out = torch.roll(out, shifts=(-off[0], -off[1]), dims=(-2, -1))
    return out.to(x.dtype)


def low_band(H: int, W: int, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of an ``(h, w)`` image's band in a centred ``(H, W)`` spectrum.

    The symmetric interior ``|f_y| < h/2``, ``|f_x| < w/2`` (an even side's unpaired Nyquist
    line left out; an odd side's band is whole).
    """
    return band_weight(H, W, h, w, 0.0, device) > 0


def band_weight(H: int, W: int, h: int, w: int, taper: float, device: torch.device | None = None) -> torch.Tensor:
    """Float ``(H, W)`` weight of an ``(h, w)`` image's band in a centred ``(H, W)`` spectrum.

    :func:`low_band` as 0/1 when ``taper`` is 0; otherwise, along each axis, the weight falls
    from 1 to 0 by a raised cosine over the outer ``taper`` fraction of the band's half-width
    (separable: the weight is the product of the two axes'), and is 0 outside the band.
    """
    if not 0.0 <= taper <= 1.0:
        raise ValueError(f"band taper must lie in [0, 1], got {taper!r}")

    def axis(n: int, m: int) -> torch.Tensor:
        k = (torch.arange(n, device=device) - n // 2).abs().to(torch.float64)
        edge = (m + 1) // 2  # first index outside the interior
        inside = k < edge
        if taper == 0:
            return inside.to(torch.float64)
        start = edge - taper * edge
        ramp = 0.5 * (1 + torch.cos(torch.pi * ((k - start) / (edge - start)).clamp(0, 1)))
        return torch.where(inside, ramp, torch.zeros_like(k))

    return axis(H, h)[:, None] * axis(W, w)[None, :]


def replace_low_band(hr: torch.Tensor, lr: torch.Tensor, scale: int, taper: float = 0.0) -> torch.Tensor:
    """``hr`` with the low band of its spectrum taken from ``lr`` (the ``"kspace"`` grid).

    Under k-space truncation, the ``(H/s)×(W/s)`` centre of HR's spectrum *is* the clean LR's
    spectrum (times ``s``): this puts ``lr``'s there and keeps ``hr``'s everywhere else. The band
    is the interior ``|f_y| < H/(2s)``, ``|f_x| < W/(2s)``: the LR's unpaired Nyquist row and
    column stay ``hr``'s, so the band is symmetric and a real ``hr``, ``lr`` give a real result.

    With ``taper > 0`` the swap is soft near the band's edge (:func:`band_weight`): the spectrum
    there is a blend, ``lr``'s weight falling to 0 at the edge, so the result has no step at the
    band edge where ``hr``'s spectrum and ``lr``'s disagree.

    Args:
        hr: ``(..., H, W)``, real; ``H``, ``W`` = ``s·h``, ``s·w``.
        lr: ``(..., h, w)``, real.
        scale: ``s``.
        taper: fraction of the band's half-width over which the swap fades out (0: hard band).

    Returns:
        ``(..., H, W)`` in ``hr``'s dtype (computed in float32 or float64), differentiable in both.
    """
    h, w = lr.shape[-2:]
    H, W = hr.shape[-2:]
    if (H, W) != (scale * h, scale * w):
        raise ValueError(f"replace_low_band: HR {(H, W)} is not {scale}x LR {(h, w)}")
    work = torch.float64 if torch.float64 in (hr.dtype, lr.dtype) else torch.float32
    band = band_weight(H, W, h, w, taper, hr.device).to(work)
    # Odd LR sides: centred FFTs put LR pixel m on HR pixel s·m + off, not s·m (as in
    # zero_fill_upsample); work in that frame and roll back (exact, the images are periodic).
    off = ((scale * h) // 2 - scale * (h // 2), (scale * w) // 2 - scale * (w // 2))
    prior = centre_pad_2d(fft2c(lr.to(work)), (H, W)) * scale
    framed = torch.roll(hr.to(work), shifts=off, dims=(-2, -1)) if any(off) else hr.to(work)
    delta = ifft2c(band * (prior - fft2c(framed))).real
    if any(off):
        delta = torch.roll(delta, shifts=(-off[0], -off[1]), dims=(-2, -1))
    return (hr.to(work) + delta).to(hr.dtype)
