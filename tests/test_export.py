"""Export of a training run to a model folder, and loading it back (iconet.export, iconet.hub)."""

from __future__ import annotations

import copy
import json
import re
import struct
from pathlib import Path

import pytest
import torch
import yaml

from iconet.cli import main
from iconet.export import export_run
from iconet.hub import load_model
from iconet.models import build_model

from _run_fixtures import PROTOCOL, TINY, make_run

def _reference(arch: str, state: dict) -> torch.nn.Module:
    ref = build_model(TINY[arch])
    ref.load_state_dict(state)
    return ref.eval()


@pytest.mark.parametrize("arch", ["iconet", "edsr"])
def test_exported_model_carries_the_ema_weights(tmp_path, arch):
    run = make_run(tmp_path, arch)
    out = export_run(run, tmp_path / "model")
    assert out == tmp_path / "model"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.json", "model.safetensors", "model_card.md"]
    model, info = load_model(out)
    assert not model.training and info.name == arch and info.scale == 2 and info.grid == "kspace"
    assert info.weights == "ema" and info.step == 700 and info.metrics["val/sr_psnr"] == 31.25
    assert info.protocol == PROTOCOL and info.card == out / "model_card.md"

    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        got = model(x)["sr"][-1]
        assert torch.equal(got, _reference(arch, ckpt["ema"])(x)["sr"][-1])
        assert not torch.equal(got, _reference(arch, ckpt["model"])(x)["sr"][-1])


def test_weights_are_safetensors_and_the_hub_never_unpickles(tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = export_run(make_run(tmp_path), tmp_path / "model")
    raw = (out / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])  # safetensors: a JSON header, then raw bytes
    assert header["__metadata__"]["format"] == "iconet-model/1"
    assert header["__metadata__"]["name"] == "iconet" and header["__metadata__"]["scale"] == "2"
    assert load_file(str(out / "model.safetensors")).keys() == build_model(TINY["iconet"]).state_dict().keys()
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata()["grid"] == "kspace"

    def no_pickle(*a, **k):
        raise AssertionError("torch.load called while loading an exported model")

    monkeypatch.setattr(torch, "load", no_pickle)
    load_model(out)
    import iconet.hub

    source = Path(iconet.hub.__file__).read_text()
    assert not re.search(r"torch\.load\b|\bpickle\.load|import pickle", source)


def test_config_and_card_say_how_the_model_was_trained(tmp_path):
    out = export_run(make_run(tmp_path), tmp_path / "model")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["format"] == "iconet-model/1" and cfg["grid"] == "kspace"
    assert cfg["model"]["width"] == 8 and "ffn_expansion" in cfg["model"]  # resolved, defaults included
    assert cfg["degradation"]["kind"] == "kspace" and cfg["degradation"]["sampled_fraction"] == 0.3
    assert cfg["data"]["normalization"]["percentile"] == 99.5
    assert set(cfg) == {"format", "model", "degradation", "data", "grid", "domain", "step", "weights"}
    # the tiny run trains on a plain folder without data.modality: its domain is stated as unknown
    assert cfg["domain"] == {"modality": "unknown", "contrast": "unknown", "intensity": "any"}
    card = (out / "model_card.md").read_text()
    for text in ("Sampling grid", "`kspace`", "origin stays where it is", "sampled_fraction", "steps", "1000",
                 "step exported", "700", "val/sr_psnr", "31.25", PROTOCOL, "adamw", "bf16", "patch",
                 "2-core AMD EPYC CPU", "colin27_T1", "Intended use", "Not for", "EMA", "parameters"):
        assert text in card, text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"] == {"val/sr_psnr": 31.25, "val/sr_ssim": 0.92} and metrics["protocol"] == PROTOCOL


@pytest.mark.parametrize("data, normalization, source", [
    ({"modality": "CT"}, {"method": "window", "low": -1000.0, "high": 1000.0}, "per-modality default (CT)"),
    ({"modality": "PT", "normalization": {"method": "range", "low": 0.0, "high": 20.0, "reference": "lr"}},
     {"method": "range", "low": 0.0, "high": 20.0, "reference": "lr"}, "as configured for training"),
])
def test_normalisation_and_modality_come_from_the_typed_data_section(tmp_path, data, normalization, source):
    run = make_run(tmp_path)
    _bad_weights(run, lambda c: c["config"]["data"].update(data))
    out = export_run(run, tmp_path / "model")
    written = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert written["modality"] == data["modality"]
    assert {k: written["normalization"][k] for k in normalization} == normalization
    assert re.search(rf"Intensity normalisation \([^\n]*{re.escape(source)}\)", (out / "model_card.md").read_text())


def test_last_checkpoint_and_missing_ema_fall_back_to_raw_weights_with_a_note(tmp_path):
    run = make_run(tmp_path, "edsr", ema=False)
    out = export_run(run, tmp_path / "model", checkpoint="last")
    model, info = load_model(out)
    assert info.weights == "model" and info.step == 1000 and info.metrics["val/sr_psnr"] == 31.0
    card = (out / "model_card.md").read_text()
    assert "no EMA weights" in card and "differs from the config stored" not in card
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x)["sr"][-1], _reference("edsr", ckpt["model"])(x)["sr"][-1])


def _bad_weights(run: Path, change) -> None:
    for name in ("best", "last"):
        path = run / "checkpoints" / f"{name}.pt"
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)


@pytest.mark.parametrize(
    "setup, error, message",
    [
        (lambda run: run.rename(run.with_name("gone")), FileNotFoundError, "run folder not found"),
        (lambda run: (run / "checkpoints" / "best.pt").unlink(), FileNotFoundError, "checkpoint not found (checkpoints in"),
        (lambda run: _bad_weights(run, lambda c: c.update(format="other/2")), ValueError, "format 'other/2' is not 'iconet-checkpoint/1'"),
        (lambda run: _bad_weights(run, lambda c: c["ema"].pop("head.weight")), ValueError, "missing key 'head.weight'"),
        (lambda run: _bad_weights(run, lambda c: c["ema"].update(extra=torch.zeros(1))), ValueError, "unexpected key 'extra'"),
        (lambda run: _bad_weights(run, lambda c: c["config"]["model"].update(n_feats=16)), ValueError, "has shape (8, 1, 3, 3), the model expects (16, 1, 3, 3)"),
        (lambda run: _bad_weights(run, lambda c: c["config"]["data"].update(normalisation={"method": "range"})), ValueError,
         "best.pt: unknown key 'data.normalisation'"),
    ],
)
def test_bad_runs_are_one_line_errors(tmp_path, setup, error, message):
    run = make_run(tmp_path, "edsr")
    setup(run)
    with pytest.raises(error) as exc:
        export_run(run, tmp_path / "model")
    assert message in str(exc.value) and "\n" not in str(exc.value)
    if "checkpoint not found" in message:
        assert "last.pt" in str(exc.value)
    assert not (tmp_path / "model").exists()


def test_existing_output_is_refused_and_failures_leave_nothing_behind(tmp_path, monkeypatch):
    import iconet.export as ex

    run = make_run(tmp_path, "edsr")
    out = export_run(run, tmp_path / "model")
    with pytest.raises(ValueError, match="already exists; pass --overwrite"):
        export_run(run, out)
    with pytest.raises(ValueError, match="is \\(or holds\\) the run folder"):
        export_run(run, run, overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not an exported model"):
        export_run(run, tmp_path / "notes", overwrite=True)
    before = (out / "config.yaml").read_text()

    real_write = ex._write

    def failing_write(exp, folder):
        real_write(exp, folder)  # files are written, then something breaks
        raise OSError("disk full")

    monkeypatch.setattr(ex, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        export_run(run, tmp_path / "fresh")
    with pytest.raises(OSError, match="disk full"):
        export_run(run, out, checkpoint="last", overwrite=True)
    assert not (tmp_path / "fresh").exists()
    assert (out / "config.yaml").read_text() == before  # the old export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes", "run_edsr"]  # no temp folders

    monkeypatch.setattr(ex, "_write", real_write)
    export_run(run, out, checkpoint="last", overwrite=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["step"] == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes", "run_edsr"]


def test_cli_export_prints_where_and_a_summary(tmp_path, capsys):
    run = make_run(tmp_path, "edsr")
    assert main(["export", str(run), "--out", str(tmp_path / "m"), "--checkpoint", "last"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 'm'}") and len(lines) == 4
    assert "edsr x2" in lines[1] and "grid kspace" in lines[1]
    assert "EMA" in lines[2] and "1000" in lines[2]
    assert "val/sr_psnr 31" in lines[3] and PROTOCOL in lines[3]

    assert main(["export", str(run), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iconet: error: ") and "already exists" in err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run folder not found" in err


def test_names_are_looked_up_in_the_zoo(tmp_path, monkeypatch):
    import iconet.hub as hub

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(hub, "_zoo_root", lambda: empty)
    with pytest.raises(FileNotFoundError, match="shipped models: none yet"):
        load_model("nope")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_model(tmp_path / "nope")

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    export_run(make_run(tmp_path, "edsr"), zoo / "edsr-tiny-x2")
    monkeypatch.setattr(hub, "_zoo_root", lambda: zoo)
    assert hub.available_models() == ["edsr-tiny-x2"]
    with pytest.raises(FileNotFoundError, match="shipped models: edsr-tiny-x2"):
        load_model("nope")
    model, info = load_model("edsr-tiny-x2")
    assert info.name == "edsr" and info.path == zoo / "edsr-tiny-x2"


def test_an_edited_run_config_is_noted_and_the_checkpoint_config_wins(tmp_path):
    run = make_run(tmp_path, "edsr")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["degradation"]["sampled_fraction"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = export_run(run, tmp_path / "model")
    assert "'degradation' section of config.yaml differs" in (out / "model_card.md").read_text()
    assert yaml.safe_load((out / "config.yaml").read_text())["degradation"]["sampled_fraction"] == 0.3


def _without_ffn_activation(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    del cfg["model"]["ffn_activation"]
    return cfg


def test_models_saved_before_ffn_activation_existed_load_as_gelu_and_new_ones_as_relu(tmp_path):
    import shutil

    from iconet.hub import read_info

    # an exported folder from before the key (the H200 session's exports are such): GELU
    old = tmp_path / "old"
    shutil.copytree(read_info("iconet-t1-x2").path, old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    assert cfg["model"]["ffn_activation"] == "relu"
    (old / "config.yaml").write_text(yaml.safe_dump(_without_ffn_activation(cfg)))
    legacy, info = load_model(old)
    shipped, _ = load_model("iconet-t1-x2")
    assert info.model["ffn_activation"] == "gelu" and legacy.cfg.ffn_activation == "gelu"
    assert shipped.cfg.ffn_activation == "relu" and build_model("iconet").cfg.ffn_activation == "relu"
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():  # the same weights, so only the activation tells the two apart
        assert not torch.allclose(legacy(x)["sr"][-1], shipped(x)["sr"][-1])

    # a training checkpoint from before the key: exported as GELU, and the folder now says so
    run = make_run(tmp_path, "iconet")
    for name in ("best", "last"):
        path = run / "checkpoints" / f"{name}.pt"
        ckpt = torch.load(path, weights_only=True)
        ckpt["config"] = _without_ffn_activation(ckpt["config"])
        torch.save(ckpt, path)
    out = export_run(run, tmp_path / "model")
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["ffn_activation"] == "gelu"
    assert load_model(out)[0].cfg.ffn_activation == "gelu"
