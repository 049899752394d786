"""Stopping a run with SIGINT/SIGTERM, resuming it, and the messages that say how.

Every interrupted run here is resumed and compared with an uninterrupted run of the same
recipe: the final weights, EMA, optimiser, RNG and sampler state must be bit-identical, and the
run logs (``train.jsonl`` without its wall-clock ``time``, ``metrics.jsonl``) must read as one
run, equal to the uninterrupted one. Signals are real (``os.kill`` / ``os.killpg``), sent from a
hook at a chosen step. Data: the shipped Colin27 slab as three subjects (``conftest.py``).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from iconet.cli import main
from iconet.config import ConfigError, to_dict
from iconet.engine.checkpoint import load_checkpoint
from iconet.engine.config import load_train_config, train_config_from_dict
from iconet.engine.interrupt import TrainingInterrupted
from iconet.engine.trainer import Trainer, train

from _run_fixtures import TINY_ICONET

REPO = Path(__file__).resolve().parents[1]
STEPS = 8


def overrides(data_root: Path, *extra: str) -> list[str]:
    """8 steps; a train.jsonl row every 2, validation every 3 (and at step 0), last.pt every 4."""
    return [
        *TINY_ICONET,
        f"data.root={data_root}", "data.layout=plain", "data.train_subjects=[subA, subB]",
        "data.val_subjects=[subC]", "data.axis=2", "data.patch_size=16", "data.batch_size=4",
        "data.slices_per_volume=2", "degradation.mask_mode=random", f"run.steps={STEPS}", "run.precision=fp32",
        "run.log_every=2", "run.val_every=3", "run.val_at_start=true", "run.ckpt_every=4", "run.ema_decay=0.9",
        "run.progress=false", "run.threads=1", "optim.grad_clip=1.0", "schedule.warmup_steps=2", *extra,
    ]


def cfg_for(data_root: Path, out: Path, *extra: str):
    return load_train_config(None, [*overrides(data_root, *extra), f"run.out_dir={out}"])


def last(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["sampler"] == b["sampler"] and a["scheduler"] == b["scheduler"]
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        for k in sa:
            assert torch.equal(sa[k], sb[k])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def log_rows(run: Path, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / name).read_text().splitlines()]
    for r in rows:
        r.pop("time", None)  # wall clock
    return rows


def assert_logs_read_as_one_run(straight: Path, resumed: Path) -> None:
    for name in ("train.jsonl", "metrics.jsonl"):
        a, b = log_rows(straight, name), log_rows(resumed, name)
        assert [r["step"] for r in b] == [r["step"] for r in a], name  # no step twice, none missing
        assert b == a, name  # and the same numbers


def on_step(trainer: Trainer, step: int, action) -> None:
    """Call ``action()`` right after optimiser step ``step`` (before its log row and validation)
    or, for ``step == 0``, inside the step-0 validation."""
    if step == 0:
        orig_val = trainer._validate_and_record

        def val_then():
            orig_val()
            if trainer.step == 0:
                action()

        trainer._validate_and_record = val_then
        return
    orig = trainer.train_step

    def step_then(batch):
        out = orig(batch)
        if trainer.step == step:
            action()
        return out

    trainer.train_step = step_then


@pytest.fixture(scope="module")
def straight(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("interrupt") / "straight"
    train(cfg_for(data_root, out))
    return out


# ----------------------------------------------------------------------------- signals, in process


@pytest.mark.parametrize("sig, step, saved_before", [
    (signal.SIGINT, 0, None),   # during the step-0 validation: no checkpoint yet
    (signal.SIGTERM, 3, None),  # before the first periodic checkpoint, with validation at that step
    (signal.SIGINT, 5, 4),      # between checkpoints, one loss row pending
], ids=["sigint-step0", "sigterm-step3", "sigint-step5"])
def test_signal_saves_and_resume_is_bit_identical(data_root, straight, tmp_path, sig, step, saved_before):
    out = tmp_path / "run"
    before = signal.getsignal(sig)
    trainer = Trainer(cfg_for(data_root, out))
    on_step(trainer, step, lambda: os.kill(os.getpid(), sig))
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    trainer.close()
    assert signal.getsignal(sig) is before  # the handlers were only borrowed
    assert stop.value.exit_code == 128 + sig and stop.value.step == step
    assert stop.value.command == f"iconet train --resume {out}"
    assert str(stop.value).count("\n") == 0 and str(out / "checkpoints" / "last.pt") in str(stop.value)
    assert last(out)["step"] == step  # the step in progress finished, then it was saved
    assert not list((out / "checkpoints").glob("*.tmp"))
    torch.manual_seed(999)  # a fresh process state: nothing may leak from the global RNG
    again = Trainer(load_train_config(out / "config.yaml", [f"run.out_dir={out}"]), resume=True)
    again.fit()
    again.close()
    assert_same_state(last(straight), last(out))
    assert_logs_read_as_one_run(straight, out)


def test_kill_after_a_checkpoint_logs_read_as_one_run(data_root, straight, tmp_path):
    """A hard kill (no handler runs) after step 7: last.pt is step 4's, while train.jsonl and
    metrics.jsonl already hold step 6's rows. The resumed run cuts them back to step 4."""
    out = tmp_path / "run"
    trainer = Trainer(cfg_for(data_root, out))

    def die():
        raise SystemExit("killed")

    on_step(trainer, 7, die)
    with pytest.raises(SystemExit):
        trainer.fit()
    trainer.close()
    assert last(out)["step"] == 4
    assert [r["step"] for r in log_rows(out, "train.jsonl")] == [2, 4, 6]
    assert [r["step"] for r in log_rows(out, "metrics.jsonl")] == [0, 3, 6]
    with open(out / "train.jsonl", "a") as f:
        f.write('{"step": 7, "epoch": 1, "train/lo')  # a row cut short by the kill
    again = Trainer(load_train_config(out / "config.yaml", [f"run.out_dir={out}"]), resume=True)
    again.fit()
    again.close()
    assert_same_state(last(straight), last(out))
    assert_logs_read_as_one_run(straight, out)


def test_second_sigint_aborts_at_once_and_keeps_the_last_checkpoint(data_root, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(cfg_for(data_root, out))
    before = signal.getsignal(signal.SIGINT)

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    on_step(trainer, 5, twice)
    with pytest.raises(KeyboardInterrupt) as abort:
        trainer.fit()
    trainer.close()
    assert not isinstance(abort.value, TrainingInterrupted)  # no save, no resume line
    assert signal.getsignal(signal.SIGINT) is before
    assert last(out)["step"] == 4  # the periodic checkpoint, intact


# ----------------------------------------------------------------------------- messages that work


def _suggested(err: str, after: str, before: str | None = None) -> list[str]:
    """The command a message suggests, as arguments for iconet.cli.main."""
    cmd = err.split(after, 1)[1]
    if before:
        cmd = cmd.split(before, 1)[0]
    args = shlex.split(cmd.strip().rstrip(";"))
    assert args[:2] == ["iconet", "train"], cmd
    return args[1:]


def test_a_run_without_checkpoint_is_not_told_to_resume(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    trainer = Trainer(cfg_for(data_root, out, "run.ckpt_every=0", "run.val_at_start=false"))

    def crash():
        raise SystemExit("killed")

    on_step(trainer, 2, crash)  # killed hard before any checkpoint
    with pytest.raises(SystemExit):
        trainer.fit()
    trainer.close()
    assert (out / "config.yaml").is_file() and not (out / "checkpoints" / "last.pt").exists()

    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint to resume" in err and "--resume" not in err
    rerun = _suggested(err, "start it over with: ", " (or remove")

    with pytest.raises(ConfigError) as refused:  # the same recipe again, into the same folder
        Trainer(cfg_for(data_root, out, "run.ckpt_every=0", "run.val_at_start=false"))
    msg = str(refused.value)
    assert "cannot be resumed" in msg and "--resume" not in msg and "run.overwrite=true" in msg

    assert main([*rerun, "run.steps=2"]) == 0  # the suggested command works
    assert last(out)["step"] == 2


def test_messages_about_a_folder_with_a_checkpoint_name_working_commands(data_root, straight, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    with pytest.raises(ConfigError) as refused:  # a new run into a folder that holds one
        Trainer(cfg_for(data_root, run))
    assert f"continue it with: iconet train --resume {run};" in str(refused.value)

    assert main(["train", "--resume", str(run)]) == 2  # finished: raise run.steps
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"already did {STEPS} of run.steps={STEPS}" in err
    assert main(_suggested(err, "e.g. ")) == 0  # the suggested command works
    assert last(run)["step"] == 2 * STEPS

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--resume", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no run to resume" in err and "--resume" not in err and f"--out {empty}" in err


# ----------------------------------------------------------------------------- the CLI, a real Ctrl-C


_CHILD = r"""
import os, signal, sys
from iconet.data.datasets import SliceDataset
from iconet.cli import main

main_pid = os.getpid()
calls = {"n": 0}
orig = SliceDataset.__getitem__

def getitem(self, i):  # in a DataLoader worker: press "Ctrl-C" (SIGINT to the process group)
    if os.getpid() != main_pid and self.config.patch_size is not None:
        calls["n"] += 1
        if calls["n"] == 9:
            os.killpg(os.getpgid(0), signal.SIGINT)
    return orig(self, i)

SliceDataset.__getitem__ = getitem
sys.exit(main(sys.argv[1:]))
"""


def test_cli_ctrl_c_to_the_process_group_with_a_worker(data_root, tmp_path):
    """`iconet train` with a DataLoader worker gets SIGINT on its whole process group (what a
    terminal's Ctrl-C does): the worker ignores it, the main process finishes its step, saves,
    prints one line with the command, exits 130; that command continues the run exactly."""
    out = tmp_path / "cli run"  # a space: the printed command must quote it
    args = [*overrides(data_root, "data.num_workers=1", "run.ckpt_every=0"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, "train", *args], capture_output=True, text=True,
                          timeout=600, env=env, start_new_session=True)
    assert proc.returncode == 130, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("iconet: stopped by SIGINT after step "), proc.stderr[-2000:]
    stopped_at = last(out)["step"]
    assert 0 < stopped_at < STEPS
    resume = _suggested(lines[-1], "continue with: ")
    assert resume == ["train", "--resume", str(out)]
    assert main(resume) == 0
    straight = tmp_path / "straight"
    train(load_train_config(None, [*overrides(data_root, "data.num_workers=1", "run.ckpt_every=0"),
                                   f"run.out_dir={straight}"]))
    assert_same_state(last(straight), last(out))
    assert_logs_read_as_one_run(straight, out)


# ----------------------------------------------------------------------------- two gloo ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, cfgs: dict, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        t = Trainer(train_config_from_dict(cfgs["straight"]))
        t.fit()
        t.close()
        t = Trainer(train_config_from_dict(cfgs["stopped"]))
        if rank == 1:  # only rank 1 is signalled: both ranks must still stop after the same step
            on_step(t, 2, lambda: os.kill(os.getpid(), signal.SIGTERM))
        try:
            t.fit()
            stop = None
        except TrainingInterrupted as err:
            stop = err
        t.close()
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(
            None if stop is None else {"code": stop.exit_code, "step": stop.step, "command": stop.command,
                                       "checkpoint": None if stop.checkpoint is None else str(stop.checkpoint)}))
        cfg = load_train_config(Path(cfgs["stopped"]["run"]["out_dir"]) / "config.yaml")
        t = Trainer(cfg, resume=True)
        t.fit()
        t.close()
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_stop_together_rank0_writes_and_resume_is_exact(tmp_path, data_root):
    cfgs = {}
    for name in ("straight", "stopped"):
        cfgs[name] = to_dict(load_train_config(None, [
            *overrides(data_root, "data.batch_size=2", "data.shard=strided", "run.val_at_start=false"),
            f"run.out_dir={tmp_path / name}", "run.steps=4", "run.ckpt_every=0", "run.val_every=2"]))
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfgs, str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["step"] == r1["step"] == 2 and r0["code"] == r1["code"] == 143
    assert r0["checkpoint"] == str(tmp_path / "stopped" / "checkpoints" / "last.pt") and r1["checkpoint"] is None
    assert r0["command"] == f"torchrun --nproc_per_node=2 -m iconet train --resume {tmp_path / 'stopped'}"
    assert_same_state(last(tmp_path / "straight"), last(tmp_path / "stopped"))
    assert_logs_read_as_one_run(tmp_path / "straight", tmp_path / "stopped")
