"""``iconet infer``: real files in, same format out, geometry, refusals, folders."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from iconet.cli import main
from iconet.data.io import read_volume
from iconet.data.samples import sample_path
from iconet.export import export_run

from _run_fixtures import make_run


@pytest.fixture()
def lr_nifti(tmp_path) -> Path:
    img = nib.load(sample_path())
    path = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:90, :108, :4], img.affine), path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nifti_in_nifti_out_on_the_kspace_grid(lr_nifti, tmp_path, capsys):
    before = _digest(lr_nifti)
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--model", "zerofill", "--scale", "2"]) == 0
    assert _digest(lr_nifti) == before  # the input is never modified
    src, res = nib.load(lr_nifti), nib.load(out)
    assert res.shape == (180, 216, 4) and res.get_data_dtype() == src.get_data_dtype()
    # voxel (2i, 2j, k) of the output sits where voxel (i, j, k) of the input sits
    ijk = np.array([[0, 0, 0], [5, 9, 2], [89, 107, 3]])
    np.testing.assert_allclose(
        nib.affines.apply_affine(res.affine, ijk * [2, 2, 1]), nib.affines.apply_affine(src.affine, ijk)
    )


def test_existing_output_is_refused_and_left_untouched(lr_nifti, tmp_path, capsys):
    out = tmp_path / "sr.nii.gz"
    out.write_bytes(b"mine")
    assert main(["infer", str(lr_nifti), str(out), "--model", "bicubic"]) == 2
    assert "output exists (use --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main(["infer", str(lr_nifti), str(out), "--model", "bicubic", "--overwrite"]) == 0
    assert nib.load(out).shape == (180, 216, 4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.nii.gz", "x.nii.gz"], "missing.nii.gz: input not found"),
        (["LR", "no/such/folder/x.nii.gz"], "output folder does not exist"),
        (["LR", "x.nii.gz", "--device", "cuda"], "no CUDA device"),
        (["LR", "x.nii.gz", "--model", "no-such-model"], "no exported model folder or shipped model named 'no-such-model'; shipped models: "),
        (["LR", "LR"], "output would overwrite the input"),
    ],
)
def test_bad_requests_are_one_line_errors_before_any_output(argv, message, lr_nifti, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [str(lr_nifti) if a == "LR" else a for a in argv]
    assert main(["infer", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("iconet: error: ")
    assert not (tmp_path / "x.nii.gz").exists()


def test_dicom_series_output_is_a_new_series_that_reads_back(lr_nifti, tmp_path):
    dcm_in = tmp_path / "series_in"
    assert main(["infer", str(lr_nifti), str(dcm_in), "--model", "bicubic"]) == 0  # NIfTI -> DICOM
    out = tmp_path / "series_out"
    assert main(["infer", str(dcm_in), str(out), "--model", "bicubic", "--scale", "2"]) == 0  # DICOM -> DICOM
    first_in = pydicom.dcmread(sorted(dcm_in.iterdir())[0])
    files = sorted(out.iterdir())
    assert len(files) == 4
    ds = pydicom.dcmread(files[0])
    assert ds.SeriesInstanceUID != first_in.SeriesInstanceUID
    assert ds.StudyInstanceUID == first_in.StudyInstanceUID
    assert (ds.Rows, ds.Columns) == (first_in.Rows * 2, first_in.Columns * 2)
    assert [float(v) for v in ds.PixelSpacing] == [float(v) / 2 for v in first_in.PixelSpacing]
    # nibabel reads the new slices too, with the same pixels and geometry
    with warnings.catch_warnings():  # nibabel calls its DICOM readers experimental on import
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import dicomwrappers

    wrapped = dicomwrappers.wrapper_from_file(str(files[0]))
    np.testing.assert_array_equal(wrapped.get_data(), ds.pixel_array)
    np.testing.assert_allclose(wrapped.image_position, [float(v) for v in ds.ImagePositionPatient])
    vin, vout = read_volume(dcm_in), read_volume(out)
    np.testing.assert_allclose(vout.world(np.array([[0, 0, 0], [8, 6, 3]])),
                               vin.world(np.array([[0, 0, 0], [4, 3, 3]])), atol=1e-4)


def test_exported_model_with_reconstruction_output(lr_nifti, tmp_path):
    model_dir = export_run(make_run(tmp_path), tmp_path / "model")
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--model", str(model_dir), "--save-rec", "--batch", "3"]) == 0
    assert nib.load(out).shape == (180, 216, 4)
    rec = nib.load(tmp_path / "sr_rec.nii.gz")
    assert rec.shape == (90, 108, 4) and np.allclose(rec.affine, nib.load(lr_nifti).affine)
    assert main(["infer", str(lr_nifti), str(tmp_path / "y.nii.gz"), "--model", str(model_dir), "--scale", "4"]) == 2


def test_a_folder_of_volumes_goes_on_past_failures(lr_nifti, tmp_path, capsys):
    src = tmp_path / "archive"
    src.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        (src / name).write_bytes(lr_nifti.read_bytes())
    (src / "broken.nii.gz").write_bytes(lr_nifti.read_bytes()[:200])  # truncated
    out = tmp_path / "out"
    assert main(["infer", str(src), str(out), "--model", "bicubic"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz"]
    captured = capsys.readouterr()
    assert "2 of 3 volume(s) written" in captured.out and "broken.nii.gz" in captured.err


def test_scale_picks_the_shipped_model_of_that_scale(lr_nifti, tmp_path, capsys, monkeypatch):
    import iconet.hub as hub
    from test_api import _export_x4

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    export_run(make_run(tmp_path, "edsr"), zoo / "iconet-t1-x2")
    monkeypatch.setattr(hub, "_zoo_root", lambda: zoo)
    out = tmp_path / "x4.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--scale", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iconet: error: no shipped model for x4 (iconet-t1-x4)")
    assert "shipped models: iconet-t1-x2" in err[0] and "--model DIR works with any exported model" in err[0]
    assert not out.exists()
    assert main(["infer", str(lr_nifti), str(tmp_path / "x2.nii.gz")]) == 0  # no --scale: x2
    assert nib.load(tmp_path / "x2.nii.gz").shape == (180, 216, 4)
    _export_x4(tmp_path, zoo / "iconet-t1-x4")
    assert main(["infer", str(lr_nifti), str(out), "--scale", "4"]) == 0
    assert nib.load(out).shape == (360, 432, 4)
    assert "edsr x4 (iconet-t1-x4" in nib.load(out).header["descrip"].tobytes().decode()


def test_memory_budget_and_tile_options(lr_nifti, tmp_path, capsys):
    whole = tmp_path / "whole.nii.gz"
    assert main(["infer", str(lr_nifti), str(whole), "--model", "bicubic", "--memory-budget", "2GiB"]) == 0
    small = tmp_path / "small.nii.gz"
    assert main(["infer", str(lr_nifti), str(small), "--model", "bicubic", "--memory-budget", "64KiB"]) == 0
    a, b = nib.load(whole).get_fdata(), nib.load(small).get_fdata()
    assert a.shape == b.shape == (180, 216, 4)
    assert 10 * np.log10(a.max() ** 2 / np.mean((a - b) ** 2)) > 40  # tiled (uint8 output) vs whole
    for argv, words in [
        (["--memory-budget", "lots"], "cannot read memory size 'lots'"),
        (["--memory-budget", "0"], "must be positive"),
        (["--tile", "-1"], "tile must be >= 0"),
        (["--grid", "centre", "--pad", "circular"], "bicubic: --pad circular extends slices as a k-space acquisition"),
    ]:
        assert main(["infer", str(lr_nifti), str(tmp_path / "bad.nii.gz"), "--model", "bicubic", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0]
        assert not (tmp_path / "bad.nii.gz").exists()


def test_a_folder_tree_of_mixed_formats_is_mirrored(lr_nifti, tmp_path, capsys):
    from iconet.data.io import write_volume

    vol = read_volume(lr_nifti)
    src = tmp_path / "archive"
    (src / "sub").mkdir(parents=True)
    (src / "a.nii.gz").write_bytes(lr_nifti.read_bytes())
    np.save(src / "sub" / "b.npy", vol.data[..., :2].astype(np.float32))
    write_volume(vol.with_data(vol.data[..., :1].astype(np.uint8)), src / "sub" / "c.png")
    write_volume(vol, src / "sub" / "series")  # a DICOM series folder
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "a.nii.gz").write_bytes(lr_nifti.read_bytes())  # hidden: skipped
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["infer", str(src), str(out), "--model", "bicubic"]) == 0
    assert "4 of 4 volume(s) written" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.parent.name != "series") == [
        "a.nii.gz", "sub", "sub/b.npy", "sub/c.png", "sub/series"]
    assert np.load(out / "sub" / "b.npy").shape == (180, 216, 2)
    assert read_volume(out / "sub" / "c.png").shape == (180, 216, 1)
    assert read_volume(out / "sub" / "series").shape == (180, 216, 4)
