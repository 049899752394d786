"""NIfTI-1/2 reading and writing on nibabel's real test images."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from iconet.data.errors import DataError
from iconet.data.io import read_volume, write_volume
from iconet.data.volume import Volume

from _io_fixtures import anatomical, nib_data, oblique


def test_anatomical_big_endian_keeps_dtype_and_affine():
    p = nib_data("anatomical.nii")
    v = read_volume(p)
    img = nib.load(p)
    assert v.shape == (33, 41, 25)
    assert v.data.dtype == np.dtype(np.int16) and v.data.dtype.isnative
    np.testing.assert_array_equal(v.data, np.asanyarray(img.dataobj))
    np.testing.assert_allclose(v.affine, img.affine)
    assert v.orientation == "LAS"
    assert v.meta["qform_code"] == 2 and v.meta["sform_code"] == 2
    assert v.source == p and v.name == "anatomical"


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_data_dtype_affine_codes(tmp_path, suffix):
    v = anatomical()
    out = write_volume(v, tmp_path / f"t1{suffix}", reference=v, description="round trip")
    w = read_volume(out)
    assert w.data.dtype == v.data.dtype
    np.testing.assert_array_equal(w.data, v.data)
    np.testing.assert_allclose(w.affine, v.affine, atol=1e-6)
    assert (w.meta["qform_code"], w.meta["sform_code"]) == (2, 2)
    assert w.meta["descrip"] == "round trip"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_round_trip_other_dtypes_oblique(tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = (rng.random((6, 5, 4)) * 200 + 1).astype(dtype)
    v = Volume(data, oblique(np.diag([0.7, 0.8, 2.5, 1.0])))
    w = read_volume(write_volume(v, tmp_path / "x.nii.gz"))
    assert w.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(w.data, data)
    np.testing.assert_allclose(w.affine, v.affine, atol=1e-5)


def test_codes_without_reference_default_to_scanner(tmp_path):
    v = Volume(np.ones((3, 3, 3), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    w = read_volume(write_volume(v, tmp_path / "x.nii"))
    assert (w.meta["qform_code"], w.meta["sform_code"]) == (1, 1)


def test_sheared_affine_survives(tmp_path):
    a = np.diag([1.0, 1.0, 2.0, 1.0])
    a[1, 2] = 0.4  # gantry tilt
    v = Volume(np.arange(27, dtype=np.int16).reshape(3, 3, 3) + 1, a)
    w = read_volume(write_volume(v, tmp_path / "tilt.nii.gz"))
    np.testing.assert_allclose(w.affine, a, atol=1e-6)


def test_4d_needs_frame_and_lists_count():
    p = nib_data("example4d.nii.gz")
    with pytest.raises(DataError, match="2 frames") as e:
        read_volume(p)
    assert str(e.value).startswith(str(p))
    with pytest.raises(DataError, match="out of range"):
        read_volume(p, frame=2)
    v = read_volume(p, frame=1)
    np.testing.assert_array_equal(v.data, np.asanyarray(nib.load(p).dataobj)[..., 1])
    assert v.meta["frame"] == 1 and v.meta["n_frames"] == 2


def test_nifti2(tmp_path):
    p = nib_data("example_nifti2.nii.gz")
    v = read_volume(p, frame=0)
    assert v.meta["nifti_version"] == 2 and v.data.dtype == np.int16
    out = write_volume(v, tmp_path / "n2.nii.gz", reference=v)
    assert isinstance(nib.load(out), nib.Nifti2Image)
    w = read_volume(out)
    np.testing.assert_array_equal(w.data, v.data)
    np.testing.assert_allclose(w.affine, v.affine, atol=1e-5)


def test_scaled_file_gives_float():
    p = nib_data("functional.nii")  # int16 on disk with scl_slope / scl_inter
    img = nib.load(p)
    v = read_volume(p, frame=3)
    assert v.data.dtype == np.float32
    np.testing.assert_allclose(v.data, img.get_fdata()[..., 3], rtol=1e-6)
    assert v.meta["rescale"]["slope"] == pytest.approx(float(img.dataobj.slope))


def test_3d_file_with_frame(tmp_path):
    p = nib_data("anatomical.nii")
    assert read_volume(p, frame=0).shape == (33, 41, 25)
    with pytest.raises(DataError, match="1 frame"):
        read_volume(p, frame=1)


def test_2d_image_and_require_3d(tmp_path):
    out = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(1, 13, dtype=np.int16).reshape(3, 4), np.eye(4)), out)
    v = read_volume(out)
    assert v.shape == (3, 4, 1)
    with pytest.raises(DataError, match="2-D image"):
        read_volume(out, require_3d=True)


def test_5d_refused(tmp_path):
    out = tmp_path / "vec.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3, 2, 3), np.float32), np.eye(4)), out)
    with pytest.raises(DataError, match="5-D"):
        read_volume(out)


def test_existing_file_replaced_atomically(tmp_path):
    v = anatomical()
    out = tmp_path / "x.nii.gz"
    write_volume(v, out)
    write_volume(v.with_data(v.data * 2), out)
    np.testing.assert_array_equal(read_volume(out).data, v.data * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]
