"""Training engine on CPU with tiny models: exact resume, checkpoint format, atomic saves,
input errors before any step, validation rows, separate loss terms, recipes, sampler, schedule.

The data are the shipped 8-slice Colin27 sample copied into a plain folder as three
"subjects" (subA, subB train; subC validation).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from iconet.cli import main
from iconet.config import ConfigError
from iconet.engine import checkpoint as ckpt_mod
from iconet.engine.checkpoint import FORMAT, KEYS, load_checkpoint
from iconet.engine.config import ScheduleConfig, load_train_config
from iconet.engine.distributed import ShardSampler, shard_for_eval
from iconet.engine.schedule import WarmupSchedule
from iconet.engine.trainer import Trainer, train

from _run_fixtures import TINY_ICONET

REPO = Path(__file__).resolve().parents[1]


def make_cfg(data_root: Path, out: Path, *extra: str, model: list[str] | None = None):
    overrides = [
        *(model or TINY_ICONET),
        f"data.root={data_root}", "data.layout=plain", "data.train_subjects=[subA, subB]",
        "data.val_subjects=[subC]", "data.axis=2", "data.patch_size=16", "data.batch_size=4",
        "data.slices_per_volume=3", "degradation.mask_mode=random",
        "run.steps=6", f"run.out_dir={out}", "run.precision=fp32", "run.log_every=1", "run.val_every=3",
        "run.ckpt_every=3", "run.ema_decay=0.9", "run.progress=false", "run.threads=1",
        "optim.grad_clip=1.0", "schedule.warmup_steps=2",
        *extra,
    ]
    return load_train_config(None, overrides)


def states(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def assert_state_equal(a: dict, b: dict) -> None:
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(sa[k], sb[k])
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["sampler"] == b["sampler"] and a["step"] == b["step"]


# ----------------------------------------------------------------------------- (a), (f), (g)


@pytest.fixture(scope="module")
def straight_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "straight"
    train(make_cfg(data_root, out))
    return out


def test_resume_is_bit_identical(data_root, straight_run, tmp_path):
    out = tmp_path / "resumed"
    cfg = make_cfg(data_root, out)
    first = Trainer(cfg)
    first.fit(stop_at=3)  # a controlled kill right after the step-3 checkpoint
    first.close()
    assert states(out)["step"] == 3
    torch.manual_seed(12345)  # a new process state: nothing may leak from the global RNG
    again = Trainer(make_cfg(data_root, out), resume=True)
    assert again.step == 3 and again.position == 12  # 3 batches of 4
    again.fit()
    again.close()
    a, b = states(straight_run), states(out)
    assert a["sampler"]["epoch"] >= 1  # the run crossed an epoch boundary (16 slices, batch 4)
    assert_state_equal(a, b)
    rows_a = (straight_run / "metrics.jsonl").read_text().splitlines()
    rows_b = (out / "metrics.jsonl").read_text().splitlines()
    assert rows_a == rows_b  # the same validations, with the same numbers


def test_resume_is_bit_identical_in_bf16_with_workers(data_root, tmp_path):
    """Same, with autocast (bf16 where the CPU has it), channels-last, a DataLoader worker and EDSR."""
    edsr = ["model.name=edsr", "model.n_feats=8", "model.n_blocks=1"]
    extra = ["run.precision=auto", "data.num_workers=1", "run.steps=4", "run.ckpt_every=2", "run.val_every=0",
             "run.channels_last=true"]
    train(make_cfg(data_root, tmp_path / "a", *extra, model=edsr))
    t = Trainer(make_cfg(data_root, tmp_path / "b", *extra, model=edsr))
    t.fit(stop_at=2)
    t.close()
    t = Trainer(make_cfg(data_root, tmp_path / "b", *extra, model=edsr), resume=True)
    t.fit()
    t.close()
    assert_state_equal(states(tmp_path / "a"), states(tmp_path / "b"))


def test_checkpoint_format_and_run_folder(straight_run):
    for name in ("last.pt", "best.pt"):
        state = torch.load(straight_run / "checkpoints" / name, weights_only=True)
        assert set(state) == set(KEYS) and state["format"] == FORMAT
    state = states(straight_run)
    assert state["step"] == 6 and state["scaler"] is None
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python", "generators"}
    assert {"epoch", "position"} <= set(state["sampler"])
    assert state["config"]["model"]["width"] == 8 and state["config"]["run"]["steps"] == 6
    assert state["ema"].keys() == state["model"].keys()
    assert state["metrics"]["last"]["step"] == 6 and "val/sr_psnr" in state["metrics"]["best"]
    for f in ("config.yaml", "command.txt", "metrics.jsonl", "train.jsonl"):
        assert (straight_run / f).is_file()
    try:
        import tensorboard
    except ImportError:
        pass
    else:
        assert tensorboard and list((straight_run / "tb").glob("events.out.tfevents.*"))
    # config.yaml is the resolved recipe and reloads to the same thing
    again = load_train_config(straight_run / "config.yaml")
    assert again.model == state["config"]["model"]


def test_validation_rows_and_separate_loss_terms(straight_run):
    rows = [json.loads(x) for x in (straight_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    for r in rows:
        for key in ("val/sr_psnr", "val/sr_ssim", "val/sr_nmse", "val/rec_psnr", "val/rec_ssim", "val/loss",
                    "val/loss_sr_1", "val/loss_rec_1"):
            assert key in r and r[key] == r[key], key
        assert r["val/volumes"] == 1 and "data_range" in r["protocol"]
        assert 5 < r["val/sr_psnr"] < 60
    logs = [json.loads(x) for x in (straight_run / "train.jsonl").read_text().splitlines()]
    assert len(logs) == 6
    for r in logs:
        assert {"train/loss", "train/sr_1", "train/rec_1", "train/grad_norm", "lr"} <= set(r)
        # the total is the weighted sum of the separately logged terms (rec_weight 0.5)
        assert r["train/loss"] == pytest.approx(r["train/sr_1"] + 0.5 * r["train/rec_1"], rel=1e-5)
    assert logs[0]["lr"] < logs[1]["lr"]  # warm-up


def test_x4_stage_keys_and_single_task_peer(data_root, tmp_path):
    out = tmp_path / "x4"
    cfg = make_cfg(data_root, out, "model.scale=4", "degradation.scale=4", "data.patch_size=32", "run.steps=1",
                   "run.val_every=1", "data.batch_size=2", "data.slices_per_volume=1")
    trainer = Trainer(cfg)
    row = trainer.fit()
    trainer.close()
    for key in ("val/sr_psnr", "val/sr_1_psnr", "val/sr_2_psnr", "val/rec_psnr", "val/rec_1_psnr", "val/rec_2_psnr"):
        assert key in row
    assert set(trainer.val_keys) == {k for k in row if k.startswith("val/")}  # announced = reported
    log = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert {"train/sr_1", "train/sr_2", "train/rec_1", "train/rec_2"} <= set(log)
    out2 = tmp_path / "edsr"
    row = train(make_cfg(data_root, out2, "run.steps=1", "run.val_every=1", "data.slices_per_volume=1",
                         "run.precision=auto", model=["model.name=edsr", "model.n_feats=8", "model.n_blocks=1"]))
    assert "val/sr_psnr" in row and not any(k.startswith("val/rec") for k in row)


# ----------------------------------------------------------------------------- (b) atomic save


def test_crash_during_save_keeps_previous_checkpoint(straight_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    before = states(run)
    trainer = Trainer(_resume_cfg(run), resume=True)
    trainer.step = 99

    def crash(tmp, path):
        assert Path(tmp).is_file() and Path(tmp).stat().st_size > 0  # the new file was fully written
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt_mod, "_replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        trainer.save("last.pt")
    after = states(run)
    assert after["step"] == before["step"] == 6
    assert_state_equal(before, after)
    assert not list((run / "checkpoints").glob("*.tmp"))


def _resume_cfg(run: Path):
    """A run folder's own config (as ``iconet train --resume RUN`` reads it), two more steps."""
    return load_train_config(run / "config.yaml", [f"run.out_dir={run}", "run.steps=7"])


# ----------------------------------------------------------------------------- (c), (d) bad input


def _no_run_written(out: Path) -> None:
    assert not out.exists() or not any(out.rglob("*.pt"))
    assert not (out / "config.yaml").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.root=/nonexistent/iconet-data"], "nonexistent"),
        (["data.patch_size=18"], r"not a multiple of 2\*scale = 4"),
        (["data.patch_size=8"], "too small"),
        (["data.train_subjects=[subA, subB, subC]", "data.val_subjects=[]"], "validation split is empty"),
        (["data.val_subjects=[subZ]"], "no subject 'subZ'"),
        (["degradation.scale=4"], "differs from model.scale"),
        (["run.best_metric=val/sr_psnrr"], "not a validation key.*val/sr_psnr"),
    ],
)
def test_bad_input_fails_before_training(data_root, tmp_path, extra, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        Trainer(make_cfg(data_root, out, *extra))
    _no_run_written(out)


def test_empty_data_folder_and_wrong_layout(tmp_path, data_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no plain-folder image files"):
        Trainer(make_cfg(empty, tmp_path / "run"))
    with pytest.raises(ValueError, match="IXI"):
        Trainer(make_cfg(data_root, tmp_path / "run", "data.layout=ixi", "data.contrast=T2",
                         "data.train_subjects=[]", "data.val_subjects=[]"))
    _no_run_written(tmp_path / "run")


def test_resume_with_other_model_config_names_the_keys(data_root, straight_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    cfg = make_cfg(data_root, run, "run.steps=8", "model.width=16", "model.heads=1")
    with pytest.raises(ConfigError, match=r"model\.heads .*model\.width"):
        Trainer(cfg, resume=True)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="last.pt"):
        Trainer(make_cfg(data_root, tmp_path / "empty_run", "run.steps=8"), resume=True)


def test_output_folder_holding_a_run_is_refused(data_root, straight_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        Trainer(make_cfg(data_root, run, "run.steps=2"))
    t = Trainer(make_cfg(data_root, run, "run.steps=1", "run.overwrite=true", "run.val_every=0"))
    t.fit()
    t.close()
    assert states(run)["step"] == 1 and not (run / "metrics.jsonl").exists()


def test_cli_errors_are_one_line(data_root, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"model: {{name: edsr, n_feats: 8, n_blocks: 1}}\ndata: {{root: {data_root}, patch_sise: 16}}\n")
    assert main(["train", str(cfg), f"--out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.patch_sise" in err and "patch_size" in err
    good = tmp_path / "good.yaml"
    good.write_text(f"model: {{name: edsr, n_feats: 8, n_blocks: 1}}\ndata: {{root: {data_root}, patch_size: 18}}\n")
    assert main(["train", str(good), f"--out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "patch_size 18" in err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err
    _no_run_written(tmp_path / "run")


def test_cli_trains_and_resumes(data_root, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [f"data.root={data_root}", "data.train_subjects=[subA]", "data.val_subjects=[subC]", "data.axis=2",
            "data.patch_size=16", "data.batch_size=2", "data.slices_per_volume=1", "run.steps=1",
            "run.precision=fp32", "run.progress=false", "run.val_every=1", "model.n_feats=8", "model.n_blocks=1",
            "model.name=edsr"]
    assert main(["train", *args, f"--out={out}"]) == 0
    assert "val/sr_psnr" in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "run.steps=2"]) == 0
    assert states(out)["step"] == 2
    assert "--resume" in (out / "command.txt").read_text()


def test_misspelt_yaml_key_is_named(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("model: {name: iconet}\noptim: {lrr: 1.0e-3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lrr'.*did you mean 'lr'"):
        load_train_config(cfg)
    cfg.write_text("model: {name: iconet, widht: 8}\n")
    with pytest.raises(ConfigError, match=r"model\.widht.*width"):
        load_train_config(cfg)
    with pytest.raises(ConfigError, match=r"run\.stpes"):
        load_train_config(None, ["run.stpes=3"])


@pytest.mark.parametrize("recipe", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    """Every recipe loads, and the network it describes really upscales by its degradation's scale."""
    from iconet.models import build_model

    cfg = load_train_config(recipe)
    net = build_model(cfg.model).eval()
    with torch.no_grad():
        sr = net(torch.rand(1, net.cfg.in_channels, 8, 12))["sr"][-1]
    assert tuple(sr.shape[-2:]) == (8 * cfg.degradation.scale, 12 * cfg.degradation.scale)
    header = [line for line in recipe.read_text().splitlines() if line.startswith("#")]
    assert any("Expects on disk" in line for line in header)


# ----------------------------------------------------------------------------- units


def test_subject_sampler_is_deterministic_whole_subject_and_resumable():
    subjects = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2
    shards = [ShardSampler(subjects, r, 2, seed=1) for r in range(2)]
    assert all(s.by_subject for s in shards)
    orders = [s.epoch_order() for s in shards]
    assert len(orders[0]) == len(orders[1]) == shards[0].num_samples == 7
    owners = [{subjects[i] for i in set(o)} for o in orders]
    assert not owners[0] & owners[1] and owners[0] | owners[1] == {"a", "b", "c", "d"}
    again = ShardSampler(subjects, 0, 2, seed=1)
    assert again.epoch_order() == orders[0]
    again.set_position(3)
    assert list(again) == orders[0][3:]
    again.set_epoch(1)
    assert again.epoch_order() != orders[0] and sorted(set(again.epoch_order())) == sorted(set(orders[0]))
    few = ShardSampler(["a"] * 3, 1, 2, seed=0)  # fewer subjects than ranks: strided
    assert not few.by_subject and few.num_samples == 2
    split = [shard_for_eval(["a", "a", "b"], r, 2) for r in range(2)]  # whole subjects, each on one rank
    assert sorted(split) == [[0, 1], [2]]
    assert shard_for_eval(["a", "a"], 1, 2) == [] and shard_for_eval(["a", "a"], 0, 2) == [0, 1]


def test_schedules():
    cos = WarmupSchedule(ScheduleConfig(warmup_steps=4, kind="cosine", min_lr=1e-5), 104, 1e-3)
    assert [cos(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cos(54) == pytest.approx(0.5 + 0.5 * 0.01) and cos(104) == pytest.approx(0.01)
    step = WarmupSchedule(ScheduleConfig(kind="step", milestones=[10, 20], gamma=0.1), 30, 1.0)
    assert (step(9), step(10), step(25)) == (1.0, pytest.approx(0.1), pytest.approx(0.01))
    assert WarmupSchedule(ScheduleConfig(kind="constant"), 10, 1.0)(7) == 1.0
