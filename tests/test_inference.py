"""Volume in → volume out: geometry on content, intensities, tiling, planes, bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from iconet.data.degrade import bicubic_downsample, crop_to_multiple, kspace_truncate
from iconet.data.geometry import downscaled_affine
from iconet.data.io import read_volume
from iconet.data.samples import sample_path
from iconet.data.volume import Volume
from iconet.inference import InferenceOptions, restore_dtype, slice_axis, super_resolve
from iconet.runtime import resolve_device
from iconet.models import build_model


def _hr_slab() -> Volume:
    vol = read_volume(sample_path())  # 181 x 217 x 8, RAS, slices along axis 2
    data = torch.from_numpy(vol.data.astype(np.float32)).permute(2, 0, 1)  # (8, 181, 217)
    data = crop_to_multiple(data, 4)  # even sides for both grids (DESIGN §2)
    return Volume(data.permute(1, 2, 0).numpy(), vol.affine, source=vol.source)


def _lr_of(hr: Volume, grid: str) -> Volume:
    x = torch.from_numpy(hr.data).permute(2, 0, 1)
    lr = kspace_truncate(x, 2) if grid == "kspace" else bicubic_downsample(x, 2)
    return Volume(lr.permute(1, 2, 0).numpy(), downscaled_affine(hr.affine, (2, 2, 1), grid))


def _best_shift(a: np.ndarray, b: np.ndarray, radius: int = 2) -> tuple[int, int]:
    """Integer in-plane shift of ``a`` that best matches ``b`` (borders ignored)."""
    best, arg = np.inf, (0, 0)
    r = radius + 2
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            err = np.mean((np.roll(a, (dy, dx), axis=(0, 1))[r:-r, r:-r] - b[r:-r, r:-r]) ** 2)
            if err < best:
                best, arg = err, (dy, dx)
    return arg


@pytest.mark.parametrize("grid, name", [("kspace", "zerofill"), ("kspace", "bicubic"), ("centre", "bicubic")])
def test_output_lands_on_the_hr_grid_in_world_space_and_on_content(grid, name):
    hr = _hr_slab()
    lr = _lr_of(hr, grid)
    model = build_model(name, grid=grid)
    out = super_resolve(model, lr, grid=grid)["sr"]
    assert out.shape == hr.shape
    # Header: the SR volume's voxel centres are the HR volume's voxel centres.
    np.testing.assert_allclose(out.affine, hr.affine, atol=1e-9)
    ijk = np.array([[0, 0, 0], [10, 7, 3], [hr.shape[0] - 1, hr.shape[1] - 1, 7]])
    np.testing.assert_allclose(nib.affines.apply_affine(out.affine, ijk), nib.affines.apply_affine(hr.affine, ijk))
    # Content: no shift between the SR output and the HR it was made from.
    for k in (2, 5):
        assert _best_shift(out.data[..., k].astype(np.float64), hr.data[..., k].astype(np.float64)) == (0, 0)


def test_wrong_grid_is_caught_by_the_content_check():
    # The same check fails when the model interpolates on the other grid: the test can fail.
    hr = _hr_slab()
    lr = _lr_of(hr, "kspace")
    out = super_resolve(build_model("bicubic", grid="centre"), lr, grid="centre")["sr"]
    assert _best_shift(out.data[..., 3].astype(np.float64), hr.data[..., 3].astype(np.float64)) != (0, 0)


def test_integer_input_keeps_its_dtype_and_is_clipped_not_wrapped():
    hr = _hr_slab()
    lr = _lr_of(hr, "kspace")
    lr8 = Volume(np.clip(np.rint(lr.data), 0, 255).astype(np.uint8), lr.affine)
    out = super_resolve(build_model("zerofill"), lr8, grid="kspace")["sr"]
    assert out.data.dtype == np.uint8
    ref = super_resolve(build_model("zerofill"), Volume(lr8.data.astype(np.float32), lr8.affine), grid="kspace")["sr"]
    np.testing.assert_array_equal(out.data, np.clip(np.rint(ref.data), 0, 255).astype(np.uint8))
    assert restore_dtype(np.array([-3.0, 70000.0]), np.int16).tolist() == [-3, 32767]


def test_ct_in_hounsfield_units_keeps_negative_values():
    from iconet.data.normalize import NormalizeConfig

    hr = _hr_slab()
    ct = Volume((hr.data * 16 - 1000).astype(np.int16), hr.affine, modality="CT")  # up to ~2000 HU
    lr = _lr_of(ct, "centre")
    lr = Volume(np.rint(lr.data).astype(np.int16), lr.affine, modality="CT")
    out = super_resolve(build_model("bicubic", grid="centre"), lr, grid="centre",
                        normalization=NormalizeConfig(method="window", low=-1000, high=1000))["sr"]
    assert out.data.dtype == np.int16 and out.modality == "CT"
    # Hounsfield units come back, including values outside the normalisation window.
    assert out.data.min() < -900 and out.data.max() > 1200
    assert abs(float(out.data.mean()) - float(lr.data.mean())) < 5


def test_tiled_and_untiled_agree_on_a_real_slice():
    torch.manual_seed(0)
    model = build_model({"name": "edsr", "n_feats": 8, "n_blocks": 2, "grid": "centre"}).eval()
    lr = _lr_of(_hr_slab(), "centre")
    whole = super_resolve(model, lr, grid="centre", options=InferenceOptions(tile=0))["sr"].data
    tiled = super_resolve(model, lr, grid="centre", options=InferenceOptions(tile=48, overlap=0.5))["sr"].data
    peak = float(whole.max())
    mse = float(np.mean((whole.astype(np.float64) - tiled) ** 2))
    # Stated tolerance: tiles see replicated borders, blended with Gaussian weights.
    assert 10 * np.log10(peak**2 / mse) > 45


def test_save_rec_returns_the_reconstruction_at_input_geometry():
    model = build_model({"name": "iconet", "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1})
    lr = _lr_of(_hr_slab(), "kspace")
    out = super_resolve(model, lr, grid="kspace", options=InferenceOptions(save_rec=True, batch=3))
    assert out["rec"].shape == lr.shape and np.allclose(out["rec"].affine, lr.affine)
    with pytest.raises(ValueError, match="no reconstruction output"):
        super_resolve(build_model("edsr", n_blocks=1, n_feats=8), lr, grid="kspace", options=InferenceOptions(save_rec=True))


def test_plane_selection():
    aniso = Volume(np.zeros((4, 5, 6), np.float32), np.diag([1.0, 3.0, 1.0, 1.0]))
    assert slice_axis(aniso, None) == 1  # the coarsest axis: slices hold the two finest
    lia = Volume(np.zeros((4, 5, 6), np.float32), np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]]))
    assert [slice_axis(lia, p) for p in ("sagittal", "coronal", "axial")] == [0, 2, 1]
    out = super_resolve(build_model("bicubic"), Volume(np.random.rand(6, 8, 10).astype(np.float32), lia.affine),
                        grid="kspace", options=InferenceOptions(plane="axial"))["sr"]
    assert out.shape == (12, 8, 20)


def test_bad_input():
    with pytest.raises(ValueError, match="channels"):
        super_resolve(build_model("bicubic", in_channels=2), np.random.rand(8, 8, 2), grid="kspace")
    with pytest.raises(ValueError, match="plane"):
        InferenceOptions(plane="oblique")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
