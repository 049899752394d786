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
from iconet.data.degrade import Degradation, crop_to_multiple, seed_from_name
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig, normalize
from iconet.data.samples import sample_path
from iconet.evaluation.metrics import MetricProtocol, evaluate_volume
from iconet.evaluation.runner import Candidate, evaluate, load_candidate
from iconet.models import build_model
from iconet.export import export_run
from iconet.ops.grid import upsample

from _run_fixtures import make_run


@pytest.fixture()
def two_volumes(tmp_path):
    shutil.copy(sample_path(), tmp_path / "subA.nii.gz")
    img = nib.load(sample_path())
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine), tmp_path / "subB.nii.gz")
    return [tmp_path / "subA.nii.gz", tmp_path / "subB.nii.gz"]


def _by_hand(raw, key, high, deg):
    """Normalise by ``high`` (clipped), all 8 slices are foreground, crop, degrade with the mask
    seeded from ``key``, upsample, score in the volume's units."""
    data = np.clip(raw / high, 0, 1).astype(np.float32)
    hr = crop_to_multiple(torch.from_numpy(np.moveaxis(data, 2, 0).copy()), 4)
    lr = deg.degrade(hr, key)["lr"]
    sr = upsample(lr[:, None], 2, "kspace")[:, 0]
    return evaluate_volume(sr.double().numpy() * high, hr.double().numpy() * high, MetricProtocol(slice_axis=0))


def test_bicubic_row_equals_an_independent_computation(two_volumes):
    vols = [read_volume(p) for p in two_volumes]
    deg = Degradation(kind="kspace", scale=2)
    result = evaluate([load_candidate("bicubic", 2, "kspace")], vols, deg, draws=2)
    raw = vols[0].data.astype(np.float64)
    for draw, key in ((0, "subA"), (1, "subA/draw1")):
        row = next(r for r in result.rows if r["volume"] == "subA" and r["branch"] == "sr" and r["draw"] == draw)
        # the default statistic: the 99.5th percentile of the draw's LR volume, made from the raw slices
        stack = crop_to_multiple(torch.from_numpy(np.moveaxis(raw, 2, 0).astype(np.float32).copy()), 4)
        high = float(np.percentile(deg.degrade(stack, key)["lr"].double().numpy(), 99.5))
        assert row["norm_high"] == pytest.approx(high, rel=1e-12) and row["seed"] == seed_from_name(key)
        ref = _by_hand(raw, key, high, deg)
        assert row["slices"] == 8
        for k in ("psnr", "ssim", "nmse"):  # float32 forward through the infer path: equal to rounding
            assert row[k] == pytest.approx(ref[k], rel=1e-6)
    mean, std = result.summary["bicubic"]["sr"]["psnr"]
    assert std > 0  # two volumes, two different seeded masks each
    # the older convention (statistic of HR) on draw 0 is the single-draw protocol as it was
    old = evaluate([load_candidate("bicubic", 2, "kspace")], vols[:1], deg, draws=1, normalization=NormalizeConfig())
    ref = _by_hand(raw, "subA", normalize(raw)[1].high, deg)
    assert [r["draw"] for r in old.rows] == [0] and old.rows[0]["psnr"] == pytest.approx(ref["psnr"], rel=1e-6)


def test_reconstruction_is_scored_against_clean_and_named(two_volumes, tmp_path, capsys):
    model_dir = export_run(make_run(tmp_path), tmp_path / "tiny")
    out = tmp_path / "res"
    assert main(["eval", *map(str, two_volumes), "--models", "zerofill", str(model_dir), "--draws", "2",
                 "--out", str(out)]) == 0
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
    import matplotlib.image

    png = matplotlib.image.imread(out / "bars.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100
    assert main(["eval", *map(str, two_volumes), "--models", "zerofill", "--out", str(out)]) == 2
    assert "earlier evaluation" in capsys.readouterr().err
    for name in ("per_volume.csv", "summary.json", "table.md"):  # the chart alone also counts
        (out / name).unlink()
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


def test_bar_chart_draws_the_summary_means(two_volumes, tmp_path):
    from PIL import Image

    from iconet.evaluation.figures import metric_bar_chart

    vols = [read_volume(p) for p in two_volumes]
    deg = Degradation(kind="kspace", scale=2)
    result = evaluate([load_candidate(n, 2, "kspace") for n in ("bicubic", "zerofill")], vols, deg, draws=2)
    summary = {**result.summary, "withrec": {"sr": {"psnr": (30.0, 0.5), "ssim": (0.9, 0.01)},
                                             "rec": {"psnr": (33.0, float("nan")), "ssim": (0.95, 0.0)}}}
    fig = metric_bar_chart(summary, tmp_path / "bars.png", protocol=result.protocol, dpi=80)
    with Image.open(tmp_path / "bars.png") as img:
        assert img.format == "PNG"
        assert img.size == tuple(round(v * 80) for v in fig.get_size_inches())
    bars = {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches if p.get_gid()}
    expected = {f"{n}/{b}/{m}": summary[n][b][m][0] for n in summary for b in ("sr", "rec")
                if b in summary[n] for m in ("psnr", "ssim")}
    assert bars == pytest.approx(expected, rel=1e-12)  # one bar per model and branch, height = mean
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"{summary['bicubic']['sr']['psnr'][0]:.2f}" in texts and "0.9500" in texts
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["SR vs HR", "REC vs CLEAN"]
    assert "data_range = max(HR volume)" in fig._supxlabel.get_text()
    with pytest.raises(ValueError, match="no model"):
        metric_bar_chart({}, tmp_path / "none.png")


class _WrongSize(torch.nn.Module):
    """Claims x2 and one channel but returns the input unchanged (a broken export)."""

    scale, in_channels = 2, 1

    def forward(self, x):
        return {"sr": [x]}


def test_models_that_do_not_fit_name_the_model_and_the_volume(two_volumes, tmp_path, capsys, monkeypatch):
    vols = [read_volume(two_volumes[0])]
    deg = Degradation(kind="kspace", scale=2)
    two_ch = build_model({"name": "edsr", "n_feats": 8, "n_blocks": 1, "in_channels": 2, "scale": 2})
    with pytest.raises(ValueError, match="model 'rgb' on volume 'subA': the model takes 2 channels, the volume has 1"):
        evaluate([Candidate("rgb", two_ch.eval(), "kspace", "x")], vols, deg)
    x4 = build_model("bicubic", scale=4, grid="kspace")
    with pytest.raises(ValueError, match="model 'b4' on volume 'subA': the model upscales x4, the test data are degraded x2"):
        evaluate([Candidate("b4", x4, "kspace", "x")], vols, deg)
    with pytest.raises(ValueError, match="model 'b2' on volume 'subA': the model was trained on the centre grid"):
        evaluate([Candidate("b2", build_model("bicubic", scale=2, grid="centre"), "centre", "x")], vols, deg)
    with pytest.raises(ValueError, match=r"model 'broken' on volume 'subA': the SR output has shape \(8, 90, 108\), the HR slices \(8, 180, 216\)"):
        evaluate([Candidate("broken", _WrongSize(), "kspace", "x")], vols, deg)
    # through the CLI: a loaded model with 2 input channels is a one-line error naming it
    import iconet.hub

    monkeypatch.setattr(iconet.hub, "load_model", lambda spec: (two_ch, type("Info", (), {"grid": "kspace"})()))
    assert main(["eval", str(two_volumes[0]), "--models", "rgbmodel", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rgbmodel: the model takes 2 channels" in err


def _recipe(tmp_path, data_root, scale=2):
    import yaml

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": "iconet", "scale": scale, "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1},
        "data": {"root": str(data_root), "layout": "plain", "split": [0.4, 0.3, 0.3], "patch_size": 32},
        "degradation": {"kind": "kspace", "scale": scale, "mask_mode": "random"},
    }))
    return recipe


def test_a_recipe_is_scored_on_its_test_share_with_its_degradation(tmp_path, data_root, capsys):
    from iconet.data.datasets import split_subjects

    recipe = _recipe(tmp_path, data_root, scale=4)
    assert main(["eval", str(recipe), "--models", "bicubic", "--draws", "2", "--out", str(tmp_path / "e")]) == 0
    test = split_subjects(["subA", "subB", "subC"], [0.4, 0.3, 0.3], 0)[2]
    rows = list(csv.DictReader(open(tmp_path / "e" / "per_volume.csv")))
    assert sorted({r["volume"] for r in rows}) == sorted(test) and len(test) == 1
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    # the recipe's scale and kind, but masks seeded from the volume's name (not drawn at random)
    assert summary["degradation"]["scale"] == 4 and summary["degradation"]["mask_mode"] == "seeded"
    assert f"scored on its test subjects: {test[0]}" in capsys.readouterr().err
    # the same volume given directly, with the same degradation, scores the same
    assert main(["eval", str(data_root / f"{test[0]}.nii.gz"), "--models", "bicubic", "--scale", "4",
                 "--draws", "2", "--out", str(tmp_path / "d")]) == 0
    direct = list(csv.DictReader(open(tmp_path / "d" / "per_volume.csv")))
    assert float(direct[0]["psnr"]) == pytest.approx(float(rows[0]["psnr"]), abs=1e-9)


def test_a_recipe_refuses_contradicting_options(tmp_path, data_root, capsys):
    recipe = _recipe(tmp_path, data_root)
    assert main(["eval", str(recipe), "--models", "bicubic", "--scale", "4", "--out", str(tmp_path / "e")]) == 2
    assert "--scale 4 contradicts the recipe's 2" in capsys.readouterr().err
    assert main(["eval", str(recipe), str(data_root), "--models", "bicubic", "--out", str(tmp_path / "e")]) == 2
    assert "a training recipe is scored alone" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
