"""ONNX export (``iconet export ... --onnx``) and ONNX Runtime inference (``iconet infer --runtime onnx``).

The graphs of the shipped models are exported once per module (tens of seconds each: this is
the real exporter, torch.export + onnxscript); everything else runs on small crops of the
package sample. Tests that need onnxruntime skip cleanly without it; the missing-extra test
runs everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from iconet.cli import main
from iconet.data.normalize import NormalizeConfig, normalize
from iconet.data.samples import sample_path
from iconet.export import export_run
from iconet.hub import available_models, load_model

from _run_fixtures import TINY, _config, make_run

SHIPPED = [name for name in available_models() if name.startswith("iconet-")]


def _needs_onnx() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Each shipped model copied to a folder with its model.onnx (the first via the CLI)."""
    _needs_onnx()
    from iconet.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    folders = {}
    for i, name in enumerate(SHIPPED):
        out = root / name
        if i == 0:
            assert main(["export", name, "--onnx", "--out", str(out)]) == 0
        else:
            export_onnx(name, out)
        folders[name] = out
    return folders


@pytest.fixture()
def lr_nifti(tmp_path) -> Path:
    """A float32 crop of the package sample (real T1 slices, 4 mm slice axis last)."""
    img = nib.load(sample_path())
    path = tmp_path / "lr.nii.gz"
    data = np.asarray(img.dataobj)[40:88, 50:106, 2:5].astype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine), path)
    return path


def _real_slices() -> torch.Tensor:
    """Two normalised slices of the package sample, cropped to 32 x 40 LR pixels (B, 1, h, w)."""
    data = np.asarray(nib.load(sample_path()).dataobj).astype(np.float32)
    norm, _ = normalize(data, NormalizeConfig(clip=False))
    slices = np.moveaxis(norm, 2, 0)[3:5, 70:102, 80:120]
    return torch.from_numpy(np.ascontiguousarray(slices)).unsqueeze(1)


# --------------------------------------------------------------------------- equality


def test_export_forms_equal_the_fft_form_of_the_fourier_branch():
    """The export forms of SpectralMixing are the same function (even and odd widths)."""
    from iconet.models.rscfl import SpectralMixing
    from iconet.onnx_export import SPECTRAL_FORMS

    torch.manual_seed(0)
    for gated in (True, False):
        module = SpectralMixing(6, gated).eval()
        for form in SPECTRAL_FORMS.values():
            export = form(module)
            for w in (1, 2, 7, 16, 33):
                x = torch.randn(2, 6, 5, w)
                with torch.no_grad():
                    np.testing.assert_allclose(export(x).numpy(), module(x).numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SHIPPED)
def test_onnx_equals_pytorch_on_real_slices(name, exported):
    """fp32 ONNX Runtime output equals PyTorch's within 1e-4, at an even and an odd slice size."""
    from iconet.onnx_export import TOLERANCE
    from iconet.onnx_runtime import load_onnx_model

    onnx_model, info = load_onnx_model(exported[name], device="cpu")
    torch_model, _ = load_model(name)
    assert onnx_model.scale == torch_model.scale and info.grid == torch_model.cfg.grid
    x = _real_slices()
    for crop in (x, x[..., 1:, :-3]):  # 32 x 40 and 31 x 37 LR pixels
        with torch.inference_mode():
            ours = onnx_model(crop)["sr"][-1]
            ref = torch_model(crop)["sr"][-1]
        s = torch_model.scale
        assert ours.shape == (2, 1, s * crop.shape[-2], s * crop.shape[-1])
        assert float(ref.abs().max()) > 0.5  # real anatomy, not background
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=TOLERANCE, rtol=0)


def test_graph_metadata_names_format_and_config(exported):
    import onnx

    from iconet.config import to_dict
    from iconet.hub import MODEL_FORMAT, read_info
    from iconet.models import make_config
    from iconet.onnx_export import config_hash

    for name, folder in exported.items():
        meta = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
        assert meta["iconet_format"] == MODEL_FORMAT
        assert meta["iconet_config_sha256"] == config_hash(to_dict(make_config(read_info(folder).model)))
        assert meta["iconet_scale"] == str(load_model(name)[0].scale)
        graph = onnx.load(str(folder / "model.onnx")).graph
        dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims[0] and dims[2] and dims[3]  # batch, height and width are symbolic
        shipped = {p.name for p in load_model(name)[1].path.iterdir() if p.is_file() and p.name != "__init__.py"}
        assert set(_digest(folder)) == shipped | {"model.onnx"}  # the shipped model's files plus the graph


@pytest.mark.parametrize("tile", ["0", "32"])
def test_infer_runtime_onnx_writes_the_pytorch_volume(exported, lr_nifti, tmp_path, tile):
    """Same volume, geometry and tiling code: the two runtimes write the same NIfTI (float32)."""
    name = "iconet-t1-x2-fast" if "iconet-t1-x2-fast" in SHIPPED else SHIPPED[0]  # the cheapest
    folder = str(exported[name])
    outs = {}
    for runtime in ("onnx", "torch"):
        out = tmp_path / f"sr_{runtime}.nii.gz"
        assert main(["infer", str(lr_nifti), str(out), "--model", folder, "--runtime", runtime,
                     "--tile", tile, "--device", "cpu"]) == 0
        outs[runtime] = nib.load(out)
    a, b = outs["onnx"], outs["torch"]
    assert a.shape == b.shape == (96, 112, 3)
    np.testing.assert_allclose(a.affine, b.affine)
    high = float(np.percentile(nib.load(lr_nifti).get_fdata(), 99.5))
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), atol=1e-4 * high, rtol=0)


# --------------------------------------------------------------------------- refusals


def test_runtime_onnx_without_onnxruntime_names_the_extra(lr_nifti, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install iconet[onnx]" in err[0]
    assert not out.exists()


def test_graph_of_another_model_format_or_config_is_refused(exported, lr_nifti, tmp_path, capsys):
    import onnx

    names = list(exported)
    folder = tmp_path / "model"
    shutil.copytree(exported[names[0]], folder)
    proto = onnx.load(str(folder / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == "iconet_format":
            p.value = "iconet-model/0"
    onnx.save(proto, str(folder / "model.onnx"))
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--model", str(folder), "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iconet-model/0" in err[0] and not out.exists()
    if len(names) > 1:  # another model's graph in this folder
        shutil.copyfile(exported[names[1]] / "model.onnx", folder / "model.onnx")
        assert main(["infer", str(lr_nifti), str(out), "--model", str(folder), "--runtime", "onnx"]) == 2
        assert "another model config" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--precision", "bf16"], "fp32"),
    (["--model", "bicubic"], "PyTorch only"),
])
def test_runtime_onnx_bad_requests(argv, message, lr_nifti, tmp_path, capsys):
    _needs_onnx()
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--runtime", "onnx", *argv]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_model_without_graph_says_how_to_export(lr_nifti, tmp_path, capsys):
    _needs_onnx()
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr_nifti), str(out), "--runtime", "onnx", "--model", SHIPPED[0]]) == 2
    assert "iconet export" in capsys.readouterr().err and not out.exists()


def test_run_export_with_onnx_and_an_inexpressible_op_writes_nothing(tmp_path, capsys):
    """A run exports with its graph; a model whose op ONNX lacks is refused naming the op, and
    neither a run export nor an in-place export writes anything."""
    _needs_onnx()
    out = tmp_path / "model"
    assert main(["export", str(make_run(tmp_path)), "--out", str(out), "--onnx"]) == 0
    assert (out / "model.onnx").is_file() and (out / "model.safetensors").is_file()

    cfg = _config(TINY["iconet"])
    cfg["model"]["prior_upsampler"] = "fourier"  # sinc prior: torch.roll, which the exporter cannot write
    run = make_run(tmp_path / "fourier", config=cfg)
    bad = tmp_path / "bad"
    assert main(["export", str(run), "--out", str(bad), "--onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aten.roll" in err[0]
    assert not bad.exists() and not any(p.name.startswith(".bad") for p in tmp_path.iterdir())

    plain = export_run(run, tmp_path / "plain")
    before = _digest(plain)
    assert main(["export", str(plain), "--onnx"]) == 2
    assert "aten.roll" in capsys.readouterr().err
    assert _digest(plain) == before


def test_export_cli_requests(tmp_path, capsys):
    _needs_onnx()
    model = export_run(make_run(tmp_path), tmp_path / "model")
    assert main(["export", str(model)]) == 2  # a model folder without --onnx
    assert "--onnx" in capsys.readouterr().err
    assert main(["export", SHIPPED[0], "--onnx"]) == 2  # a shipped model needs --out
    assert "--out" in capsys.readouterr().err
    assert main(["export", str(model), "--onnx"]) == 0  # in place
    first = (model / "model.onnx").read_bytes()
    assert main(["export", str(model), "--onnx"]) == 2  # not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err and (model / "model.onnx").read_bytes() == first
    cfg = yaml.safe_load((model / "config.yaml").read_text())
    assert cfg["format"] == "iconet-model/1"
