"""``iconet demo``: the main job on the shipped sample, offline."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from iconet.cli import main
from iconet.data.samples import sample_path
from iconet.demo import run_demo
from iconet.export import export_run

from _run_fixtures import make_run


def test_demo_writes_volume_figure_and_table_at_the_hr_geometry(tmp_path, capsys, monkeypatch):
    import iconet.hub as hub

    empty = tmp_path / "zoo"
    empty.mkdir()
    monkeypatch.setattr(hub, "_zoo_root", lambda: empty)  # a package without shipped weights
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr()
    assert "no shipped ICONet model for x2 yet" in out.err
    sr = nib.load(tmp_path / "d" / "colin27_sr_x2.nii.gz")
    src = nib.load(sample_path())
    assert sr.shape == (180, 216, 8) and sr.get_data_dtype() == np.uint8
    np.testing.assert_allclose(sr.affine, src.affine)  # LR made on the kspace grid of HR
    lr = nib.load(tmp_path / "d" / "colin27_lr_x2.nii.gz")
    assert lr.shape == (90, 108, 8) and np.allclose(lr.affine[:3, :3], np.diag([2.0, 2.0, 4.0]))
    png = (tmp_path / "d" / "comparison_x2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = (tmp_path / "d" / "metrics_x2.md").read_text()
    assert "| bicubic |" in table and "| zero-filled |" in table and "data_range = max(HR volume)" in table
    # a second run refuses to replace the outputs, and the first ones stay
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert "output exists" in capsys.readouterr().err


def test_demo_shows_an_exported_model(tmp_path):
    model_dir = export_run(make_run(tmp_path), tmp_path / "m")
    result = run_demo(tmp_path / "d", model=str(model_dir))
    assert result.model == "ICONet" and set(result.metrics) == {"bicubic", "zero-filled", "ICONet"}
    assert all(np.isfinite(m["psnr"]) for m in result.metrics.values())


@pytest.mark.parametrize("name", ["iconet-t1-x2", "iconet-t1-x2-fast"])
def test_demo_runs_a_shipped_model_and_it_beats_interpolation(tmp_path, name):
    import iconet.hub as hub

    if name not in hub.available_models():
        pytest.skip(f"no shipped {name} in this checkout")
    result = run_demo(tmp_path / "d", model=None if name == hub.shipped_name(2) else name)
    assert result.model == "ICONet"
    m = result.metrics
    # the shipped weights were trained on S1; the demo slab is Colin27, never seen
    assert m["ICONet"]["psnr"] > m["bicubic"]["psnr"] + 0.3
    assert m["ICONet"]["ssim"] > m["bicubic"]["ssim"] + 0.05


def test_the_shipped_fast_model_is_the_package_default_size_with_the_fourier_branch():
    import iconet.hub as hub
    from iconet.models.iconet import ICONetConfig

    if "iconet-t1-x2-fast" not in hub.available_models():
        pytest.skip("no shipped iconet-t1-x2-fast in this checkout")
    fast, default = hub.load_model("iconet-t1-x2-fast")[0], ICONetConfig(scale=2)
    # what the README and the card say it is
    assert (fast.cfg.width, fast.cfg.groups_per_stage, fast.cfg.blocks_per_group) == (
        default.width, default.groups_per_stage, default.blocks_per_group)
    assert fast.cfg.spectral_branch == "rec" and fast.cfg.nonnegative
    assert sum(p.numel() for p in fast.parameters()) < 0.4 * sum(
        p.numel() for p in hub.load_model("iconet-t1-x2")[0].parameters())
