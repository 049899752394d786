"""Thick-slice scans made isotropic (iconet.isotropic, ``iconet infer --isotropic``).

Real data only: the package's Colin27 slab (8 slices 4 mm apart, 1 mm pixels), a 1-mm volume
interpolated from it across its slices (its in-plane content is real and sharp), and pydicom's
CT_small.dcm (a real CT in HU). Fits are a few steps of a small model: these tests check the
pipeline, geometry and contracts; quality is measured in benchmarks/isotropic_design.py.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from iconet.cli import main
from iconet.data.io import read_volume, write_volume
from iconet.data.samples import sample_path
from iconet.data.through_plane import output_grid, sample_axis
from iconet.data.volume import Volume
from iconet.engine.isotropic_fit import FitConfig, fit_through_plane
from iconet.isotropic import apply_fitted, make_isotropic, prepare, thick_slices

#: a small model and patch: seconds per fit on a CPU
SMALL = FitConfig(width=8, heads=2, groups_per_stage=1, blocks_per_group=1, out_rows=32, columns=24, batch=4,
                  warmup_steps=10)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted([path] if path.is_file() else path.rglob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def slab() -> Volume:
    return read_volume(sample_path())


@pytest.fixture(scope="module")
def hr(slab) -> Volume:
    """A 1-mm volume: the slab's real in-plane content, cubic-interpolated across its slices
    (1-mm rows from the first slice to the last), cropped to the head; float32."""
    data = sample_axis(np.asarray(slab.data, dtype=np.float32), 2, 0.0, 0.25, 29)[40:136, 50:162]
    affine = slab.affine.copy()
    affine[:3, 2] /= 4.0
    affine[:3, 3] = slab.world(np.array([40.0, 50.0, 0.0]))
    return Volume(data, affine, modality="MR")


# --------------------------------------------------------------------------- the forward model


@pytest.mark.parametrize("spacing, fwhm", [(4.0, 4.0), (4.0, 3.0), (2.5, 2.5), (5.0, 6.5)])
def test_thick_slices_match_scipy_blur_and_sampling(hr, spacing, fwhm):
    thick = thick_slices(hr, 0, spacing, fwhm)
    d = hr.spacing[0]
    ref = ndimage.gaussian_filter1d(hr.data.astype(np.float64), fwhm / 2.3548 / d, axis=0, mode="nearest")
    # where each slice sits, from the affines alone: HR index = inv(A_hr) A_thick (m, 0, 0)
    m = np.arange(thick.shape[0])
    pos = (np.linalg.inv(hr.affine) @ thick.affine @ np.stack([m, 0 * m, 0 * m, 1 + 0 * m]))[0]
    assert thick.spacing[0] == pytest.approx(spacing)
    assert thick.spacing[1:] == pytest.approx(hr.spacing[1:])
    if np.allclose(pos, np.round(pos)):
        expected = ref[np.round(pos).astype(int)]
    else:
        grid = np.meshgrid(pos, np.arange(hr.shape[1]), np.arange(hr.shape[2]), indexing="ij")
        expected = ndimage.map_coordinates(ref, grid, order=3, mode="nearest")
    assert np.abs(thick.data - expected).max() <= 1e-3 * np.abs(expected).max()
    # the slices are centred on the HR extent and as many as fit
    assert pos[0] >= 0 and pos[-1] <= hr.shape[0] - 1 and pos[-1] + spacing / d > hr.shape[0] - 1
    assert thick.meta["slice_profile"] == {"axis": 0, "spacing_mm": spacing, "fwhm_mm": fwhm,
                                          "source": "iconet thick_slices"}


def test_thick_slice_profile_has_the_asked_fwhm():
    """A single bright plane seen through the profile at 0.5-mm sampling: its FWHM, read off by
    linear interpolation at half maximum, is the one asked for."""
    data = np.zeros((121, 4, 4), dtype=np.float32)
    data[60] = 1.0
    vol = Volume(data, np.diag([0.5, 1.0, 1.0, 1.0]))
    for fwhm in (2.0, 3.0, 5.0):
        prof = thick_slices(vol, 0, 0.5, fwhm).data[:, 0, 0].astype(np.float64)
        half = prof.max() / 2
        above = np.flatnonzero(prof >= half)
        lo, hi = above[0], above[-1]
        left = lo - 1 + (half - prof[lo - 1]) / (prof[lo] - prof[lo - 1])
        right = hi + (prof[hi] - half) / (prof[hi] - prof[hi + 1])
        assert (right - left) * 0.5 == pytest.approx(fwhm, rel=0.02)
        assert prof.sum() == pytest.approx(1.0, rel=1e-4)


def test_output_grid_keeps_slice_centres_and_the_field_of_view(slab):
    grids, affine = output_grid(slab, 1.0)
    g = grids[2]
    assert grids[0].identity and grids[1].identity
    # 8 slices 4 mm apart: one voxel before the first centre and one after the last stay inside
    # the half-slice, so 1 + 4*7 + 1 + 1 = 31 voxels, voxel 1 on the first slice centre
    assert (g.first, g.step, g.n) == (-0.25, 0.25, 31)
    for m in range(8):
        assert np.allclose(affine @ [0, 0, 1 + 4 * m, 1], slab.affine @ [0, 0, m, 1])
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), 1.0)


# --------------------------------------------------------------------------- geometry by content


def _shift_along(a: np.ndarray, b: np.ndarray, axis: int) -> float:
    """Sub-voxel shift of ``a`` against ``b`` along ``axis``: the peak of their normalised
    cross-correlation over whole-voxel shifts -2..2, refined by a parabola."""
    n = a.shape[axis]
    cc = []
    for s in range(-2, 3):
        x = np.take(a, np.arange(2, n - 2), axis=axis)
        y = np.take(b, np.arange(2 + s, n - 2 + s), axis=axis)
        x, y = x - x.mean(), y - y.mean()
        cc.append(float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum())))
    k = int(np.argmax(cc))
    assert 0 < k < 4, cc
    c0, c1, c2 = cc[k - 1], cc[k], cc[k + 1]
    return k - 2 + 0.5 * (c0 - c2) / (c0 - 2 * c1 + c2)


@pytest.mark.parametrize("axis", [0, 1])
def test_made_isotropic_lands_on_the_1mm_grid_by_content(hr, axis):
    thick = thick_slices(hr, axis, 4.0)
    out = make_isotropic(thick, fit_steps=20, fit_config=SMALL, progress=False, precision="fp32")
    assert np.allclose(out.spacing, 1.0)
    m = np.linalg.inv(hr.affine) @ out.affine  # output voxel -> HR voxel: a whole-voxel shift
    assert np.allclose(m[:3, :3], np.eye(3)) and np.allclose(m[:3, 3], np.round(m[:3, 3]))
    off = np.round(m[:3, 3]).astype(int)
    lo, hi = max(0, -off[axis]), min(out.shape[axis], hr.shape[axis] - off[axis])
    a = np.take(out.data, np.arange(lo, hi), axis=axis).astype(np.float64)
    b = np.take(hr.data, np.arange(lo + off[axis], hi + off[axis]), axis=axis).astype(np.float64)
    assert abs(_shift_along(a, b, axis)) < 0.2
    assert out.meta["iconet_isotropic"]["profile"]["axis"] == axis


# --------------------------------------------------------------------------- a short fit


def test_short_fit_lowers_the_loss_and_beats_cubic_on_held_out_slices(slab):
    cfg = FitConfig(width=16, heads=2, groups_per_stage=1, blocks_per_group=1, out_rows=32, columns=32, batch=8,
                    warmup_steps=10, lr=2e-3)
    job = prepare(slab, device="cpu", precision="fp32", fit_config=cfg)
    from iconet.data.plane_pairs import InPlanePairs

    pairs = InPlanePairs(job.thick, (1.0, 1.0), job.pairs.g, slices=list(range(6)))  # slices 6, 7 held out
    fit = fit_through_plane(pairs, cfg=cfg, minutes=0, steps=60, seed=0, progress=False)
    assert fit.loss_last < 0.8 * fit.loss_first
    import torch

    gains = []
    for z in (6, 7):
        for axis in (0, 1):  # degrade the held-out slice along either in-plane axis
            img = np.moveaxis(job.thick[z], axis, 0)  # (rows, columns), normalised
            thin = thick_slices(Volume(img[:, :, None]), 0, 4.0)  # identity affine: origin = first row
            lr, p0 = thin.data[:, :, 0], int(round(thin.affine[0, 3]))
            with torch.no_grad():
                sr = fit.model(torch.from_numpy(lr)[None, None])["sr"][-1][0, 0].numpy()
            n = min(4 * (lr.shape[0] - 1) + 1, img.shape[0] - p0)  # rows between the first and last slice
            truth = img[p0:p0 + n]
            rows = np.arange(n) / 4.0
            cubic = ndimage.map_coordinates(lr.astype(np.float64), np.meshgrid(rows, np.arange(lr.shape[1]), indexing="ij"),
                                            order=3, mode="nearest")

            def psnr(x: np.ndarray) -> float:
                return 10 * math.log10(1.0 / float(((x - truth) ** 2).mean()))

            gains.append(psnr(sr[:n]) - psnr(cubic))
    assert min(gains) > 0.5, gains  # dB over cubic; 1.26-1.45 when written (seeds 0 and 1)


# --------------------------------------------------------------------------- any sign, any unit


@pytest.fixture(scope="module")
def ct() -> Volume:
    """A 1-mm-like CT in HU from pydicom's CT_small.dcm: its real slice, drifting by half a
    pixel per slice along one axis, 40 slices of 0.66 mm; float32."""
    from pydicom.data import get_testdata_file

    src = read_volume(get_testdata_file("CT_small.dcm"))
    img = np.asarray(src.data[:, :, 0], dtype=np.float32)
    data = np.stack([ndimage.shift(img, (0, 0.5 * z), order=1, mode="nearest") for z in range(40)], axis=2)
    affine = src.affine.copy()
    affine[:3, 2] = np.cross(src.affine[:3, 0], src.affine[:3, 1]) / np.linalg.norm(src.affine[:3, 0])
    return Volume(data, affine, modality="CT", meta={"units": "HU"})


def test_ct_keeps_its_negative_hounsfield_units(ct):
    thick = thick_slices(ct, 2, 4 * ct.spacing[0])
    assert thick.data.min() < -800
    out = make_isotropic(thick, fit_steps=10, fit_config=SMALL, progress=False, precision="fp32")
    air_in = thick.data[:6, :6].ravel()
    air_out = out.data[:6, :6].ravel()
    assert out.data.min() < -800
    # air stays air: within 1 % of the scan's 0.5-99.5 percentile range of the input's median
    norm = out.meta["iconet_isotropic"]["normalization"]
    assert abs(np.median(air_out) - np.median(air_in)) < 0.01 * (norm["high"] - norm["low"])
    assert out.meta["iconet_isotropic"]["normalization"]["low"] < -800  # its own percentile, any sign
    assert out.modality == "CT"


# --------------------------------------------------------------------------- API, CLI, saved model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, slab) -> tuple[Path, Path, Volume]:
    """A 64x64x8 crop of the slab as a NIfTI file, made isotropic by the API (4 steps, seed 3,
    fp32) with the model saved: ``(scan, model folder, output)``."""
    root = tmp_path_factory.mktemp("fitted")
    scan = root / "thick.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(slab.data)[60:124, 70:134], slab.affine), scan)
    out = make_isotropic(scan, fit_steps=4, seed=3, precision="fp32", progress=False, save_model=root / "model")
    return scan, root / "model", out


def test_api_and_cli_agree(tmp_path, fitted):
    scan, _, api = fitted
    cli_out = tmp_path / "iso.nii.gz"
    before = _digest(scan)
    assert main(["infer", str(scan), str(cli_out), "--isotropic", "--fit-steps", "4", "--seed", "3",
                 "--precision", "fp32", "--quiet"]) == 0
    cli = read_volume(cli_out)
    assert _digest(scan) == before
    assert cli.shape == api.shape == (64, 64, 31) and np.allclose(cli.affine, api.affine, atol=1e-5)
    assert np.array_equal(cli.data, api.data)
    assert api.data.dtype == np.uint8  # the input's type


def test_a_saved_model_is_an_export_that_applies_without_fitting(tmp_path, fitted):
    scan, model_dir, api = fitted
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.yaml", "metrics.json", "model.safetensors",
                                                           "model_card.md"]
    card = (model_dir / "model_card.md").read_text()
    assert "4 mm apart" in card and "FWHM 4 mm" in card and "assumed equal to the slice spacing" in card
    assert "4 steps in" in card
    from iconet.hub import load_model

    model, info = load_model(model_dir)
    assert info.extra["isotropic"]["slice_spacing_mm"] == 4.0 and model.cfg.through_plane
    assert not model.cfg.nonnegative
    # applied again without fitting: the same volume as the fit gave, from the API and the CLI
    again = apply_fitted(model_dir, scan, precision="fp32", progress=False)
    assert np.array_equal(again.data, api.data)
    out = tmp_path / "iso2.nii.gz"
    assert main(["infer", str(scan), str(out), "--model", str(model_dir), "--precision", "fp32", "--quiet"]) == 0
    assert np.array_equal(read_volume(out).data, api.data)
    # a folder of scans of the protocol: each one made isotropic into the same relative path
    folder = tmp_path / "protocol"
    (folder / "b").mkdir(parents=True)
    for rel in ("a.nii.gz", "b/c.nii.gz"):
        (folder / rel).write_bytes(scan.read_bytes())
    assert main(["infer", str(folder), str(tmp_path / "isos"), "--model", str(model_dir), "--precision", "fp32",
                 "--quiet"]) == 0
    for rel in ("a.nii.gz", "b/c.nii.gz"):
        assert np.array_equal(read_volume(tmp_path / "isos" / rel).data, api.data)


def test_a_saved_model_refuses_another_protocol(tmp_path, fitted, capsys):
    scan, model_dir, _ = fitted
    img = nib.load(scan)
    other = tmp_path / "five_mm.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine @ np.diag([1, 1, 1.25, 1])), other)
    out = tmp_path / "out.nii.gz"
    assert main(["infer", str(other), str(out), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "slice spacing is 5 mm but the model" in err and str(other) in err and not out.exists()


def test_ct_dicom_series_through_the_cli(tmp_path, ct):
    from pydicom.data import get_testdata_file

    ref = read_volume(get_testdata_file("CT_small.dcm"))
    series = tmp_path / "thick_ct"
    write_volume(thick_slices(ct, 2, 4 * ct.spacing[0]), series, reference=ref)
    out = tmp_path / "iso_ct.nii.gz"
    assert main(["infer", str(series), str(out), "--isotropic", "--fit-steps", "2", "--quiet"]) == 0
    vol = read_volume(out)
    assert vol.data.min() < -800 and np.allclose(vol.spacing, ct.spacing[0], rtol=1e-4)


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path, slab: Volume, ct: Volume) -> dict[str, tuple[Path, list[str], str]]:
    data, aff = np.asarray(slab.data), slab.affine
    cases: dict[str, tuple[Path, list[str], str]] = {}
    p = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, 3], aff), p)
    cases["2d"] = (p, [], "is a 2-D image")
    from nibabel.testing import data_path

    cases["4d"] = (Path(data_path) / "example4d.nii.gz", [], "is 4-D")
    p = tmp_path / "iso.nii.gz"
    nib.save(nib.Nifti1Image(data[:40, :40, :8], np.diag([1.0, 1.0, 1.05, 1.0])), p)
    cases["isotropic"] = (p, [], "already isotropic within 10%")
    p = tmp_path / "three.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, :3], aff), p)
    cases["few"] = (p, [], "has 3 slice(s) along axis 2")
    cases["thick"] = (sample_path(), ["--slice-thickness", "50"], "--slice-thickness 50 mm is out of range")
    cases["thin"] = (sample_path(), ["--slice-thickness", "0.2"], "--slice-thickness 0.2 mm is out of range")
    from pydicom.data import get_testdata_file

    series = tmp_path / "holey"
    write_volume(thick_slices(ct, 2, 4 * ct.spacing[0]), series, reference=read_volume(get_testdata_file("CT_small.dcm")))
    files = sorted(series.iterdir())
    import pydicom

    by_position = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    by_position[4].unlink()
    cases["dicom_gap"] = (series, [], f"missing between {by_position[3].name} and {by_position[5].name}")
    return cases


@pytest.mark.parametrize("case", ["2d", "4d", "isotropic", "few", "thick", "thin", "dicom_gap"])
def test_bad_input_is_one_line_naming_the_file_nothing_written(tmp_path, slab, ct, capsys, case):
    src, extra, problem = _bad_inputs(tmp_path, slab, ct)[case]
    before = _digest(src)
    out, model_dir = tmp_path / "out.nii.gz", tmp_path / "model"
    rc = main(["infer", str(src), str(out), "--isotropic", "--fit-steps", "2", "--save-model", str(model_dir),
               "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and str(src) in err and problem in err, err
    assert not out.exists() and not model_dir.exists()
    assert _digest(src) == before


def test_forced_axis_accepts_a_nearly_isotropic_volume(hr):
    vol = Volume(hr.data, hr.affine @ np.diag([1.05, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="already isotropic"):
        make_isotropic(vol, fit_steps=1, fit_config=SMALL, progress=False)
    out = make_isotropic(vol, axis=0, fit_steps=2, fit_config=SMALL, progress=False, precision="fp32")
    assert np.allclose(out.spacing, 1.0) and out.meta["iconet_isotropic"]["axis_forced"]



def test_replan_keeps_an_on_time_plan_and_shrinks_a_late_one():
    from iconet.engine.isotropic_fit import replan_steps

    assert replan_steps(100, 400, elapsed=25.0, minutes=2.0) == 400  # 0.25 s/step: ends at 100 s of 120
    # slowed to 1 s/step on average: 100 s spent, 20 s left -> 20 more steps at that speed
    assert replan_steps(100, 400, elapsed=100.0, minutes=2.0) == 120
    assert replan_steps(100, 400, elapsed=130.0, minutes=2.0) == 101  # past the budget: stop next step
    assert replan_steps(100, 110, elapsed=1.0, minutes=2.0) == 110  # never grows


def test_a_fit_that_slows_down_still_ends_near_its_budget(slab, monkeypatch):
    """On a clock where the calibration steps take 0.01 s and every later step 1 s (another job
    started), a 30-second budget planned as 3,000 steps shrinks, and the fit ends within one
    re-plan window of the budget instead of after ~3,000 s."""
    from types import SimpleNamespace

    import iconet.engine.isotropic_fit as fit_mod

    job = prepare(slab, device="cpu", precision="fp32", fit_config=SMALL)
    real_loss = fit_mod.loss_of
    calls = {"n": 0}

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real_loss(*args, **kw)

    def clock() -> float:  # seconds spent by the steps started so far
        n, k = calls["n"], fit_mod.CALIBRATION_STEPS
        return 0.01 * min(n, k) + 1.0 * max(n - k, 0)

    planned = []
    real_plan = fit_mod.plan_steps
    monkeypatch.setattr(fit_mod, "plan_steps", lambda *a: planned.append(real_plan(*a)) or planned[-1])
    monkeypatch.setattr(fit_mod, "loss_of", counted)
    monkeypatch.setattr(fit_mod, "time", SimpleNamespace(perf_counter=clock))
    fit = fit_through_plane(job.pairs, cfg=SMALL, minutes=0.5, seed=0, progress=False)
    assert planned == [3000]
    assert 30.0 <= fit.seconds <= 30.0 * (1 + fit_mod.REPLAN_SLACK) + fit_mod.REPLAN_EVERY * 1.0, fit.seconds
    assert fit.steps == calls["n"] < 60
