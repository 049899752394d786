"""Voxel-to-world geometry: upscaled affines on a degradation's sampling grid, LPS <-> RAS.

Affines are ``(4, 4)`` matrices mapping voxel indices ``(i, j, k, 1)`` to world millimetres
(RAS+ in iconet, as in NIfTI). Column ``a`` of the upper ``3x3`` block is the step in world space
for one voxel along array axis ``a``; its norm is the spacing ``d_a``.

Sampling grids (docs/design.md §2 and §6):

* ``"kspace"`` — k-space truncation with centred FFTs keeps LR voxel ``m`` on HR voxel
  ``s*m``: the origin (voxel 0) stays where it is, the spacing becomes ``d/s``.
* ``"centre"`` — area / bicubic downsampling keeps the field of view (voxel ``-0.5`` to
  ``n-0.5``) aligned: the origin moves by ``-(d - d/s)/2`` along each upscaled axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRIDS: tuple[str, ...] = ("kspace", "centre")

#: ``LPS_TO_RAS @ affine_lps == affine_ras`` (and the same matrix converts back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_affine(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {a.shape}")
    return a


def _factors(factors: Sequence[int | float]) -> np.ndarray:
    f = np.asarray(tuple(factors), dtype=np.float64)
    if f.shape != (3,):
        raise ValueError(f"factors must give one value per axis (3), got {tuple(factors)}")
    if np.any(~np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"factors must be positive, got {tuple(factors)}")
    return f


def _check_grid(grid: str) -> None:
    if grid not in GRIDS:
        raise ValueError(f"unknown sampling grid {grid!r}; expected one of {GRIDS}")


def upscaled_affine(affine: np.ndarray, factors: Sequence[int], grid: str) -> np.ndarray:
    """Affine of a volume upscaled by ``factors`` (one per array axis) on ``grid``.

    Spacing of an axis upscaled by ``s`` becomes ``d/s``; direction cosines are kept. On the
    ``"kspace"`` grid the origin is unchanged (voxel ``s*m`` of the output sits where voxel ``m``
    of the input sits); on the ``"centre"`` grid it moves by ``-(d - d/s)/2`` along the axis, so
    that the field-of-view corners (voxel ``-0.5`` and ``n - 0.5``) coincide. A factor of 1
    leaves an axis untouched.
    """
    a = _as_affine(affine)
    f = _factors(factors)
    _check_grid(grid)
    out = a.copy()
    cols = a[:3, :3]
    out[:3, :3] = cols / f[None, :]
    if grid == "centre":
        # world(j_hr) = world_lr((j_hr + 0.5)/s - 0.5)  =>  origin - col * (1 - 1/s) / 2
        out[:3, 3] = a[:3, 3] - cols @ ((1.0 - 1.0 / f) / 2.0)
    return out


def downscaled_affine(affine: np.ndarray, factors: Sequence[int], grid: str) -> np.ndarray:
    """Inverse of :func:`upscaled_affine`: the affine of a volume downscaled by ``factors``.

    ``upscaled_affine(downscaled_affine(A, f, g), f, g) == A`` for both grids.
    """
    a = _as_affine(affine)
    f = _factors(factors)
    _check_grid(grid)
    out = a.copy()
    cols = a[:3, :3]
    out[:3, :3] = cols * f[None, :]
    if grid == "centre":
        # LR voxel m covers HR voxels s*m .. s*m + s - 1: its centre is HR voxel s*m + (s-1)/2.
        out[:3, 3] = a[:3, 3] + cols @ ((f - 1.0) / 2.0)
    return out


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert an affine that maps voxels to DICOM LPS+ into one that maps them to RAS+."""
    return LPS_TO_RAS @ _as_affine(affine)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Convert an affine that maps voxels to RAS+ into one that maps them to DICOM LPS+."""
    return LPS_TO_RAS @ _as_affine(affine)


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis (norms of the affine's columns)."""
    return np.linalg.norm(_as_affine(affine)[:3, :3], axis=0)


def direction_cosines(affine: np.ndarray) -> np.ndarray:
    """Unit direction of each array axis in world space, as the columns of a ``3x3`` matrix."""
    a = _as_affine(affine)
    sp = voxel_spacing(a)
    if np.any(sp == 0):
        raise ValueError("affine has a zero-length axis")
    return a[:3, :3] / sp[None, :]


def fov_corners(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World coordinates of the 8 outer corners of the field of view (voxel ``-0.5``, ``n-0.5``).

    Returns ``(8, 3)``, rows ordered as ``itertools.product`` over the axes (low, high).
    """
    a = _as_affine(affine)
    n = np.asarray(tuple(shape)[:3], dtype=np.float64)
    corners = np.array(
        [[(-0.5 if bi == 0 else n[0] - 0.5), (-0.5 if bj == 0 else n[1] - 0.5),
          (-0.5 if bk == 0 else n[2] - 0.5)]
         for bi in (0, 1) for bj in (0, 1) for bk in (0, 1)]
    )
    return corners @ a[:3, :3].T + a[:3, 3]


def is_sheared(affine: np.ndarray, atol: float = 1e-4) -> bool:
    """Whether the affine's axes are not mutually orthogonal (e.g. CT gantry tilt)."""
    r = direction_cosines(affine)
    g = r.T @ r
    return bool(np.max(np.abs(g - np.eye(3))) > atol)
