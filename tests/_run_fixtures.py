"""A training run folder written by hand in the engine's checkpoint format (random weights).

Shared by the export and inference tests, so that neither needs a real training run; and the
tiny real training recipe (:func:`make_cfg`) of the fine-tuning and distillation tests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import yaml

from iconet.config import to_dict
from iconet.engine.config import load_train_config
from iconet.models import build_model

TINY_ICONET = ["model.name=iconet", "model.width=8", "model.heads=2", "model.groups_per_stage=1",
               "model.blocks_per_group=1"]

TINY = {
    "iconet": {"name": "iconet", "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1},
    "edsr": {"name": "edsr", "n_feats": 8, "n_blocks": 1},
}
PROTOCOL = "PSNR over stacked slices, data_range = HR volume max; SSIM mean of 2-D 7x7; float64"


def _config(model: dict) -> dict:
    """A real, resolved training config (the engine's own schema), as the engine saves it."""
    overrides = [f"model.{k}={v}" for k, v in model.items()] + [
        "data.root=data", "data.layout=plain", "data.train_subjects=[pycortex_S1_T1]",
        "data.val_subjects=[colin27_T1]", "data.axis=2", "data.patch_size=64", "data.batch_size=4",
        "degradation.kind=kspace", "degradation.scale=2", "degradation.mask_mode=random",
        "optim.lr=2e-4", "schedule.warmup_steps=50", "run.steps=1000", "run.precision=bf16",
    ]
    return to_dict(load_train_config(None, overrides))


def make_run(root: Path, arch: str = "iconet", *, ema: bool = True, names=("best", "last"), **changes) -> Path:
    """A run folder written by hand in the engine's checkpoint format, random weights."""
    torch.manual_seed(0)
    model = build_model(TINY[arch])
    state = model.state_dict()
    ema_state = {k: (v + 0.05 * torch.randn_like(v)) if v.is_floating_point() else v.clone() for k, v in state.items()}
    cfg = _config(TINY[arch])
    run = root / f"run_{arch}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "command.txt").write_text("iconet train configs/tiny.yaml\n")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 700, "val/sr_psnr": 31.25}) + "\n")
    for name in names:
        ckpt = {
            "format": "iconet-checkpoint/1",
            "step": 700 if name == "best" else 1000,
            "model": state,
            "ema": ema_state if ema else None,
            "optimizer": {"state": {}, "param_groups": []},
            "scheduler": {"last_epoch": 700},
            "scaler": None,
            "rng": {"torch": torch.get_rng_state()},
            "sampler": {"epoch": 3},
            "config": copy.deepcopy(cfg),
            "hardware": {"device": "cpu", "processor": "2-core AMD EPYC CPU", "precision": "bf16",
                         "world_size": 1, "torch": "2.13.0+cpu", "train_seconds": 600.0},
            "metrics": {
                "last": {"val/sr_psnr": 31.0, "val/sr_ssim": 0.91, "protocol": PROTOCOL},
                "best": {"val/sr_psnr": 31.25, "val/sr_ssim": 0.92, "protocol": PROTOCOL},
            },
        }
        ckpt.update(changes)
        torch.save(ckpt, run / "checkpoints" / f"{name}.pt")
    return run


def data_args(data_root: Path) -> list[str]:
    return [f"data.root={data_root}", "data.layout=plain", "data.train_subjects=[subA, subB]",
            "data.val_subjects=[subC]", "data.axis=2", "data.patch_size=16", "data.batch_size=4",
            "data.slices_per_volume=3", "degradation.mask_mode=random"]


def make_cfg(data_root: Path, out: Path, *extra: str, model: list[str] | None = None):
    overrides = [
        *(TINY_ICONET if model is None else model), *data_args(data_root),
        "run.steps=4", f"run.out_dir={out}", "run.precision=fp32", "run.log_every=1", "run.val_every=2",
        "run.ckpt_every=2", "run.ema_decay=0.9", "run.progress=false", "run.threads=1",
        "optim.grad_clip=1.0", "schedule.warmup_steps=1",
        *extra,
    ]
    return load_train_config(None, overrides)
