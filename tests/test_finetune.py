"""Fine-tuning from an exported or shipped model: ``model.init`` and ``run.val_at_start``.

A tiny ICONet is trained a few steps on the shipped Colin27 sample and exported; a second run
starts from the exported folder. Checked: the new run's model, EMA and validation copy start
bit-equal to the exported safetensors; its step-0 validation equals the exported model's
score computed independently (the hub's model, run by hand on the same validation slices and
scored with the metric functions; and the score the first run recorded for those weights);
mismatching recipes and unknown sources are one-line ConfigErrors; a resume takes the
checkpoint's weights, not the init's; the CLI path.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from iconet.cli import main
from iconet.config import ConfigError
from iconet.data.normalize import denormalize
from iconet.engine.checkpoint import load_checkpoint
from iconet.engine.config import load_train_config
from iconet.engine.trainer import Trainer

from _run_fixtures import make_cfg
from iconet.evaluation.metrics import MetricProtocol, aggregate, evaluate_volume
from iconet.export import export_run
from iconet.hub import load_model



def independent_sr_psnr(model: torch.nn.Module, trainer: Trainer) -> float:
    """``val/sr_psnr`` of ``model`` on ``trainer``'s validation slices, recomputed here: the model
    loaded by the hub (not the trainer's model, EMA or validation copy) is run by hand on each
    slice; the slices of each volume are stacked, de-normalised and scored with the metric
    functions; the volumes are averaged."""
    vols: dict[tuple, dict] = {}
    with torch.no_grad():
        for i in trainer.val_indices:
            s = trainer.val_ds[i]
            sr = model(s["lr"][None])["sr"][-1][0, 0].numpy()
            acc = vols.setdefault((s["volume"], s["axis"]), {"sr": [], "hr": [], "norm": s["norm"]})
            acc["sr"].append(sr)
            acc["hr"].append(s["hr_stages"][-1][0].numpy())
    rows = []
    for acc in vols.values():
        pred = denormalize(np.stack(acc["sr"]).astype(np.float64), acc["norm"])
        ref = denormalize(np.stack(acc["hr"]).astype(np.float64), acc["norm"])
        rows.append(evaluate_volume(pred, ref, MetricProtocol(slice_axis=0)))
    return aggregate(rows)["psnr"][0]


def test_init_weights_load_and_first_validation_is_the_exported_models(data_root, exported, tmp_path):
    out = tmp_path / "ft"
    cfg = make_cfg(data_root, out, f"model.init={exported}", "run.val_at_start=true", "run.steps=1",
                   model=[])  # the architecture comes from the exported model alone
    assert cfg.init == str(exported)
    assert cfg.model == yaml.safe_load((exported / "config.yaml").read_text())["model"]
    trainer = Trainer(cfg)

    # (a) model, EMA and the validation copy start from the exported tensors, bit for bit
    tensors = load_file(str(exported / "model.safetensors"))
    for name, state in (("model", trainer.model.state_dict()), ("ema", trainer.ema.state_dict()),
                        ("eval", trainer.eval_model.state_dict())):
        assert state.keys() == tensors.keys(), name
        for k, v in tensors.items():
            assert torch.equal(state[k], v), f"{name}.{k}"

    trainer.fit()
    trainer.close()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    start = rows[0]["val/sr_psnr"]

    # (b) the step-0 row is the exported model's score on the same validation slices
    hub_model, info = load_model(exported)
    assert abs(start - independent_sr_psnr(hub_model, trainer)) <= 1e-9
    # ... and exactly what the first run recorded for these weights (its best EMA validation)
    assert start == info.metrics["val/sr_psnr"]
    assert rows[1]["val/sr_psnr"] != start  # one step was taken

    # recorded: config.yaml and the checkpoint say where the weights came from; config.yaml reloads
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["init"] == str(exported) and "init" not in saved["model"]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["config"]["init"] == str(exported)
    assert load_train_config(out / "config.yaml").model == cfg.model

    # a resume continues from the checkpoint's weights, not from the init's
    last = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(last[k], tensors[k]) for k in tensors)
    again = Trainer(load_train_config(out / "config.yaml", ["run.steps=2"]), resume=True)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, last[k]), k
    again.fit()
    again.close()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # no second step-0 row on resume

    # the fine-tuned run exports and loads like any other (model stays the pure architecture)
    ft_model, ft_info = load_model(export_run(out, tmp_path / "ft_model"))
    assert ft_info.model == cfg.model


def test_from_scratch_start_differs_and_explicit_equal_keys_are_accepted(data_root, exported, tmp_path):
    """Guards (b): a random start scores otherwise; and a recipe that repeats the init model's
    architecture keys (the same values) is accepted."""
    scratch = Trainer(make_cfg(data_root, tmp_path / "scratch", "run.val_at_start=true", "run.steps=1"))
    row, _ = scratch.validate()
    scratch.close()
    ft = make_cfg(data_root, tmp_path / "ft", f"model.init={exported}", "model.scale=2", "model.grid=kspace")
    _, info = load_model(exported)
    assert row["val/sr_psnr"] != info.metrics["val/sr_psnr"]
    assert ft.model == make_cfg(data_root, tmp_path / "x").model  # TINY_ICONET, resolved


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["model.width=16"], ["model.width is 16 in the recipe but 8 in the init model", "drop model.width"]),
        (["model.width=16", "model.heads=4"], ["model.width is 16", "model.heads is 4", "drop these keys"]),
        (["model.name=edsr"], ["model.name is 'edsr' in the recipe but the init model", "'iconet'"]),
        (["model.scale=4", "degradation.scale=4", "data.patch_size=32"],
         ["model.scale is 4 in the recipe but 2 in the init model"]),
        (["degradation.scale=4", "data.patch_size=32"], ["degradation.scale is 4 but the init model", "is x2"]),
        (["degradation.kind=bicubic"], ["trained on the 'kspace' sampling grid", "'centre' grid"]),
        (["model.grid=centre", "degradation.kind=bicubic"], ["model.grid is 'centre' in the recipe but 'kspace'"]),
        (["model.widht=8"], ["model.widht", "width"]),
    ],
)
def test_recipe_that_contradicts_the_init_model_is_one_line_error(data_root, exported, tmp_path, extra, needles):
    with pytest.raises(ConfigError) as exc:
        make_cfg(data_root, tmp_path / "r", f"model.init={exported}", *extra, model=[])
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_unknown_init_lists_the_shipped_models(data_root, exported, tmp_path, monkeypatch):
    import iconet.hub as hub

    with pytest.raises(ConfigError, match=r"'no-such-model' is neither a model folder nor a shipped model; "
                                          r"shipped models: "):
        make_cfg(data_root, tmp_path / "r", "model.init=no-such-model", model=[])
    with pytest.raises(ConfigError, match="model folder not found"):
        make_cfg(data_root, tmp_path / "r", f"model.init={tmp_path / 'nowhere'}", model=[])
    with pytest.raises(ConfigError, match="model.init .*no config.yaml"):
        make_cfg(data_root, tmp_path / "r", f"model.init={tmp_path}", model=[])
    with pytest.raises(ConfigError, match="name different models"):
        load_train_config(None, [f"model.init={exported}", "init=iconet-t1-x2"])

    # a zoo holding the exported model under a shipped name: found by name, listed when unknown
    zoo = tmp_path / "zoo"
    shutil.copytree(exported, zoo / "iconet-t1-x2")
    monkeypatch.setattr(hub, "_zoo_root", lambda: zoo)
    cfg = make_cfg(data_root, tmp_path / "r", "model.init=iconet-t1-x2", model=[])
    assert cfg.init == "iconet-t1-x2" and cfg.model["width"] == 8
    with pytest.raises(ConfigError, match=r"shipped models: iconet-t1-x2 \(or give a folder"):
        make_cfg(data_root, tmp_path / "r", "model.init=iconet-t1-x9", model=[])


def test_cli_fine_tunes_from_an_exported_folder(data_root, exported, tmp_path, capsys):
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"root": str(data_root), "layout": "plain", "train_subjects": ["subA"], "val_subjects": ["subC"],
                 "axis": 2, "patch_size": 16, "batch_size": 2, "slices_per_volume": 3},
        "degradation": {"mask_mode": "random"},
        "run": {"steps": 1, "precision": "fp32", "progress": False, "val_every": 1, "threads": 1, "ema_decay": 0.9},
    }))
    out = tmp_path / "cli"
    assert main(["train", str(recipe), f"model.init={exported}", "run.val_at_start=true", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert f"init         {exported}; val/sr_psnr = {rows[0]['val/sr_psnr']:.4f} at step 0" in printed
    _, info = load_model(exported)
    assert rows[0]["val/sr_psnr"] == info.metrics["val/sr_psnr"]  # same validation data and protocol
    assert yaml.safe_load((out / "config.yaml").read_text())["init"] == str(exported)

    assert main(["train", str(recipe), f"model.init={exported}", "model.width=16", f"--out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.width is 16 in the recipe but 8" in err
    assert not (tmp_path / "bad").exists()
