"""Writing PNG/NPY loses the geometry: one plain note with the output's true spacing (issue 18, item 7).

The true spacing is the one nibabel reads back from the same output written as NIfTI.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from iconet.cli import main
from iconet.data.io import GeometryNotStored, read_volume, write_volume
from iconet.data.samples import sample_path


@pytest.fixture()
def nifti_slice(tmp_path):
    """One axial slice of the package sample, with anisotropic spacing 0.8 x 0.9 x 3 mm."""
    img = nib.load(sample_path())
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    affine[:3, 3] = (-70.0, -100.0, 12.0)
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 4:5], affine), path)
    return path


def test_infer_to_png_prints_one_note_with_the_outputs_true_spacing(nifti_slice, tmp_path, capsys):
    assert main(["infer", str(nifti_slice), str(tmp_path / "sr.nii.gz"), "--model", "bicubic"]) == 0
    zooms = nib.load(tmp_path / "sr.nii.gz").header.get_zooms()  # the SR geometry, read back by nibabel
    capsys.readouterr()
    out = tmp_path / "sr.png"
    assert main(["infer", str(nifti_slice), str(out), "--model", "bicubic"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"note: {out} stores no geometry; the {zooms[0]:.4g} x {zooms[1]:.4g} mm pixel spacing "
                   f"({zooms[2]:.4g} mm slice), orientation and position are not written"]
    assert (zooms[0], zooms[1], zooms[2]) == pytest.approx((0.4, 0.45, 3.0))


def test_a_volume_to_npy_names_its_three_voxel_sizes(tmp_path, capsys):
    out = tmp_path / "sr.npy"
    assert main(["infer", str(sample_path()), str(out), "--model", "bicubic"]) == 0
    zooms = nib.load(sample_path()).header.get_zooms()
    assert capsys.readouterr().err.splitlines() == [
        f"note: {out} stores no geometry; the {zooms[0] / 2:.4g} x {zooms[1] / 2:.4g} x {zooms[2]:.4g} mm voxel "
        "spacing, orientation and position are not written"]


def test_png_in_png_out_says_nothing_about_a_spacing_it_never_had(nifti_slice, tmp_path, capsys):
    lr_png = tmp_path / "lr.png"
    write_volume(read_volume(sample_path()).with_data(np.asarray(nib.load(nifti_slice).dataobj), np.eye(4)), lr_png)
    assert main(["infer", str(lr_png), str(tmp_path / "sr.png"), "--model", "bicubic"]) == 0
    assert capsys.readouterr().err == ""


def test_python_callers_get_a_warning_category_attributed_to_their_own_line(nifti_slice, tmp_path):
    vol = read_volume(nifti_slice)
    with pytest.warns(GeometryNotStored) as caught:
        write_volume(vol, tmp_path / "lr.npy")
    assert len(caught) == 1 and caught[0].filename == __file__
    assert str(caught[0].message) == (f"{tmp_path / 'lr.npy'} stores no geometry; the 0.8 x 0.9 mm pixel spacing "
                                      "(3 mm slice), orientation and position are not written")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an identity affine loses nothing: no warning at all
        write_volume(vol.with_data(vol.data, np.eye(4)), tmp_path / "plain.npy")
