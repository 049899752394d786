"""upscaled_affine on both sampling grids (docs/design.md §6), checked on headers and on content."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from nibabel.affines import apply_affine

from iconet.data.geometry import (
    downscaled_affine,
    fov_corners,
    is_sheared,
    lps_to_ras,
    ras_to_lps,
    upscaled_affine,
    voxel_spacing,
)
from iconet.ops.fft import centre_crop_2d, fft2c, ifft2c

from _io_fixtures import oblique

BASE = oblique(np.array([[-2.0, 0, 0, 32], [0, 2.5, 0, -40], [0, 0, 3.0, -16], [0, 0, 0, 1]]))
CASES = [(2, 2, 1), (4, 4, 1), (2, 3, 4), (1, 1, 2)]


@pytest.mark.parametrize("factors", CASES)
def test_kspace_grid_voxel_sm_is_voxel_m(factors):
    hr = upscaled_affine(BASE, factors, "kspace")
    m = np.array(list(itertools.product(range(3), range(4), range(2))), dtype=float)
    np.testing.assert_allclose(apply_affine(hr, m * np.array(factors)), apply_affine(BASE, m),
                               atol=1e-9)
    np.testing.assert_allclose(hr[:3, 3], BASE[:3, 3])


@pytest.mark.parametrize("factors", CASES)
def test_centre_grid_fov_corners_coincide(factors):
    shape = (5, 6, 7)
    hr = upscaled_affine(BASE, factors, "centre")
    hr_shape = tuple(n * s for n, s in zip(shape, factors))
    np.testing.assert_allclose(fov_corners(hr, hr_shape), fov_corners(BASE, shape), atol=1e-9)


@pytest.mark.parametrize("grid", ["kspace", "centre"])
def test_spacing_and_directions(grid):
    f = (2, 4, 1)
    hr = upscaled_affine(BASE, f, grid)
    np.testing.assert_allclose(voxel_spacing(hr), voxel_spacing(BASE) / np.array(f))
    np.testing.assert_allclose(hr[:3, :3] / voxel_spacing(hr), BASE[:3, :3] / voxel_spacing(BASE))
    np.testing.assert_allclose(downscaled_affine(hr, f, grid), BASE, atol=1e-12)


def test_centre_origin_moves_along_axis_direction():
    a = np.diag([-2.0, 2.0, 3.0, 1.0])  # x axis pointing to -x
    hr = upscaled_affine(a, (2, 2, 1), "centre")
    # -(d - d/s)/2 = -0.5 voxel-mm along each upscaled axis *direction*
    np.testing.assert_allclose(hr[:3, 3], [+0.5, -0.5, 0.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid"):
        upscaled_affine(BASE, (2, 2, 1), "bicubic")
    with pytest.raises(ValueError, match="positive"):
        upscaled_affine(BASE, (0, 2, 1), "kspace")
    with pytest.raises(ValueError, match="one value per axis"):
        upscaled_affine(BASE, (2, 2), "kspace")


def test_lps_ras_and_shear():
    np.testing.assert_allclose(ras_to_lps(lps_to_ras(BASE)), BASE)
    assert lps_to_ras(np.eye(4))[0, 0] == -1
    assert not is_sheared(BASE)
    tilted = BASE.copy()
    tilted[:3, 2] += 0.3 * BASE[:3, 1]
    assert is_sheared(tilted)


def _smooth_image(n: int = 32, seed: int = 0) -> np.ndarray:
    """A real image whose spectrum lives inside the central 8x8 block (band-limited)."""
    rng = np.random.default_rng(seed)
    k = np.zeros((n, n), dtype=np.complex128)
    c = n // 2
    k[c - 3:c + 4, c - 3:c + 4] = rng.standard_normal((7, 7)) + 1j * rng.standard_normal((7, 7))
    img = ifft2c(torch.from_numpy(k)).real
    return img.numpy()


def test_kspace_grid_on_content():
    """LR by k-space truncation: LR pixel m holds HR pixel s*m, where upscaled_affine puts it."""
    s, n = 2, 32
    hr = _smooth_image(n)
    k = fft2c(torch.from_numpy(hr))
    lr = ifft2c(centre_crop_2d(k, (n // s, n // s))).real.numpy() / s  # constant keeps its value
    hr_aff = BASE.copy()
    lr_aff = downscaled_affine(hr_aff, (s, s, 1), "kspace")
    np.testing.assert_allclose(upscaled_affine(lr_aff, (s, s, 1), "kspace"), hr_aff)
    # content: the best-matching integer shift between LR and HR[::s] is zero
    errs = {sh: np.abs(np.roll(hr, sh, axis=(0, 1))[::s, ::s] - lr).max()
            for sh in [(0, 0), (1, 0), (0, 1), (1, 1), (-1, 0), (0, -1)]}
    assert min(errs, key=errs.get) == (0, 0)
    assert errs[(0, 0)] < 1e-10


def test_centre_grid_on_content():
    """LR by block averaging (area): LR pixel m is the mean of HR block m, whose centre is
    where downscaled/upscaled_affine on the centre grid put it."""
    s = 4
    hr_aff = BASE.copy()
    lr_aff = downscaled_affine(hr_aff, (s, s, 1), "centre")
    # a linear ramp in world coordinates: block means equal the ramp at the block centre
    ijk = np.stack(np.meshgrid(np.arange(16), np.arange(12), [0], indexing="ij"), -1)
    g = np.array([0.3, -0.7, 0.2])
    hr = (apply_affine(hr_aff, ijk) @ g)[:, :, 0]
    lr = hr.reshape(4, s, 3, s).mean(axis=(1, 3))
    ijk_lr = np.stack(np.meshgrid(np.arange(4), np.arange(3), [0], indexing="ij"), -1)
    np.testing.assert_allclose(lr, (apply_affine(lr_aff, ijk_lr) @ g)[:, :, 0], atol=1e-9)
    np.testing.assert_allclose(upscaled_affine(lr_aff, (s, s, 1), "centre"), hr_aff, atol=1e-12)
