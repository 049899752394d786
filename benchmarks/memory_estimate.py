"""CUDA only: iconet.memory's estimate against the measured peak, and budget-driven tiling.

For each model and precision, the per-pixel estimate (two probe inputs) is compared with the
allocator's measured peak on larger batches (ratio = measured / predicted); then ICONet x2 fp32
super-resolves 8 random 512² LR slices under budgets of none, 1 GiB and 256 MiB, reporting the
tile chosen, the peak and the agreement with the untiled output. JSON lines on stdout.

    python benchmarks/memory_estimate.py            # QUICK=1: ICONet and EDSR only

Run once on an H200 (device session of 2026-11-26): peak/estimate 0.93-1.02 for ICONet and EDSR
in fp32 and bf16; budgets 1 GiB and 256 MiB held (peaks 752 / 199 MiB).
"""
import json
import os
import time

import numpy as np
import torch

from iconet.data.volume import Volume
from iconet.inference import InferenceOptions, super_resolve_volume
from iconet.memory import GiB, default_memory_budget, estimate_memory, format_size
from iconet.models import build_model

dev = torch.device("cuda")
print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
print("default budget", format_size(default_memory_budget(dev)), flush=True)
rows = []
SPECS = [{"name": "iconet"}, {"name": "edsr"}] if os.environ.get("QUICK") else [{"name": "iconet"}, {"name": "iconet", "scale": 4}, {"name": "edsr"}, {"name": "swinir"}]

def measured_peak(model, b, side, precision):
    x = torch.rand(b, 1, side, side, device=dev).contiguous(memory_format=torch.channels_last)
    amp = precision != "fp32"
    dt = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.inference_mode(), torch.autocast("cuda", dtype=dt, enabled=amp):
        model(x[:1, :, :32, :32])
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        out = model(x); torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base - x.numel() * 0  # x allocated before base
        del out
    return peak

for spec in SPECS:
    torch.manual_seed(0)
    m = build_model(spec).eval().to(dev).to(memory_format=torch.channels_last)
    for prec in ("fp32", "bf16"):
        t = time.time()
        est = estimate_memory(m, precision=prec)
        dt = time.time() - t
        for b, side in ((8, 128), (8, 256), (4, 512)):
            peak = measured_peak(m, b, side, prec)
            pred = est.peak(b, (side * m.scale) ** 2)
            r = dict(model=spec, precision=prec, batch=b, lr=side, bpp=round(est.bytes_per_pixel, 1),
                     fixed=int(est.fixed_bytes), est_s=round(dt, 2), predicted_MiB=round(pred / 2**20, 1),
                     measured_MiB=round(peak / 2**20, 1), ratio=round(peak / pred, 3))
            rows.append(r); print(json.dumps(r), flush=True)

# budget-driven tiling: ICONet x2 fp32, 8 slices of 512x512 LR, budget 1 GiB
torch.manual_seed(0)
m = build_model({"name": "iconet", "grid": "kspace"}).eval().to(dev).to(memory_format=torch.channels_last)
vol = Volume(np.random.default_rng(0).random((512, 512, 8), dtype=np.float32) * 100)
res = {}
for budget in (None, 1 * GiB, 256 * 2**20):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    t = time.time()
    out = super_resolve_volume(m, vol, grid="kspace", options=InferenceOptions(memory_budget_bytes=budget))["sr"]
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    res[budget] = out.data
    r = dict(budget=budget and format_size(budget), tile=out.meta["iconet_tile"], peak=format_size(peak),
             within=budget is None or peak <= budget, seconds=round(time.time() - t, 2))
    if budget is not None:
        w = res[None].astype(np.float64)
        r["psnr_vs_whole_dB"] = round(float(10 * np.log10(w.max() ** 2 / np.mean((w - out.data) ** 2))), 1)
    print(json.dumps(r), flush=True)
