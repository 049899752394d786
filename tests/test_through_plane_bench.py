"""The through-plane benchmark's own machinery (benchmarks/through_plane.py): its interpolation is
scipy's, its slice positions are exact, its forward-model check agrees with the library on real
data, and its masked scores reduce to scikit-image's where they should."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import through_plane as tp  # noqa: E402

from iconet.data.io import read_volume  # noqa: E402
from iconet.data.volume import Volume  # noqa: E402

SLAB = REPO / "src" / "iconet" / "samples" / "colin27_slab.nii.gz"


def test_bspline_matrix_is_scipys_cubic_interpolation():
    rng = np.random.default_rng(0)
    f = rng.random(23)
    pos = np.linspace(-1.3, 23.4, 57)  # outside the samples too (mirror boundary)
    w = tp.bspline_matrix(23, pos)
    assert np.allclose(w @ f, ndimage.map_coordinates(f, [pos], order=3, mode="mirror"), atol=1e-12)


def test_lanczos_matrix_interpolates_at_nodes_and_sums_to_one():
    w = tp.lanczos_matrix(17, np.arange(17.0))
    assert np.allclose(w, np.eye(17), atol=1e-12)
    w = tp.lanczos_matrix(17, np.linspace(-0.4, 16.4, 40))
    assert np.allclose(w.sum(axis=1), 1.0)


@pytest.mark.parametrize("spacing", [4.0, 5.0, 6.4])
def test_thick_then_cubic_puts_every_slice_where_its_affine_says(spacing):
    """A ramp along the thick axis survives blur + sampling + cubic interpolation exactly in the
    interior (both reproduce linear signals; the mirror boundary's effect on the spline decays
    by 0.27 per sample, so 8 thick slices from the ends it is below 1e-4): any error in a slice
    centre's position shows as an offset of the ramp (3 per voxel)."""
    n = 160
    ramp = np.broadcast_to(np.arange(n, dtype=np.float32) * 3.0 + 10.0, (5, 6, n)).copy()
    hr = Volume(ramp, np.diag([1.0, 1.0, 1.0, 1.0]))
    thick = tp.thick(hr, 2, tp.Setting("t", spacing, spacing))
    out, _ = tp.resample_to(thick.data, thick.affine, hr.affine, hr.shape, kind="cubic")
    inner = slice(int(8 * spacing), n - int(8 * spacing))
    assert np.abs(out[..., inner] - ramp[..., inner]).max() < 1e-3


def test_reference_forward_model_agrees_with_the_library_on_real_data():
    slab = read_volume(SLAB)  # a real Colin27 slab, 1 mm along axes 0 and 1
    hr = slab.with_data(np.asarray(slab.data, dtype=np.float32))
    for axis, setting in ((0, tp.SETTINGS["4mm"]), (1, tp.SETTINGS["4mm-gap"]), (0, tp.SETTINGS["5mm"])):
        thick = tp.thick(hr, axis, setting)
        ref = tp.reference_thick(hr.data, hr.affine, thick.affine, axis, thick.shape[axis], setting.fwhm_mm)
        assert np.abs(ref - thick.data).max() < 1e-3 * float(hr.data.max())


def test_masked_scores_reduce_to_scikit_image():
    rng = np.random.default_rng(1)
    hr = ndimage.gaussian_filter(rng.random((20, 22, 24)), 2) * 200
    pred = hr + rng.normal(0, 2, hr.shape)
    everywhere = np.ones(hr.shape, dtype=bool)
    s = tp.score(pred, hr, everywhere)
    ref_ssim = structural_similarity(hr, pred, data_range=hr.max(), win_size=7, gaussian_weights=False)
    assert s["ssim"] == pytest.approx(ref_ssim, abs=1e-12)
    assert s["psnr"] == pytest.approx(10 * math.log10(hr.max() ** 2 / np.mean((pred - hr) ** 2)), abs=1e-9)
    # a mask's bounding-box crop gives the same SSIM map values as the whole volume
    mask = np.zeros(hr.shape, dtype=bool)
    mask[6:14, 5:15, 8:18] = True
    _, smap = structural_similarity(hr, pred, data_range=hr.max(), win_size=7, gaussian_weights=False, full=True)
    assert tp.score(pred, hr, mask)["ssim"] == pytest.approx(float(smap[mask].mean()), abs=1e-12)


def test_head_mask_keeps_the_head_and_not_the_background():
    slab = read_volume(SLAB)
    data = np.asarray(slab.data, dtype=np.float32)
    mask = tp.head_mask(data)
    assert 0.3 < mask.mean() < 0.8  # a head in a tight field of view
    assert data[mask].mean() > 5 * max(float(data[~mask].mean()), 1.0)
