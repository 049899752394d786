"""A training run folder written by hand in the engine's checkpoint format (random weights).

Shared by the export and inference tests, so that neither needs a real training run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import yaml

from iconet.models import build_model

TINY = {
    "iconet": {"name": "iconet", "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1},
    "edsr": {"name": "edsr", "n_feats": 8, "n_blocks": 1},
}
PROTOCOL = "PSNR over stacked slices, data_range = HR volume max; SSIM mean of 2-D 7x7; float64"


def _config(model: dict) -> dict:
    return {
        "model": dict(model),
        "data": {
            "train": ["pycortex_S1_T1.nii.gz"],
            "val": ["colin27_T1.nii.gz"],
            "slices": {"axis": 2, "patch_size": 64, "normalization": {"method": "percentile", "percentile": 99.5}},
            "batch_size": 4,
        },
        "degradation": {"kind": "kspace", "scale": 2, "mask": "cartesian", "sampled_fraction": 0.3},
        "loss": {"rec_weight": 0.5},
        "optim": {"name": "adamw", "lr": 2e-4, "weight_decay": 0.0},
        "schedule": {"name": "cosine", "steps": 1000, "warmup": 50},
        "run": {"precision": "bf16", "hardware": "2-core AMD EPYC CPU", "seed": 0},
    }


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
            "metrics": {
                "last": {"val/sr_psnr": 31.0, "val/sr_ssim": 0.91, "protocol": PROTOCOL},
                "best": {"val/sr_psnr": 31.25, "val/sr_ssim": 0.92, "protocol": PROTOCOL},
            },
        }
        ckpt.update(changes)
        torch.save(ckpt, run / "checkpoints" / f"{name}.pt")
    return run
