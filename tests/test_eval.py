"""``iconet eval``: the same volumes, degradation and protocol for every model; both branches named."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from iconet.cli import main
from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.io import read_volume
from iconet.data.normalize import normalize
from iconet.data.samples import sample_path
from iconet.evaluation.metrics import MetricProtocol, evaluate_volume
from iconet.evaluation.runner import evaluate, load_candidate
from iconet.export import export_run
from iconet.ops.grid import upsample

from _run_fixtures import make_run


@pytest.fixture()
def two_volumes(tmp_path):
    shutil.copy(sample_path(), tmp_path / "subA.nii.gz")
    img = nib.load(sample_path())
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine), tmp_path / "subB.nii.gz")
    return [tmp_path / "subA.nii.gz", tmp_path / "subB.nii.gz"]


def test_bicubic_row_equals_an_independent_computation(two_volumes):
    vols = [read_volume(p) for p in two_volumes]
    deg = Degradation(kind="kspace", scale=2)
    result = evaluate([load_candidate("bicubic", 2, "kspace")], vols, deg)
    row = next(r for r in result.rows if r["volume"] == "subA" and r["branch"] == "sr")
    # by hand: normalise, all 8 slices are foreground, crop, degrade with the seeded mask, upsample
    data, norm = normalize(vols[0].data.astype(np.float32))
    hr = crop_to_multiple(torch.from_numpy(np.moveaxis(data, 2, 0).copy()), 4)
    lr = deg.degrade(hr, "subA")["lr"]
    sr = upsample(lr[:, None], 2, "kspace")[:, 0]
    ref = evaluate_volume(sr.double().numpy() * norm.high, hr.double().numpy() * norm.high, MetricProtocol(slice_axis=0))
    assert row["slices"] == 8
    for k in ("psnr", "ssim", "nmse"):
        assert row[k] == pytest.approx(ref[k], rel=1e-9)
    mean, std = result.summary["bicubic"]["sr"]["psnr"]
    assert std > 0  # two volumes, two different seeded masks


def test_reconstruction_is_scored_against_clean_and_named(two_volumes, tmp_path, capsys):
    model_dir = export_run(make_run(tmp_path), tmp_path / "tiny")
    out = tmp_path / "res"
    assert main(["eval", *map(str, two_volumes), "--models", "zerofill", str(model_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "per_volume.csv")))
    assert {(r["model"], r["branch"]) for r in rows} == {("zerofill", "sr"), ("tiny", "sr"), ("tiny", "rec")}
    summary = json.loads((out / "summary.json").read_text())
    assert "data_range = max(HR volume)" in summary["protocol"] and summary["degradation"]["kind"] == "kspace"
    table = (out / "table.md").read_text()
    assert "| zerofill |" in table and "| tiny |" in table and "REC against CLEAN" in table
    # the rec branch of the untrained tiny model is scored against CLEAN, not against HR
    rec = float(next(r for r in rows if r["branch"] == "rec" and r["volume"] == "subA")["psnr"])
    sr = float(next(r for r in rows if r["branch"] == "sr" and r["model"] == "tiny" and r["volume"] == "subA")["psnr"])
    assert rec != sr
    assert main(["eval", *map(str, two_volumes), "--models", "zerofill", "--out", str(out)]) == 2
    assert "earlier evaluation" in capsys.readouterr().err


def test_models_that_do_not_fit_the_test_data_are_one_line_errors(two_volumes, tmp_path, capsys):
    model_dir = export_run(make_run(tmp_path), tmp_path / "tiny")  # x2, kspace grid
    assert main(["eval", str(two_volumes[0]), "--models", str(model_dir), "--scale", "4", "--out", str(tmp_path / "a")]) == 2
    assert "upscales x2, the test data are degraded x4" in capsys.readouterr().err
    assert main(["eval", str(two_volumes[0]), "--models", str(model_dir), "--degradation", "bicubic",
                 "--out", str(tmp_path / "b")]) == 2
    assert "trained on the kspace grid, the test data use the centre grid" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.nii.gz"), "--models", "bicubic", "--out", str(tmp_path / "c")]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err
