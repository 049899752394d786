"""Downstream tumour check: a fixed intensity model inside the BraTS whole-tumour label.

The data are a tiny BraTS 2021 layout written here: the shipped real Colin27 slab as ``t1ce``
with a synthetic tumour inserted (dark necrotic core, bright enhancing rim, mid-grey edema,
with noise) and the matching ``_seg`` file (labels 1 / 2 / 4) on the same affine.
"""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.filters import threshold_multiotsu

from iconet.cli import main
from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.datasets import foreground_slices
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig, normalize
from iconet.data.samples import sample_path
from iconet.evaluation.downstream import (
    INTENSITY_CLASSES,
    TUMOUR_KEYS,
    TumourModel,
    brats_labels,
    dice_per_class,
    tumour_scores,
    whole_tumour,
)
from iconet.evaluation.runner import evaluate, load_candidate, markdown_table
from iconet.ops.grid import upsample

NCR, ED, ET = 1, 2, 4


def _tumour_case(centre: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample slab with a ring tumour at ``centre`` (in-plane), and its labels; plus the affine."""
    img = nib.load(sample_path())
    data = np.asarray(img.dataobj).astype(np.float32)
    i, j = np.meshgrid(np.arange(data.shape[0]), np.arange(data.shape[1]), indexing="ij")
    labels = np.zeros(data.shape, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for k in range(data.shape[2]):
        grow = 1.0 - abs(k - 3.5) / 8  # a little smaller towards the slab's ends
        r = np.hypot(i - centre[0], (j - centre[1]) * 0.8)  # elliptic, not symmetric in i/j
        labels[..., k][r < 28 * grow] = ED
        labels[..., k][r < 17 * grow] = ET
        labels[..., k][r < 10 * grow] = NCR
    level = {NCR: 25.0, ED: 80.0, ET: 180.0}  # t1ce: necrosis dark, edema mid, enhancing rim bright
    for lab, value in level.items():
        m = labels == lab
        data[m] = value + rng.normal(0, 15, m.sum())  # classes overlap a little
    return np.clip(data, 0, 255).astype(np.uint8), labels, img.affine


@pytest.fixture()
def brats_root(tmp_path):
    """``BraTS2021/BraTS2021_0000{1,2}/..._{t1ce,seg}.nii.gz``: two cases."""
    root = tmp_path / "BraTS2021"
    for n, (centre, seed) in enumerate((((95, 110), 1), ((80, 125), 2)), start=1):
        case = root / f"BraTS2021_{n:05d}"
        case.mkdir(parents=True)
        data, labels, affine = _tumour_case(centre, seed)
        nib.save(nib.Nifti1Image(data, affine), case / f"{case.name}_t1ce.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), case / f"{case.name}_seg.nii.gz")
    return root


def test_hr_against_hr_is_one_and_the_model_is_fixed():
    data, labels, _ = _tumour_case((95, 110), 1)
    hr = data.astype(np.float64)
    model = TumourModel.fit(hr, labels, "t1ce")
    wt = whole_tumour(labels)
    assert model.thresholds == pytest.approx(tuple(threshold_multiotsu(hr[wt], classes=3)))
    seg = model.segment(hr, wt)
    assert seg.dtype == np.uint8 and seg.shape == hr.shape
    np.testing.assert_array_equal(seg > 0, wt)  # classified inside WT only
    assert tumour_scores(hr, model, wt, seg) == {k: 1.0 for k in TUMOUR_KEYS}
    # the synthetic rings overlap a little in intensity: the classes follow the expert labels (t1ce mapping)
    ref = model.reference(hr, labels)
    assert set(ref) == {"expert_dice_ncr", "expert_dice_ed", "expert_dice_et"}
    assert all(0.5 < v < 1 for v in ref.values())
    assert "ET (4) ↔ high" in model.mapping()
    # fixed thresholds, not refitted: a brighter copy is all "high" inside WT, still 0 outside
    assert set(np.unique(model.segment(hr + 1000, wt)[wt])) == {3}
    assert not model.segment(hr + 1000, wt)[~wt].any()
    # FLAIR/T2 compare the hyperintense class with ED and the rest with the core TC = {1, 4}
    flair = TumourModel(model.thresholds, "flair").reference(hr, labels)
    assert set(flair) == {"expert_dice_tc", "expert_dice_ed"}


def test_tumour_dice_equals_a_hand_computation():
    data, labels, _ = _tumour_case((95, 110), 1)
    hr = data.astype(np.float64)
    blurred = hr.copy()
    blurred[1:-1] = (hr[:-2] + hr[1:-1] + hr[2:]) / 3  # a crude blur along i
    model = TumourModel.fit(hr, labels, "t1ce")
    wt = np.isin(labels, (1, 2, 4))
    scores = tumour_scores(blurred, model, wt, model.segment(hr, wt))
    t1, t2 = threshold_multiotsu(hr[wt], classes=3)
    # "high" by hand: WT voxels above t2
    p, r = wt & (blurred > t2), wt & (hr > t2)
    by_hand = 2 * np.sum(p & r) / (np.sum(p) + np.sum(r))
    assert scores["tumour_dice_high"] == pytest.approx(by_hand, rel=1e-12)
    assert 0 < scores["tumour_dice_high"] < 1
    assert scores["tumour_dice_mean"] == pytest.approx(np.mean([scores[f"tumour_dice_{n}"] for n in INTENSITY_CLASSES.values()]))
    # the reference line by hand: ET (label 4) against HR's "high" class
    ref = model.reference(hr, labels)
    e = labels == ET
    assert ref["expert_dice_et"] == pytest.approx(2 * np.sum(r & e) / (np.sum(r) + np.sum(e)), rel=1e-12)


def test_labels_are_checked():
    assert brats_labels(np.array([0.0, 1.0, 2.0, 4.0])).dtype == np.int16
    with pytest.raises(ValueError, match=r"hold \[3\]"):
        brats_labels(np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="whole numbers"):
        brats_labels(np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match="no whole-tumour voxel"):
        TumourModel.fit(np.arange(8.0).reshape(2, 4), np.zeros((2, 4), int), "t1ce")
    with pytest.raises(ValueError, match="unknown contrast"):
        TumourModel.fit(np.arange(8.0).reshape(2, 4), np.ones((2, 4), int), "dwi")


def test_evaluate_tumour_uses_the_scored_slices_and_crop(brats_root):
    case = brats_root / "BraTS2021_00001"
    vol = read_volume(case / "BraTS2021_00001_t1ce.nii.gz")
    lab = read_volume(case / "BraTS2021_00001_seg.nii.gz")
    deg = Degradation(kind="kspace", scale=2)
    cands = [load_candidate(n, 2, "kspace") for n in ("bicubic", "zerofill")]
    # one draw, statistic of HR: the by-hand check below normalises that way
    result = evaluate(cands, [vol], deg, downstream="tumour", labels={vol.name: lab}, contrast="t1ce",
                      draws=1, normalization=NormalizeConfig())
    rows = {(r["model"], r["branch"]): r for r in result.rows}
    # by hand: normalise, foreground slices, crop HR and labels alike, degrade, bicubic, classes
    data, norm = normalize(vol.data.astype(np.float32))
    keep = foreground_slices(data, 2, threshold=0.1, fraction=0.10)
    hr_t = crop_to_multiple(torch.from_numpy(np.moveaxis(data, 2, 0)[keep].copy()), 4)
    expert = crop_to_multiple(torch.from_numpy(np.moveaxis(lab.data.astype(np.int16), 2, 0)[keep].copy()), 4).numpy()
    assert expert.shape == tuple(hr_t.shape) and (expert == ET).any()
    sr = upsample(deg.degrade(hr_t, vol.name)["lr"][:, None], 2, "kspace")[:, 0].double().numpy() * norm.high
    hr = hr_t.double().numpy() * norm.high
    wt = expert > 0
    t1, t2 = threshold_multiotsu(hr[wt], classes=3)

    def seg(a):
        return np.where(~wt, 0, np.where(a <= t1, 1, np.where(a <= t2, 2, 3)))

    per = dice_per_class(seg(sr), seg(hr), INTENSITY_CLASSES)
    assert [rows[("bicubic", "sr")][f"tumour_dice_{n}"] for n in ("low", "mid", "high")] == pytest.approx(
        [per["low"], per["mid"], per["high"]], rel=1e-9)
    for name in ("bicubic", "zerofill"):
        for k in TUMOUR_KEYS:
            assert 0 < rows[(name, "sr")][k] <= 1
        assert result.summary[name]["downstream"]["tumour_dice_mean"][0] == rows[(name, "sr")]["tumour_dice_mean"]
    hr_row = rows[("HR", "labels")]
    assert hr_row["expert_dice_et"] == pytest.approx(2 * np.sum((seg(hr) == 3) & (expert == ET)) / (np.sum(seg(hr) == 3) + np.sum(expert == ET)))
    assert set(result.reference) == {"expert_dice_ncr", "expert_dice_ed", "expert_dice_et"}
    table = markdown_table(result, 2)
    assert "| model (x2) | Dice low | Dice mid | Dice high | mean Dice |" in table
    assert "not a tumour segmenter" in table and "NCR (1) ↔ low" in table
    # labels on another grid, or missing, are one-line errors naming the volume
    with pytest.raises(ValueError, match="BraTS2021_00001_t1ce.*shape"):
        evaluate(cands[:1], [vol], deg, downstream="tumour", labels={vol.name: lab.data[:-1]}, contrast="t1ce")
    with pytest.raises(ValueError, match="BraTS2021_00001_t1ce.*no tumour labels"):
        evaluate(cands[:1], [vol], deg, downstream="tumour", labels={}, contrast="t1ce")


def test_cli_tumour_on_a_brats_layout(brats_root, tmp_path):
    out = tmp_path / "res"
    assert main(["eval", str(brats_root), "--layout", "brats2021", "--contrast", "t1ce", "--models", "bicubic",
                 "zerofill", "--downstream", "tumour", "--draws", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "per_volume.csv")))
    sr = [r for r in rows if r["branch"] == "sr"]
    assert {(r["model"], r["volume"]) for r in sr} == {(m, f"BraTS2021_0000{n}_t1ce") for m in ("bicubic", "zerofill") for n in (1, 2)}
    for r in sr:
        for k in TUMOUR_KEYS:
            assert 0 < float(r[k]) <= 1
        assert "dice_csf" not in r
    ref = [r for r in rows if r["branch"] == "labels"]
    assert [r["model"] for r in ref] == ["HR", "HR"]  # once per volume
    assert all(0 < float(r["expert_dice_et"]) <= 1 for r in ref)
    summary = json.loads((out / "summary.json").read_text())
    assert "whole-tumour" in summary["downstream"] and summary["reference"]["mapping"].startswith("NCR (1)")
    assert "tumour_dice_high" in summary["models"]["bicubic"]["downstream"]
    assert "Dice high" in (out / "table.md").read_text()


def test_cli_tumour_errors_are_one_line(brats_root, tmp_path, capsys):
    (brats_root / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz").unlink()
    args = ["--models", "bicubic", "--draws", "2", "--out", str(tmp_path / "o")]
    assert main(["eval", str(brats_root), "--layout", "brats2021", "--contrast", "t1ce", "--downstream", "tumour", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BraTS2021_00002" in err and "_seg" in err
    # plain data carry no labels
    assert main(["eval", str(sample_path()), "--downstream", "tumour", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--downstream tumour" in err and "brats2021" in err
    assert main(["eval", str(brats_root), "--layout", "brats2021", *args]) == 2
    assert "--contrast" in capsys.readouterr().err
    # without --downstream tumour a case without labels is fine; --downstream alone is still tissue
    assert main(["eval", str(brats_root), "--layout", "brats2021", "--contrast", "t1ce", "--downstream", *args]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "per_volume.csv")))
    assert {r["branch"] for r in rows} == {"sr"} and all(not math.isnan(float(r["dice_mean"])) for r in rows)
