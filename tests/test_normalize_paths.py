"""One normalisation statistic for training, validation, ``iconet eval`` and ``iconet infer``.

With ``reference: lr`` the statistic (99.5th percentile) is taken on the LR volume; the four
paths must take the same number from the same LR volume, and models saved before the field
existed keep their meaning (``hr``) and say so.
"""

from __future__ import annotations

import copy
import glob
from pathlib import Path

import numpy as np
import pytest
import yaml

from iconet.config import from_dict
from iconet.data.degrade import Degradation
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig, describe_reference, lr_volume, normalize
from iconet.data.volume import Volume
from iconet.engine.config import train_config_from_dict
from iconet.engine.data import build_datasets, find_split
from iconet.evaluation.runner import evaluate, load_candidate
from iconet.inference import InferenceOptions, super_resolve_volume
from iconet.models import build_model

from _run_fixtures import make_run


def _datasets(data_root, train: str, val: str, reference: str):
    cfg = train_config_from_dict({
        "model": {"name": "edsr", "scale": 2, "n_feats": 8, "n_blocks": 1},
        "data": {"root": str(data_root), "layout": "plain", "train_subjects": [train], "val_subjects": [val],
                 "axis": 2, "patch_size": 32,
                 "normalization": {"method": "percentile", "percentile": 99.5, "reference": reference}},
        "degradation": {"kind": "kspace", "scale": 2, "mask_mode": "random"},
    })
    return build_datasets(cfg, find_split(cfg.data))


def test_train_validation_eval_and_infer_take_one_statistic_from_one_lr_volume(data_root):
    vol = read_volume(data_root / "subA.nii.gz")
    deg = Degradation(kind="kspace", scale=2, mask_mode="random")
    lr = lr_volume(vol.data, deg, 2, "subA")  # every axial slice, mask seeded from the volume's name
    expected = float(np.percentile(lr.astype(np.float64), 99.5))
    hr_high = float(np.percentile(np.asarray(vol.data, dtype=np.float64), 99.5))
    assert expected < 0.95 * hr_high  # the two conventions differ here, so the test tells them apart

    train = _datasets(data_root, "subA", "subB", "lr")[0]  # subA as a training volume
    val = _datasets(data_root, "subB", "subA", "lr")[1]  # subA as a validation volume
    result = evaluate([load_candidate("bicubic", 2, "kspace")], [vol], deg, draws=1,
                      normalization=NormalizeConfig(reference="lr"))
    # infer is given that LR volume as a scan (slices along axis 2) and measures it itself
    scan = Volume(np.moveaxis(lr, 0, 2).copy(), np.diag([2.0, 2.0, 1.0, 1.0]))
    out = super_resolve_volume(build_model("bicubic", scale=2, grid="kspace"), scan, grid="kspace",
                               normalization=NormalizeConfig(reference="lr"), options=InferenceOptions(plane=2))
    highs = {
        "train": train.normalizations["subA"].high,
        "validation": val.normalizations["subA"].high,
        "eval": result.rows[0]["norm_high"],
        "infer": out["sr"].meta["iconet_normalization"]["high"],
    }
    assert highs == {k: expected for k in highs}, highs
    # and the volume itself is scaled (and clipped) alike on the training and validation paths
    ref = normalize(vol.data, NormalizeConfig(reference="lr"), stats_from=lr)[0]
    assert np.array_equal(train.array("subA"), ref) and np.array_equal(val.array("subA"), ref)
    # the older convention still takes HR's statistic
    old = _datasets(data_root, "subA", "subB", "hr")[0]
    assert old.normalizations["subA"].high == pytest.approx(hr_high, rel=1e-12)


def test_noise_degradations_take_the_lr_statistic_in_the_volume_units():
    rng = np.random.default_rng(0)
    vol = (rng.random((24, 24, 6)) * 300.0).astype(np.float32)
    deg = Degradation(kind="gaussian", scale=2, noise_sigma=0.02)
    lr = lr_volume(vol, deg, 2, "v")
    # the noise is added in units normalised by HR's percentile, then scaled back: the same LR
    # as degrading the normalised volume and multiplying by that percentile
    unit = float(np.percentile(np.moveaxis(vol, 2, 0), 99.5))
    import torch

    by_hand = deg.__class__(**{**vars(deg), "mask_mode": "seeded"}).degrade(
        torch.from_numpy(np.moveaxis(vol, 2, 0).copy()) / unit, "v")["lr"].numpy() * unit
    np.testing.assert_allclose(lr, by_hand, rtol=1e-6)


def test_configs_without_the_key_are_the_hr_convention_and_say_so():
    old = from_dict(NormalizeConfig, {"method": "percentile", "percentile": 99.5}, "normalization")
    assert old.reference == "hr" and not old.needs_lr
    assert describe_reference({"method": "percentile", "percentile": 99.5}).startswith("reference: hr")
    assert describe_reference({"method": "percentile", "reference": "lr"}).startswith("reference: lr")
    assert describe_reference({"method": "window", "low": -1000.0, "high": 1000.0}).startswith("fixed values")
    with pytest.raises(ValueError, match="reference must be 'hr' or 'lr'"):
        NormalizeConfig(reference="clean")
    from iconet.hub import read_info

    for name in ("iconet-t1-x2", "iconet-t1-x4", "iconet-t1-x2-fast"):  # shipped: trained on HR's statistic
        info = read_info(name)
        assert info.normalization["reference"] == "hr"
        assert "Which volume the statistic is taken on: reference: hr" in info.card.read_text()


def test_every_percentile_recipe_takes_the_statistic_on_the_lr():
    from iconet.engine.config import load_train_config

    recipes = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "configs" / "*.yaml")))
    assert recipes
    for path in recipes:
        norm = load_train_config(path).data.normalization
        if norm is None or norm.measures:
            assert norm is not None and norm.reference == "lr", path


def test_export_card_states_the_convention_of_the_run(tmp_path):
    from iconet.export import export_run

    run = make_run(tmp_path / "a")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    old = export_run(run, tmp_path / "old")
    assert "reference: hr (the 99.5th percentile of the HR volume" in (old / "model_card.md").read_text()
    new_cfg = copy.deepcopy(cfg)
    new_cfg["data"]["normalization"] = {"method": "percentile", "percentile": 99.5, "reference": "lr"}
    new = export_run(make_run(tmp_path / "b", config=new_cfg), tmp_path / "new")
    card = (new / "model_card.md").read_text()
    assert "reference: lr (the 99.5th percentile of the LR volume in training, validation, eval and infer alike)" in card
    assert yaml.safe_load((new / "config.yaml").read_text())["data"]["normalization"]["reference"] == "lr"
