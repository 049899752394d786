"""End to end on CPU: iconet train → iconet export → iconet infer, with real files throughout."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import yaml

from iconet.cli import main
from iconet.data.samples import sample_path
from iconet.hub import load_model


def test_train_export_infer(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("subA", "subB"):
        shutil.copy(sample_path(), data / f"{name}.nii.gz")
    run = tmp_path / "run"
    assert main([
        "train", "model.name=iconet", "model.width=8", "model.heads=2", "model.groups_per_stage=1",
        "model.blocks_per_group=1", f"data.root={data}", "data.layout=plain", "data.train_subjects=[subA]",
        "data.val_subjects=[subB]", "data.axis=2", "data.patch_size=16", "data.batch_size=2",
        "data.slices_per_volume=2", "degradation.mask_mode=random", "run.steps=2", f"run.out_dir={run}",
        "run.precision=fp32", "run.val_every=2", "run.ckpt_every=2", "run.progress=false", "run.threads=1",
    ]) == 0
    model_dir = tmp_path / "model"
    assert main(["export", str(run), "--out", str(model_dir)]) == 0
    model, info = load_model(model_dir)
    assert info.step == 2 and info.grid == "kspace" and "val/sr_psnr" in info.metrics
    card = (model_dir / "model_card.md").read_text()
    assert "kspace" in card and "cartesian" in card.lower()
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert saved["model"]["width"] == 8 and saved["degradation"]["kind"] == "kspace"

    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(sample_path()), str(out), "--model", str(model_dir)]) == 0
    src, res = nib.load(sample_path()), nib.load(out)
    assert res.shape == (362, 434, 8) and res.get_data_dtype() == np.uint8
    np.testing.assert_allclose(res.affine[:3, :3], src.affine[:3, :3] @ np.diag([0.5, 0.5, 1.0]))
