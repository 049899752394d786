"""Shared by the S1-slab analyses (error_bands.py, ssim_split.py): the slab, the models' outputs, the write-out.

Design questions are asked on S1's held-out slab, never on Colin27: its axial foreground
slices, normalised as the models were trained, degraded by the k-space task with the volume's
seeded mask (the same LR every script and every model sees).
"""

from __future__ import annotations

from pathlib import Path

import torch

from iconet.data.degrade import Degradation
from iconet.data.io import read_volume
from iconet.data.normalize import NormalizeConfig
from iconet.evaluation.runner import _slices, load_candidate


def held_out_slab(data: Path, scale: int) -> tuple[torch.Tensor, torch.Tensor, Degradation]:
    """``(HR, LR, degradation)``: HR ``(S, H, W)`` and LR ``(S, H/s, W/s)``, normalised units."""
    deg = Degradation(kind="kspace", scale=scale)
    vol = read_volume(data)
    hr, _norm, _keep = _slices(vol, 2, deg.multiple, NormalizeConfig())
    return hr, deg.degrade(hr, vol.name)["lr"], deg


def model_outputs(arg: str, lr: torch.Tensor, deg: Degradation, batch: int = 8) -> tuple[str, torch.Tensor]:
    """``(label, SR)`` for ``arg`` = ``MODEL`` or ``LABEL=MODEL`` (anything ``iconet eval --models``
    takes); SR ``(S, H, W)`` float32, computed ``batch`` slices at a time without gradients."""
    label, _, spec = arg.rpartition("=")
    cand = load_candidate(spec, deg.scale, deg.grid)
    with torch.no_grad():
        sr = torch.cat([cand.model(lr[i : i + batch, None])["sr"][-1][:, 0].float() for i in range(0, len(lr), batch)])
    return label or cand.name, sr


def write_result(results: Path, filename: str, lines: list[str]) -> None:
    """Write ``lines`` as ``results/filename`` (folders made) and print them."""
    text = "\n".join(lines) + "\n"
    results.mkdir(parents=True, exist_ok=True)
    (results / filename).write_text(text)
    print(text)
