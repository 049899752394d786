"""``--series-uid`` on ``iconet infer`` / ``iconet eval``: one series out of a DICOM folder that holds
several (every scanner export has localisers), and the error that names the flag.

The folder is built from pydicom's real test slices: MR_small.dcm (64 x 64, MR) and CT_small.dcm
(128 x 128, CT, HU), each stacked into a short series with its own SeriesInstanceUID.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from iconet.cli import main
from iconet.data.errors import DataError
from iconet.data.io import read_volume

from _io_fixtures import dicom_data

MR_SLICES, CT_SLICES = 4, 3


def _stack(name: str, folder: Path, n: int, description: str, prefix: str) -> str:
    """Write ``n`` slices of pydicom's real ``name`` into ``folder`` as one series (each slice one
    slice thickness further along the slice normal, its pixels rolled by 3 rows per slice so
    that the slices differ); returns the SeriesInstanceUID."""
    uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ds = pydicom.dcmread(dicom_data(name))
        pixels = np.roll(ds.pixel_array, 3 * i, axis=0)
        row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        step = float(ds.SliceThickness) * np.cross(row, col)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array(ds.ImagePositionPatient, float) + i * step]
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesDescription = description
        ds.PixelData = pixels.astype(pixels.dtype).tobytes()
        ds.save_as(folder / f"{prefix}{i:03d}.dcm")
    return uid


@pytest.fixture
def two_series(tmp_path):
    """A DICOM folder with an MR and a CT series, and a folder with the MR series alone."""
    both = tmp_path / "export"
    mr_uid = _stack("MR_small.dcm", both, MR_SLICES, "t1 slab", "mr")
    ct_uid = _stack("CT_small.dcm", both, CT_SLICES, "ct localiser", "ct")
    alone = tmp_path / "mr_only"
    alone.mkdir()
    for f in both.glob("mr*.dcm"):
        shutil.copy(f, alone / f.name)
    return both, alone, mr_uid, ct_uid


def test_the_several_series_error_names_the_flag_the_api_and_every_series(two_series):
    both, _, mr_uid, ct_uid = two_series
    with pytest.raises(DataError) as err:
        read_volume(both)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(both))
    assert "--series-uid UID" in msg and "series_uid=" in msg
    assert f"{mr_uid} ('t1 slab', MR, {MR_SLICES} slices in {MR_SLICES} files)" in msg
    assert f"{ct_uid} ('ct localiser', CT, {CT_SLICES} slices in {CT_SLICES} files)" in msg


def test_infer_refuses_several_series_without_the_flag_and_writes_nothing(two_series, tmp_path, capsys):
    both, _, mr_uid, ct_uid = two_series
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(both), str(out), "--model", "bicubic", "--tile", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("iconet: error: ")
    assert "--series-uid" in err and mr_uid in err and ct_uid in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["export", "mr_only"]


@pytest.mark.parametrize("which", ["mr", "ct"])
def test_infer_reads_the_series_asked_for(two_series, tmp_path, capsys, which):
    both, alone, mr_uid, ct_uid = two_series
    uid = mr_uid if which == "mr" else ct_uid
    picked = tmp_path / "picked.nii.gz"
    args = ["--model", "bicubic", "--tile", "0", "--quiet"]
    assert main(["infer", str(both), str(picked), "--series-uid", uid, *args]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {picked}"
    img = nib.load(picked)
    src = read_volume(both, series_uid=uid)
    assert src.modality == which.upper()
    n = MR_SLICES if which == "mr" else CT_SLICES
    assert src.shape[2] == n and img.shape == (2 * src.shape[0], 2 * src.shape[1], n)
    if which == "mr":  # the same bytes as the series read from a folder that holds it alone
        ref = tmp_path / "alone.nii.gz"
        assert main(["infer", str(alone), str(ref), *args]) == 0
        np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(nib.load(ref).dataobj))
        np.testing.assert_array_equal(img.affine, nib.load(ref).affine)
    else:  # HU kept: the CT's air stays far below 0
        assert np.asarray(img.dataobj).min() < -500


def test_infer_series_uid_errors(two_series, tmp_path, capsys):
    both, _, mr_uid, _ = two_series
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(both), str(out), "--model", "bicubic", "--series-uid", "1.2.3"]) == 2
    err = capsys.readouterr().err
    assert "has no series 1.2.3" in err and mr_uid in err and not out.exists()
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), nifti)
    assert main(["infer", str(nifti), str(out), "--model", "bicubic", "--series-uid", mr_uid]) == 2
    assert "only applies to DICOM input" in capsys.readouterr().err and not out.exists()
    data_set = tmp_path / "cases"
    (data_set / "a").mkdir(parents=True)
    shutil.copy(nifti, data_set / "a" / "scan.nii.gz")
    assert main(["infer", str(data_set), str(tmp_path / "o"), "--model", "bicubic", "--series-uid", mr_uid]) == 2
    assert "--series-uid picks a series of one DICOM folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _scores(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    return summary["models"]


def test_eval_scores_the_series_asked_for_and_refuses_without_it(two_series, tmp_path, capsys):
    both, alone, mr_uid, ct_uid = two_series
    common = ["--models", "bicubic", "--degradation", "bicubic", "--quiet"]
    assert main(["eval", str(both), *common, "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "--series-uid" in err and mr_uid in err and ct_uid in err and not (tmp_path / "none").exists()
    assert main(["eval", str(both), *common, "--series-uid", mr_uid, "--out", str(tmp_path / "picked")]) == 0
    assert main(["eval", str(alone), *common, "--out", str(tmp_path / "alone")]) == 0
    picked, ref = _scores(tmp_path / "picked")["bicubic"], _scores(tmp_path / "alone")["bicubic"]
    assert picked["sr"] == ref["sr"] and np.isfinite(picked["sr"]["psnr"][0])  # the timings differ, not the scores
    rows = (tmp_path / "picked" / "per_volume.csv").read_text().splitlines()
    assert rows[1].split(",")[rows[0].split(",").index("slices")] == str(MR_SLICES)
    capsys.readouterr()
    assert main(["eval", str(both), str(alone), *common, "--series-uid", mr_uid, "--out", str(tmp_path / "two")]) == 2
    assert "give that folder alone as DATA" in capsys.readouterr().err
