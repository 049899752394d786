"""Thick slices: the forward model of a 2-D multi-slice acquisition, and the grids across slices.

A thick-slice scan samples the object along its through-plane axis at the slice spacing ``S``,
each sample the object weighted by the slice profile. iconet models the profile as a Gaussian
whose FWHM is the slice thickness (``S`` when the header does not say; a thickness below ``S``
is a gap between slices, above it an overlap). With HR voxels of size ``d`` along that axis::

    thick[m] = (HR * g_sigma)(p0 + m·S/d)      sigma = FWHM / (2·sqrt(2·ln 2)) / d  HR voxels

:func:`thick_slices` computes it (``scipy.ndimage.gaussian_filter1d``, borders repeated, then
sampling: exact indexing where the positions are whole voxels, cubic B-spline interpolation of
the blurred signal elsewhere) and gives the result an affine whose slice centres sit where the
samples were taken, so a volume made isotropic again lands on the HR grid.

:func:`output_grid` is the grid a made-isotropic volume is written on: along every axis, output
voxel ``j`` sits at source voxel coordinate ``first + j·step`` (``step`` = output spacing /
source spacing); source voxel 0 (the first slice centre) is an output voxel, and the grid
covers the source's field of view with every voxel centre inside it (within half a source
voxel of the first and last centres). An axis already at the output spacing maps onto itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from iconet.data.volume import Volume

#: FWHM of a Gaussian in units of its standard deviation, 2·sqrt(2·ln 2)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_WHOLE = 1e-9  # positions this close to whole voxels are indexed, not interpolated


def sigma_voxels(fwhm_mm: float, spacing_mm: float) -> float:
    """Standard deviation in voxels of spacing ``spacing_mm`` of a Gaussian of FWHM ``fwhm_mm``."""
    return float(fwhm_mm) / FWHM_PER_SIGMA / float(spacing_mm)


def blur_axis(array: np.ndarray, axis: int, fwhm_voxels: float) -> np.ndarray:
    """Gaussian blur along ``axis`` of FWHM ``fwhm_voxels`` (float32 out; borders repeated)."""
    sigma = float(fwhm_voxels) / FWHM_PER_SIGMA
    return ndimage.gaussian_filter1d(np.asarray(array, dtype=np.float32), sigma, axis=axis, mode="nearest")


def sample_axis(array: np.ndarray, axis: int, first: float, step: float, n: int) -> np.ndarray:
    """Values at coordinates ``first + j·step`` (``j = 0..n-1``, in voxels) along ``axis``.

    Whole-voxel positions are indexed exactly; others are interpolated with a cubic B-spline
    (``scipy.ndimage``, order 3), taps beyond the border repeating it. float32 out.
    """
    a = np.asarray(array, dtype=np.float32)
    if n < 1:
        raise ValueError(f"sample_axis needs n >= 1, got {n}")
    ids = first + step * np.arange(n)
    size = a.shape[axis]
    if abs(first - round(first)) < _WHOLE and abs(step - round(step)) < _WHOLE and round(step) >= 1:
        idx = np.rint(ids).astype(np.int64)
        if idx[0] >= 0 and idx[-1] < size:
            return np.take(a, idx, axis=axis)
    matrix = np.ones(a.ndim)
    matrix[axis] = step
    offset = np.zeros(a.ndim)
    offset[axis] = first
    shape = list(a.shape)
    shape[axis] = n
    return ndimage.affine_transform(a, matrix, offset=offset, output_shape=tuple(shape), order=3,
                                    mode="nearest", prefilter=True).astype(np.float32, copy=False)


def thick_positions(n_hr: int, step: float) -> tuple[float, int]:
    """``(p0, N)``: where :func:`thick_slices` samples ``n_hr`` voxels every ``step`` voxels.

    ``N`` is as many slices as fit; ``p0`` is the whole voxel that centres them (rounded down):
    slice ``m`` sits on HR voxel coordinate ``p0 + m·step``.
    """
    if step <= 0:
        raise ValueError(f"slice step must be positive, got {step}")
    count = int(math.floor((n_hr - 1) / step + 1e-9)) + 1
    p0 = float(math.floor(((n_hr - 1) - (count - 1) * step) / 2 + 1e-9))
    return p0, count


def thick_slices(volume: Volume, axis: int, spacing_mm: float, fwhm_mm: float | None = None) -> Volume:
    """The forward model: ``volume`` acquired as thick slices along ``axis``.

    Args:
        volume: the HR volume (any units, any sign; float32 out).
        axis: the array axis across the slices (0, 1, 2).
        spacing_mm: distance between slice centres, in mm (at least the HR spacing there).
        fwhm_mm: FWHM of the Gaussian slice profile in mm; ``None``: ``spacing_mm``.

    Returns:
        A Volume with ``N`` slices along ``axis`` (as many as fit, centred on the HR volume's
        extent, the first on a whole HR voxel), spacing ``spacing_mm`` there, and an affine
        whose slice ``m`` lies where it was sampled. ``meta["slice_profile"]`` records the
        axis, spacing and FWHM (what :func:`iconet.data.slice_profile.slice_profile` reads).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    d = volume.spacing[axis]
    fwhm = float(spacing_mm if fwhm_mm is None else fwhm_mm)
    if not (math.isfinite(spacing_mm) and spacing_mm >= d * (1 - 1e-6)):
        raise ValueError(f"slice spacing {spacing_mm} mm must be at least the volume's spacing {d:.4g} mm along axis {axis}")
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"slice FWHM must be a positive number of mm, got {fwhm_mm}")
    step = float(spacing_mm) / d
    p0, count = thick_positions(volume.shape[axis], step)
    blurred = blur_axis(volume.data, axis, fwhm / d)
    data = sample_axis(blurred, axis, p0, step, count)
    affine = volume.affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * p0
    affine[:3, axis] = affine[:3, axis] * step
    profile = {"axis": int(axis), "spacing_mm": float(spacing_mm), "fwhm_mm": fwhm, "source": "iconet thick_slices"}
    return volume.with_data(data, affine, slice_profile=profile)


@dataclass(frozen=True)
class AxisGrid:
    """One axis of an output grid: output voxel ``j`` at source coordinate ``first + j·step``."""

    first: float
    step: float
    n: int

    @property
    def identity(self) -> bool:
        return self.first == 0 and self.step == 1

    def positions(self) -> np.ndarray:
        return self.first + self.step * np.arange(self.n)


def axis_grid(n_source: int, spacing: float, out_spacing: float) -> AxisGrid:
    """The output grid of an axis of ``n_source`` voxels of ``spacing`` mm at ``out_spacing`` mm.

    Voxel 0 of the source is an output voxel; the grid reaches out on both sides to the last
    voxel centres strictly inside half a source voxel of the first and last source centres.
    """
    if abs(out_spacing - spacing) <= 1e-6 * spacing:
        return AxisGrid(0.0, 1.0, int(n_source))
    step = out_spacing / spacing
    before = int(math.ceil(0.5 / step - 1e-9)) - 1  # j·step < 0.5 strictly
    last = int(math.ceil((n_source - 0.5) / step - 1e-9)) - 1  # j·step < n - 0.5
    return AxisGrid(-before * step, step, last + before + 1)


def output_grid(volume: Volume, out_spacing: float) -> tuple[tuple[AxisGrid, AxisGrid, AxisGrid], np.ndarray]:
    """The grid at ``out_spacing`` mm on every axis (see the module docstring) and its affine."""
    grids = tuple(axis_grid(n, d, out_spacing) for n, d in zip(volume.shape, volume.spacing))
    affine = volume.affine.copy()
    for a, g in enumerate(grids):
        affine[:3, 3] = affine[:3, 3] + volume.affine[:3, a] * g.first
        affine[:3, a] = volume.affine[:3, a] * g.step
    return grids, affine  # type: ignore[return-value]


__all__ = ["FWHM_PER_SIGMA", "AxisGrid", "axis_grid", "blur_axis", "output_grid", "sample_axis",
           "sigma_voxels", "thick_positions", "thick_slices"]
