"""Downstream check: a fixed CSF/GM/WM intensity model fitted on HR, Dice of each SR output."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from skimage.filters import threshold_multiotsu

from iconet.cli import main
from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig, normalize
from iconet.data.samples import sample_path
from iconet.evaluation.downstream import DICE_KEYS, TISSUES, TissueModel, dice_per_class, mean_dice
from iconet.evaluation.metrics import FASTMRI, MetricProtocol, ct_protocol, foreground_mask
from iconet.evaluation.runner import evaluate, load_candidate, markdown_table
from iconet.ops.grid import upsample


def _hr():
    """The sample's HR slices as evaluate() scores them: normalised, (S, H, W), cropped, undone."""
    data, norm = normalize(read_volume(sample_path()).data.astype(np.float32))
    hr = crop_to_multiple(torch.from_numpy(np.moveaxis(data, 2, 0).copy()), 4)
    return hr, norm


def test_dice_of_identical_labels_is_one_per_class():
    labels = np.random.default_rng(0).integers(0, 4, size=(3, 16, 16))
    per = dice_per_class(labels, labels.copy(), TISSUES)
    assert per == {"csf": 1.0, "gm": 1.0, "wm": 1.0}
    assert mean_dice(per) == 1.0


def test_dice_equals_a_hand_computation():
    pred = np.array([[1, 1, 2], [3, 0, 2]])
    ref = np.array([[1, 2, 2], [3, 3, 0]])
    per = dice_per_class(pred, ref, [1, 2, 3, 7])  # labels → keyed by label
    # class 1: P = 2 voxels, R = 1, overlap 1; class 2: P = 2, R = 2, overlap 1; class 3: P = 1, R = 2, overlap 1
    assert per[1] == pytest.approx(2 * 1 / (2 + 1))
    assert per[2] == pytest.approx(2 * 1 / (2 + 2))
    assert per[3] == pytest.approx(2 * 1 / (1 + 2))
    assert math.isnan(per[7])  # absent from both: no Dice, left out of the mean
    assert mean_dice(per) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert dice_per_class(pred, ref, {1: "csf"}) == {"csf": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="shapes differ"):
        dice_per_class(pred, ref[:, :2], TISSUES)
    with pytest.raises(ValueError, match="integers"):
        dice_per_class(pred.astype(float), ref, TISSUES)


def test_model_fitted_on_hr_segments_hr_with_dice_one_and_is_fixed():
    hr_t, norm = _hr()
    hr = hr_t.double().numpy() * norm.high
    protocol = MetricProtocol(slice_axis=0)
    model = TissueModel.fit(hr, protocol)
    fg = foreground_mask(hr, protocol)
    assert model.background == pytest.approx(0.05 * hr.max())
    assert model.thresholds == pytest.approx(tuple(threshold_multiotsu(hr[fg], classes=3)))
    labels = model.segment(hr)
    assert labels.dtype == np.uint8 and labels.shape == hr.shape
    np.testing.assert_array_equal(labels > 0, fg)  # background = the protocol's foreground rule
    means = [hr[labels == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # CSF < GM < WM on T1
    per = dice_per_class(model.segment(hr), labels, TISSUES)
    assert per == {"csf": 1.0, "gm": 1.0, "wm": 1.0}
    # fixed thresholds, not refitted per input: a brighter copy is all "WM" inside the foreground
    assert set(np.unique(model.segment(hr + hr.max()))) == {3}
    # a fixed-range protocol (CT-like) takes its background from range_low + threshold × width
    assert TissueModel.fit(hr, ct_protocol((0.0, 200.0))).background == pytest.approx(0.05 * 200)


def test_model_needs_three_intensities():
    with pytest.raises(ValueError, match="HR foreground has 1 distinct intensities; three intensity classes"):
        TissueModel.fit(np.array([[0.0, 1.0], [1.0, 0.0]]), FASTMRI)


def test_evaluate_downstream_on_the_real_sample():
    vols = [read_volume(sample_path())]
    deg = Degradation(kind="kspace", scale=2)
    cands = [load_candidate(n, 2, "kspace") for n in ("bicubic", "zerofill")]
    # one draw, statistic of HR: the by-hand check below normalises as _hr() does
    result = evaluate(cands, vols, deg, downstream=True, draws=1, normalization=NormalizeConfig())
    rows = {r["model"]: r for r in result.rows}
    for name in ("bicubic", "zerofill"):
        for k in DICE_KEYS:
            assert 0 < rows[name][k] < 1
            mean, std = result.summary[name]["downstream"][k]
            assert mean == rows[name][k] and std == 0.0  # one volume
    # by hand, independent of TissueModel: normalise, crop, degrade, bicubic, thresholds, Dice
    hr_t, norm = _hr()
    lr = deg.degrade(hr_t, "colin27_slab")["lr"]
    sr = upsample(lr[:, None], 2, "kspace")[:, 0].double().numpy() * norm.high
    hr = hr_t.double().numpy() * norm.high
    bg = 0.05 * hr.max()
    t1, t2 = threshold_multiotsu(hr[hr > bg], classes=3)

    def seg(a):
        return np.where(a <= bg, 0, np.where(a <= t1, 1, np.where(a <= t2, 2, 3)))

    def dice(p, r, k):
        return 2 * np.sum((p == k) & (r == k)) / (np.sum(p == k) + np.sum(r == k))

    ref, pred = seg(hr), seg(sr)
    by_hand = [dice(pred, ref, k) for k in (1, 2, 3)]
    assert [rows["bicubic"][f"dice_{n}"] for n in ("csf", "gm", "wm")] == pytest.approx(by_hand, rel=1e-9)
    assert rows["bicubic"]["dice_mean"] == pytest.approx(np.mean(by_hand), rel=1e-9)
    # one slice by hand gives the same ordering of bicubic's classes as the whole volume
    one = [dice(pred[3], ref[3], k) for k in (1, 2, 3)]
    whole = [rows["bicubic"][f"dice_{n}"] for n in ("csf", "gm", "wm")]
    assert np.argsort(one).tolist() == np.argsort(whole).tolist() == [0, 1, 2]  # CSF < GM < WM
    table = markdown_table(result, 2)
    assert "| model (x2) | Dice CSF | Dice GM | Dice WM | mean Dice |" in table
    assert "not a clinical segmentation" in table and result.downstream in table
    # without the option: no Dice anywhere
    plain = evaluate(cands[:1], vols, deg, draws=1)
    assert not any(k in plain.rows[0] for k in DICE_KEYS) and "downstream" not in plain.summary["bicubic"]
    assert "Dice" not in markdown_table(plain, 2) and plain.downstream == ""


def test_cli_downstream_writes_dice_columns(tmp_path):
    out = tmp_path / "res"
    assert main(["eval", str(sample_path()), "--models", "bicubic", "--downstream", "--draws", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "per_volume.csv")))
    assert 0 < float(rows[0]["dice_mean"]) < 1
    summary = json.loads((out / "summary.json").read_text())
    assert "multi-Otsu" in summary["downstream"] and "dice_wm" in summary["models"]["bicubic"]["downstream"]
    assert "mean Dice" in (out / "table.md").read_text()


def test_downstream_tissue_by_name_is_the_default_check_and_unknown_kinds_are_refused():
    vols = [read_volume(sample_path())]
    deg = Degradation(kind="kspace", scale=2)
    cands = [load_candidate("bicubic", 2, "kspace")]
    by_flag = evaluate(cands, vols, deg, downstream=True, draws=2)
    by_name = evaluate(cands, vols, deg, downstream="tissue", draws=2)
    assert [{k: r[k] for k in DICE_KEYS} for r in by_flag.rows] == [{k: r[k] for k in DICE_KEYS} for r in by_name.rows]
    with pytest.raises(ValueError, match="unknown downstream check"):
        evaluate(cands, vols, deg, downstream="lesion")
    with pytest.raises(ValueError, match="needs BraTS tumour labels"):
        evaluate(cands, vols, deg, downstream="tumour", contrast="t1ce")
