"""``iconet eval`` over K seeded mask draws: intervals, paired differences, the claim rule, the
protocol line (the user's axis, n = 1 without spread) and refusing a 2-D image."""

from __future__ import annotations

import csv
import json
import math
import shutil

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from iconet.cli import main
from iconet.data.degrade import Degradation, seed_from_name
from iconet.data.io import read_volume
from iconet.data.samples import sample_path
from iconet.evaluation.runner import draw_key, evaluate, load_candidate, markdown_table
from iconet.evaluation.stats import claim, format_interval, interval, paired


def _t_interval(values):
    v = np.asarray(values, dtype=np.float64)
    return sps.t.interval(0.95, v.size - 1, loc=v.mean(), scale=sps.sem(v))


def test_intervals_are_scipy_t_intervals_over_draws_or_over_volume_means():
    draws = [24.1, 25.4, 23.8, 24.9, 24.3]
    iv = interval({"colin": draws})
    assert (iv.low, iv.high) == pytest.approx(_t_interval(draws), rel=1e-12)
    assert iv.mean == pytest.approx(np.mean(draws)) and (iv.n_volumes, iv.n_draws) == (1, 5)
    # several volumes: the volumes are the units, each the mean of its draws
    vols = {"a": [20.0, 21.0, 22.0], "b": [25.0, 25.5, 26.0], "c": [23.0, 22.0, 24.0]}
    iv = interval(vols)
    assert (iv.low, iv.high) == pytest.approx(_t_interval([np.mean(v) for v in vols.values()]), rel=1e-12)
    # a paired difference is the interval of the per-unit differences
    ref = {"a": [19.0, 20.5, 21.0], "b": [24.0, 25.0, 25.8], "c": [22.5, 21.0, 23.1]}
    d = paired(vols, ref)
    diffs = [np.mean(np.subtract(vols[k], ref[k])) for k in vols]
    assert (d.low, d.high) == pytest.approx(_t_interval(diffs), rel=1e-12)
    assert claim(d) == ("lead" if d.low > 0 else "no claim")
    # one unit: no interval, the mean alone
    one = interval({"a": [23.0]})
    assert math.isnan(one.low) and format_interval(one) == "23.00 (n = 1)" and claim(one) == "no claim"
    with pytest.raises(ValueError, match="same, non-zero number of draws"):
        interval({"a": [1.0, 2.0], "b": [1.0]})


def test_claim_needs_the_interval_to_exclude_zero():
    lead = paired({"v": [1.0, 1.2, 1.1, 1.3]}, {"v": [0.0, 0.1, 0.0, 0.2]})
    tie = paired({"v": [1.0, 0.0, 1.0, 0.0]}, {"v": [0.0, 1.0, 0.0, 1.0]})
    assert claim(lead) == "lead" and claim(lead, higher_is_better=False) == "trails"
    assert tie.low < 0 < tie.high and claim(tie) == "no claim"


def test_evaluate_scores_k_draws_and_pairs_them_with_the_reference():
    vol = read_volume(sample_path())
    deg = Degradation(kind="kspace", scale=2)
    cands = [load_candidate(n, 2, "kspace") for n in ("bicubic", "zerofill")]
    result = evaluate(cands, [vol], deg, draws=3)
    sr = [r for r in result.rows if r["branch"] == "sr"]
    assert len(sr) == 2 * 3
    seeds = [seed_from_name(draw_key(vol.name, d)) for d in range(3)]
    assert seeds[0] == seed_from_name(vol.name) and len(set(seeds)) == 3  # draw 0 is the single-draw mask
    assert result.draws["seeds"] == {vol.name: seeds} and result.draws["k"] == 3
    for name in ("bicubic", "zerofill"):
        mine = sorted((r for r in sr if r["model"] == name), key=lambda r: r["draw"])
        assert [r["seed"] for r in mine] == seeds
        iv = result.summary[name]["intervals"]["sr"]["psnr"]
        assert (iv["low"], iv["high"]) == pytest.approx(_t_interval([r["psnr"] for r in mine]), rel=1e-9)
    # zerofill against bicubic on the same draws: the interval of the per-draw differences
    by = {(r["model"], r["draw"]): r["psnr"] for r in sr}
    diffs = [by[("zerofill", d)] - by[("bicubic", d)] for d in range(3)]
    vs = result.summary["zerofill"]["vs_reference"]
    assert vs["reference"] == "bicubic" and "vs_reference" not in result.summary["bicubic"]
    assert (vs["psnr"]["low"], vs["psnr"]["high"]) == pytest.approx(_t_interval(diffs), rel=1e-9)
    table = markdown_table(result, 2)
    row = next(line for line in table.splitlines() if line.startswith("| zerofill |"))
    assert f"{vs['psnr']['claim']} / {vs['ssim']['claim']}" in row
    assert "Δ PSNR vs bicubic" in table and "a lead is claimed only where that interval excludes 0" in table
    assert "K = 3 seeded mask draws per volume (draws 0-2" in result.protocol
    # --reference: another model is the baseline
    other = evaluate(cands, [vol], deg, draws=2, reference="zerofill")
    assert other.reference_model == "zerofill" and "vs_reference" in other.summary["bicubic"]
    with pytest.raises(ValueError, match="reference model 'edsr' is not among"):
        evaluate(cands, [vol], deg, draws=2, reference="edsr")


def test_deterministic_degradations_and_equispaced_masks_are_one_draw():
    vol = read_volume(sample_path())
    bic = evaluate([load_candidate("bicubic", 2, "centre")], [vol], Degradation(kind="bicubic", scale=2), draws=8)
    assert bic.draws["k"] == 1 and "nothing is drawn), K = 1" in bic.protocol
    eq = evaluate([load_candidate("bicubic", 2, "kspace")], [vol], Degradation(scale=2), masks="equispaced")
    assert eq.draws["k"] == 1 and "one equispaced mask per volume (deterministic" in eq.protocol
    assert eq.degradation["mask_pattern"] == "equispaced"


def test_protocol_line_names_the_users_axis_and_one_unit_shows_no_spread():
    vol = read_volume(sample_path())  # 181 x 217 x 8
    cands = [load_candidate(n, 2, "kspace") for n in ("bicubic", "zerofill")]
    result = evaluate(cands, [vol], Degradation(scale=2), axis=1, draws=1, downstream=True)
    assert "along axis 1 of each volume" in result.protocol and "axis 0" not in result.protocol
    table = markdown_table(result, 2)
    assert "±" not in table  # one volume, one draw: the value alone, marked n = 1
    assert "(n = 1)" in table.splitlines()[2]


def test_export_card_names_the_axis_validation_sliced_along(tmp_path):
    import copy

    import yaml

    from iconet.evaluation.metrics import MetricProtocol
    from iconet.export import export_run

    from _run_fixtures import make_run

    recorded = MetricProtocol(slice_axis=0).describe()  # what the trainer records: its stacks' axis
    assert "slices along axis 0" in recorded
    run = make_run(tmp_path / "a", metrics={"best": {"val/sr_psnr": 30.0, "protocol": recorded}})
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    card = (export_run(run, tmp_path / "m2") / "model_card.md").read_text()
    assert f"slices along axis {cfg['data']['axis']} of each validation volume" in card and "axis 0" not in card
    cfg3 = copy.deepcopy(cfg)
    cfg3["data"]["val_axis"] = "all"
    run3 = make_run(tmp_path / "b", config=cfg3, metrics={"best": {"val/sr_psnr": 30.0, "protocol": recorded}})
    card3 = (export_run(run3, tmp_path / "m3") / "model_card.md").read_text()
    assert "slices along all three axes (0, 1, 2) of each validation volume" in card3


def test_cli_writes_the_draw_dimension_and_refuses_a_2d_image(tmp_path, capsys):
    shutil.copy(sample_path(), tmp_path / "subA.nii.gz")
    out = tmp_path / "res"
    assert main(["eval", str(tmp_path / "subA.nii.gz"), "--models", "bicubic", "zerofill", "--draws", "2",
                 "--reference", "zerofill", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "per_volume.csv")))
    assert {(r["model"], r["draw"]) for r in rows} == {(m, d) for m in ("bicubic", "zerofill") for d in ("0", "1")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_model"] == "zerofill" and summary["draws"]["k"] == 2
    assert "t-interval over the 2 draws" in summary["interval"]
    assert main(["eval", str(tmp_path / "subA.nii.gz"), "--models", "bicubic", "--masks", "equispaced",
                 "--draws", "4", "--out", str(tmp_path / "eq")]) == 2
    assert "one deterministic mask per volume" in capsys.readouterr().err
    # a single 2-D image (here one slice of the sample as PNG, and as a one-slice NIfTI) is refused
    from PIL import Image

    img = np.asarray(nib.load(sample_path()).dataobj)[:, :, 4]
    Image.fromarray(np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)).save(tmp_path / "slice.png")
    nib.save(nib.Nifti1Image(img[:, :, None].astype(np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    for bad in ("slice.png", "slice.nii.gz"):
        assert main(["eval", str(tmp_path / bad), "--models", "bicubic", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad in err and "is a 2-D image" in err
        assert not (tmp_path / "o").exists()
