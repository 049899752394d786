"""DDP on CPU: two gloo processes with batch 2 each train like one process with batch 4.

Both runs see the same global batches (``data.shard=strided``: one global shuffle, rank r takes
every 2nd sample, so steps of 2 + 2 samples are the steps of 4 of the single process) and the
same per-sample crops and masks (seeded by sample index), in fp32 without EMA: the weights
agree to float tolerance, and validation (one volume per rank, rows gathered) agrees too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from iconet.config import to_dict
from iconet.data.samples import sample_path
from iconet.engine.checkpoint import load_checkpoint
from iconet.engine.config import load_train_config, train_config_from_dict
from iconet.engine.trainer import Trainer
from iconet.models import build_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(train_config_from_dict(cfg))
    try:
        assert trainer.dist.world_size == world and trainer.sampler.num_samples == 8
        trainer.fit()
    finally:
        trainer.close()


def _cfg(root: Path, out: Path, batch: int) -> dict:
    cfg = load_train_config(None, [
        "model.name=iconet", "model.width=8", "model.heads=2", "model.groups_per_stage=1", "model.blocks_per_group=1",
        f"data.root={root}", "data.train_subjects=[subA, subB]", "data.val_subjects=[subC, subD]", "data.axis=2",
        "data.patch_size=16", f"data.batch_size={batch}", "data.shard=strided", "data.slices_per_volume=2",
        "degradation.mask_mode=random", "run.steps=3", "run.val_every=3", "run.precision=fp32", "run.ema_decay=0",
        "run.progress=false", f"run.out_dir={out}", "run.threads=1", "optim.grad_clip=0.5",
    ])
    return to_dict(cfg)


def test_two_gloo_ranks_match_one_process(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("subA", "subB", "subC", "subD"):
        shutil.copy(sample_path(), root / f"{name}.nii.gz")
    single = Trainer(train_config_from_dict(_cfg(root, tmp_path / "single", 4)))
    assert single.sampler.num_samples == 16  # every one of the 2 x 8 slices is foreground
    single.fit()
    single.close()
    mp.spawn(_worker, args=(2, _free_port(), _cfg(root, tmp_path / "ddp", 2)), nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 3 and b["sampler"]["world_size"] == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    torch.manual_seed(0)
    init = build_model(a["config"]["model"]).state_dict()
    moved = max((a["model"][k] - init[k]).abs().max().item() for k in init if init[k].is_floating_point())
    assert moved > 1e-4  # training did change the weights, so the match above means something
    ra = json.loads((tmp_path / "single" / "metrics.jsonl").read_text())
    rb = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text())
    assert ra["val/volumes"] == rb["val/volumes"] == 2
    assert rb["val/sr_psnr"] == pytest.approx(ra["val/sr_psnr"], abs=1e-3)
    assert rb["val/rec_psnr"] == pytest.approx(ra["val/rec_psnr"], abs=1e-3)
    ta = [json.loads(x) for x in (tmp_path / "single" / "train.jsonl").read_text().splitlines()]
    tb = [json.loads(x) for x in (tmp_path / "ddp" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in tb] == [r["step"] for r in ta]
    for x, y in zip(ta, tb):  # the logged loss is the mean over ranks = the global-batch loss
        assert y["train/loss"] == pytest.approx(x["train/loss"], rel=1e-4)
