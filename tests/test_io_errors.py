"""Broken, mislabelled and unusable inputs: every failure is one DataError line naming the file."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

from iconet.data.errors import DataError
from iconet.data.io import read_volume, write_volume
from iconet.data.validate import require_volume
from iconet.data.volume import Volume

from _io_fixtures import anatomical, dicom_data, nib_data


def _one_line(err: DataError, path) -> str:
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.nii.gz"
    with pytest.raises(DataError, match="no such file") as e:
        read_volume(p)
    _one_line(e.value, p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.nii"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_volume(p)


def test_truncated_nii_gz(tmp_path):
    src = nib_data("example4d.nii.gz")
    p = tmp_path / "cut.nii.gz"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as e:
        read_volume(p, frame=1)
    _one_line(e.value, p)


def test_corrupt_nii_gz_stream(tmp_path):
    raw = gzip.decompress(nib_data("example4d.nii.gz").read_bytes())
    comp = bytearray(gzip.compress(raw))
    comp[len(comp) // 2: len(comp) // 2 + 64] = b"\x00" * 64  # damage the deflate stream
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(bytes(comp))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_volume(p, frame=1)  # the last frame: decompression must cross the damage


def test_truncated_uncompressed_nii(tmp_path):
    src = nib_data("anatomical.nii")
    p = tmp_path / "cut.nii"
    p.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated: header promises"):
        read_volume(p)


def test_png_named_nii_gz(tmp_path):
    from PIL import Image

    p = tmp_path / "scan.nii.gz"
    Image.fromarray(np.ones((4, 4), np.uint8)).save(p, format="PNG")
    with pytest.raises(DataError, match="is a PNG image, not a gzip-compressed NIfTI") as e:
        read_volume(p)
    _one_line(e.value, p)


def test_text_named_dcm(tmp_path):
    p = tmp_path / "IM0001.dcm"
    p.write_text("patient list\nDoe^John\n")
    with pytest.raises(DataError, match="is a text file, not a DICOM file"):
        read_volume(p)


def test_gzipped_nii_named_nii(tmp_path):
    p = tmp_path / "x.nii"
    shutil.copy(nib_data("example4d.nii.gz"), p)
    with pytest.raises(DataError, match="rename it to .nii.gz"):
        read_volume(p, frame=0)


def test_dicom_without_extension_is_found_by_content(tmp_path):
    p = tmp_path / "1.3.6.1.4.1.5962.1"
    shutil.copy(dicom_data("MR_small.dcm"), p)
    assert read_volume(p).shape == (64, 64, 1)


def test_unknown_format(tmp_path):
    p = tmp_path / "blob.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="unknown format"):
        read_volume(p)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="holds no DICOM images .*subfolders"):
        read_volume(tmp_path)


def test_2d_where_a_volume_is_needed(tmp_path):
    v = read_volume(dicom_data("MR_small.dcm"))
    with pytest.raises(DataError, match="2-D image"):
        require_volume(v)
    with pytest.raises(DataError, match="2-D image"):
        read_volume(dicom_data("MR_small.dcm"), require_3d=True)
    assert require_volume(anatomical()) is not None


def test_5d_nifti(tmp_path):
    p = tmp_path / "five.nii"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2, 2, 2), np.int16), np.eye(4)), p)
    with pytest.raises(DataError, match="5-D") as e:
        read_volume(p)
    _one_line(e.value, p)


def _with_nonfinite(tmp_path):
    data = anatomical().data.astype(np.float32)
    data[1, 2, 3] = np.nan
    data[4, 5, 6] = np.nan
    data[0, 0, 0] = np.inf
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), p)
    return p


def test_nan_refused_with_count(tmp_path):
    p = _with_nonfinite(tmp_path)
    with pytest.raises(DataError, match="2 NaN and 1 infinite voxels") as e:
        read_volume(p)
    assert "nan_policy='zero'" in _one_line(e.value, p)


def test_nan_zero_policy(tmp_path):
    v = read_volume(_with_nonfinite(tmp_path), nan_policy="zero")
    assert np.isfinite(v.data).all()
    assert v.data[1, 2, 3] == 0 and v.data[0, 0, 0] == 0
    assert v.meta["nonfinite_replaced"] == 3
    with pytest.raises(ValueError):
        read_volume(_with_nonfinite(tmp_path), nan_policy="ignore")


@pytest.mark.parametrize("suffix", [".nii.gz", ".npy"])
def test_all_zero_volume(tmp_path, suffix):
    p = tmp_path / f"zero{suffix}"
    if suffix == ".npy":
        np.save(p, np.zeros((4, 4, 4), np.float32))
    else:
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), p)
    with pytest.raises(DataError, match="all 64 voxels are 0"):
        read_volume(p)


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz"])
def test_max_bytes(name):
    p = nib_data(name)
    with pytest.raises(DataError, match="max_bytes=100"):
        read_volume(p, max_bytes=100, frame=0)
    v = read_volume(p, max_bytes=10**8, frame=0)
    assert v.data.nbytes <= 10**8


def test_options_for_the_wrong_format(tmp_path):
    with pytest.raises(DataError, match="series_uid"):
        read_volume(nib_data("anatomical.nii"), series_uid="1.2.3")
    with pytest.raises(DataError, match="spacing="):
        read_volume(nib_data("anatomical.nii"), spacing=(1, 1, 1))
    with pytest.raises(DataError, match="frame="):
        read_volume(dicom_data("MR_small.dcm"), frame=0)


def test_write_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="cannot write extension '.jpg'"):
        write_volume(Volume(np.ones((2, 2))), tmp_path / "x.jpg")


def test_failed_write_leaves_nothing(tmp_path):
    bad = Volume(np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match="NaN"):
        write_volume(bad, tmp_path / "series")
    assert not list(tmp_path.iterdir())
