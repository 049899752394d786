"""The notebook API: ``iconet.super_resolve(array | Volume | path, model=None, scale=2)``."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import iconet
import iconet.hub as hub
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig
from iconet.data.samples import sample_path
from iconet.data.volume import Volume
from iconet.export import export_run
from iconet.inference import InferenceOptions, super_resolve, super_resolve_volume
from iconet.models import build_model

import _run_fixtures as rf


def _export_x4(tmp_path, dest):
    """A tiny x4 EDSR exported into ``dest`` (the shared fixture writes x2 runs only)."""
    original = rf._config

    def config_x4(model: dict) -> dict:
        cfg = original({k: v for k, v in model.items() if k != "scale"})
        cfg["model"]["scale"] = cfg["degradation"]["scale"] = 4
        return cfg

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rf, "_config", config_x4)
        mp.setitem(rf.TINY, "edsr_x4", {"name": "edsr", "n_feats": 8, "n_blocks": 1, "scale": 4})
        return export_run(rf.make_run(tmp_path / "x4", "edsr_x4"), dest)


@pytest.fixture()
def zoo(tmp_path, monkeypatch):
    """A zoo holding a tiny ``iconet-t1-x2`` (random weights) in place of the shipped models."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    export_run(rf.make_run(tmp_path, "edsr"), folder / "iconet-t1-x2")
    monkeypatch.setattr(hub, "_zoo_root", lambda: folder)
    return folder


def _slice() -> np.ndarray:
    return np.asarray(nib.load(sample_path()).dataobj)[:90, :108, 3]  # a real 2-D slice


def test_top_level_names():
    assert iconet.super_resolve is super_resolve
    assert iconet.super_resolve_volume is super_resolve_volume
    assert iconet.InferenceOptions is InferenceOptions
    assert iconet.available_models is hub.available_models
    assert {"super_resolve", "load_model", "available_models"} <= set(dir(iconet))
    with pytest.raises(AttributeError):
        iconet.no_such_name  # noqa: B018


def test_array_in_array_out_with_the_shipped_model(zoo):
    lr = _slice()
    sr = iconet.super_resolve(lr)  # model=None, scale=2: the shipped iconet-t1-x2
    assert isinstance(sr, np.ndarray) and sr.shape == (180, 216) and sr.dtype == lr.dtype
    # the same as the engine with the exported model's grid and normalisation
    model, info = hub.load_model("iconet-t1-x2")
    norm = NormalizeConfig(**info.normalization)
    ref = super_resolve_volume(model, Volume(lr), grid=info.grid, normalization=norm)["sr"].data[:, :, 0]
    np.testing.assert_array_equal(sr, ref)
    # a 3-D stack: slices along the coarsest axis of its spacing
    stack = np.stack([lr] * 3, axis=0).astype(np.float32)  # (3, 90, 108)
    assert iconet.super_resolve(stack, spacing=(3.0, 1.0, 1.0)).shape == (3, 180, 216)
    assert iconet.super_resolve(stack.transpose(1, 2, 0), "iconet-t1-x2").shape == (180, 216, 3)
    # option fields as keywords: a forced tile still gives the same shape
    assert iconet.super_resolve(lr, tile=48, memory_budget_bytes="64MiB").shape == (180, 216)


def test_path_and_volume_in_volume_out(zoo, tmp_path):
    path = tmp_path / "lr.nii.gz"
    img = nib.load(sample_path())
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:90, :108, :2], img.affine), path)
    vol = read_volume(path)
    out = iconet.super_resolve(path, device="cpu")
    assert isinstance(out, Volume) and out.shape == (180, 216, 2)
    np.testing.assert_allclose(out.spacing[:2], np.array(vol.spacing[:2]) / 2)
    again = iconet.super_resolve(vol, zoo / "iconet-t1-x2")  # an exported folder as the model
    np.testing.assert_array_equal(again.data, out.data)
    with pytest.raises(ValueError, match="only apply to arrays"):
        iconet.super_resolve(vol, spacing=(1, 1, 1))


def test_no_shipped_model_of_that_scale_names_the_shipped_ones(zoo, monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        iconet.super_resolve(_slice(), scale=4)
    msg = str(err.value)
    assert "no shipped model for x4 (iconet-t1-x4); shipped models: iconet-t1-x2" in msg
    assert "exported model folder" in msg and "\n" not in msg
    monkeypatch.setattr(hub, "_zoo_root", lambda: None)
    with pytest.raises(FileNotFoundError, match="shipped models: none yet"):
        iconet.super_resolve(_slice())
    # once there, scale=4 picks it
    monkeypatch.setattr(hub, "_zoo_root", lambda: zoo)
    _export_x4(tmp_path, zoo / "iconet-t1-x4")
    assert hub.available_models() == ["iconet-t1-x2", "iconet-t1-x4"]
    assert iconet.super_resolve(_slice(), scale=4).shape == (360, 432)


def test_the_real_zoo():
    names = hub.available_models()
    if "iconet-t1-x2" not in names:
        with pytest.raises(FileNotFoundError, match="shipped models: "):
            iconet.super_resolve(_slice())
        pytest.skip("iconet-t1-x2 is not shipped in this checkout")
    sr = iconet.super_resolve(_slice(), device="cpu")
    assert sr.shape == (180, 216)


def test_a_model_instance_and_the_engine_signature():
    from iconet.inference import super_resolve_volume

    lr = _slice().astype(np.float32)
    model = build_model("bicubic", grid="centre")
    sr = iconet.super_resolve(lr, model)  # grid from the instance's config
    engine = super_resolve_volume(model, lr, grid="centre")  # the engine's form: model first, a dict back
    assert isinstance(engine, dict) and set(engine) == {"sr"}
    np.testing.assert_array_equal(sr, engine["sr"].data[:, :, 0])
    with pytest.raises(ValueError, match="upscales x2, but scale=4"):
        iconet.super_resolve(lr, model, scale=4)
    for old_order in ({}, {"grid": "centre"}):  # the model first is the other function, by name
        with pytest.raises(TypeError, match=r"image comes first.*super_resolve_volume\(model, volume, grid=\.\.\.\)"):
            iconet.super_resolve(model, lr, **old_order)
    with pytest.raises(TypeError, match="the image comes first"):
        iconet.super_resolve(model=lr, volume=lr)


def test_bad_arrays_are_clear_errors():
    model = build_model("bicubic")
    for bad, words in [
        (np.zeros(5), "2-D slice"),
        (np.zeros((2, 3, 4, 5)), "2-D slice"),
        (np.zeros((4, 0)), "2-D slice"),
        (np.array([["a", "b"]]), "real-valued"),
        (np.zeros((4, 4), complex), "real-valued"),
    ]:
        with pytest.raises(ValueError, match=words):
            iconet.super_resolve(bad, model)
    with pytest.raises(ValueError, match="spacing must be 3"):
        iconet.super_resolve(np.zeros((4, 4, 4)), model, spacing=(1, 1))
    with pytest.raises(ValueError, match="not both"):
        iconet.super_resolve(np.zeros((4, 4, 4)), model, spacing=(1, 1, 1), affine=np.eye(4))
    with pytest.raises(ValueError, match="save_rec"):
        iconet.super_resolve(np.zeros((8, 8)), model, save_rec=True)


def test_super_resolve_by_folder_reuses_the_loaded_model_until_its_weights_change(tmp_path):
    """A loop of ``super_resolve(x, folder)`` loads the model once (and so probes its memory
    once); rewriting the folder's weights is seen by the next call, never served stale."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    import iconet.inference as inf

    folder = tmp_path / "model"
    shutil.copytree(hub._zoo_folder("iconet-t1-x2"), folder)
    x = read_volume(sample_path()).data[:, :, 0].astype(np.float32)[:48, :48]
    first = iconet.super_resolve(x, folder, device="cpu")
    loads = inf._load_folder.cache_info().misses
    net = inf._load(folder, None, "cpu")[0]
    again = iconet.super_resolve(x, folder, device="cpu")
    assert np.array_equal(first, again)
    assert inf._load(folder, None, "cpu")[0] is net and inf._load_folder.cache_info().misses == loads

    weights = folder / hub.WEIGHTS_FILE
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    state = {k: (v * 0.5 if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    save_file(state, str(weights), metadata=meta)
    changed = iconet.super_resolve(x, folder, device="cpu")
    assert not np.allclose(changed, first)
    fresh, _ = hub.load_model(folder, device="cpu")
    direct = iconet.super_resolve(x, fresh.to(memory_format=torch.channels_last), grid="kspace",
                                  normalization=hub.read_info(folder).normalization)
    np.testing.assert_array_equal(changed, direct)
