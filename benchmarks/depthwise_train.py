r"""Training cost of ICONet's depth-wise spatial attention on a CPU: depth-wise convs against the
same convs run as dense convs with block-diagonal weights (the formulation
:class:`iconet.models.rscfl.SpatialAttention` takes in bf16 CPU training).

oneDNN's backward of a 5×5 depth-wise conv (plain and dilated) is slow on this CPU, slower in
bf16 than in fp32, while its dense convs are fast in bf16 (AMX). The dense form computes the same
sums (the off-diagonal weights are zeros that receive no gradient), at C× the FLOPs.

Measured: forward + backward of one :class:`SpatialAttention` (local 5×5, dilated 5×5 with
dilation 3, 1×1 mix) per width C, on a batch shaped like the through-plane fit's
(12 × C × 32 × 64) and the in-plane recipe's (16 × C × 64 × 64), in bf16 autocast and fp32,
channels-last; each form timed alternately, ``--repeats`` times, median; 1 torch thread by
default. Then whole training steps of the through-plane fit (S1 crop, 4 mm, x4) with each form.

    python benchmarks/depthwise_train.py            # writes benchmarks/results/depthwise_train_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "depthwise_train_cpu.json"


def _time_block(width: int, shape: tuple[int, int, int], precision: str, dense: bool, repeats: int) -> float:
    from iconet.models.rscfl import SpatialAttention, depthwise_as_dense

    torch.manual_seed(0)
    attn = SpatialAttention(width).to(memory_format=torch.channels_last)
    attn.dense_training = False  # the depth-wise form (its dilated conv in fp32 under bf16, as before)
    b, h, w = shape
    x = torch.randn(b, width, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()

    def dense_form(x: torch.Tensor) -> torch.Tensor:  # both convs dense, in the autocast's precision
        return x * torch.sigmoid(attn.mix(depthwise_as_dense(attn.wide, depthwise_as_dense(attn.local, x))))

    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = dense_form(x) if dense else attn(x)
        y.float().square().mean().backward()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _time_fit(dense: bool, steps: int, volume: Path) -> float:
    import numpy as np

    from iconet.data.io import read_volume
    from iconet.engine.isotropic_fit import FitConfig, fit_through_plane
    from iconet.isotropic import prepare, thick_slices
    from iconet.models import rscfl

    hr = read_volume(volume)
    box = (slice(40, 216), slice(24, 232), slice(16, 240))
    aff = hr.affine.copy()
    aff[:3, 3] = hr.world(np.array([s.start for s in box]))
    hr = hr.with_data(np.asarray(hr.data[box], dtype=np.float32), aff)
    job = prepare(thick_slices(hr, 2, 4.0, 4.0), axis=2, slice_thickness=4.0, target_spacing=1.0, device="cpu",
                  precision="bf16", fit_config=FitConfig())
    old = rscfl.SpatialAttention.dense_training
    rscfl.SpatialAttention.dense_training = dense
    try:
        c = time.process_time()
        fit_through_plane(job.pairs, cfg=job.cfg, minutes=0, steps=steps, seed=0, device=job.device,
                          precision=job.precision, progress=False)
        return (time.process_time() - c) / steps
    finally:
        rscfl.SpatialAttention.dense_training = old


def _time_recipe_step(recipe: Path, dense: bool, steps: int) -> float:
    """CPU s per training step (forward, L1 on every SR output, backward, AdamW) of a recipe's
    ICONet on one batch of its shape (``data.batch_size`` LR patches of ``patch_size / scale``),
    bf16 autocast, channels-last; random values (the cost does not depend on them)."""
    import yaml

    from iconet.models import build_model
    from iconet.models import rscfl

    cfg = yaml.safe_load(recipe.read_text())
    model = build_model(cfg["model"]).to(memory_format=torch.channels_last)
    scale, side = cfg["model"]["scale"], cfg["data"]["patch_size"]
    x = torch.rand(cfg["data"]["batch_size"], 1, side // scale, side // scale).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    old = rscfl.SpatialAttention.dense_training
    rscfl.SpatialAttention.dense_training = dense
    try:
        times = []
        for i in range(steps + 1):
            c = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            loss = sum(o.float().abs().mean() for o in out["sr"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times.append(time.process_time() - c)
        return statistics.median(times)
    finally:
        rscfl.SpatialAttention.dense_training = old


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 40, 48, 56, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fit-steps", type=int, default=20, help="through-plane fit steps per form (0: skip)")
    ap.add_argument("--volume", type=Path, default=Path("data/pycortex_S1_T1.nii.gz"))
    ap.add_argument("--recipes", type=Path, nargs="*", default=[Path("configs/zoo_t1_x2.yaml"), Path("configs/zoo_t1_x4.yaml")],
                    help="in-plane recipes whose whole training step is timed with each form")
    ap.add_argument("--recipe-steps", type=int, default=3)
    ap.add_argument("--skip-blocks", action="store_true", help="only the fit and recipe steps (keep the block rows of the JSON)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    opts = ap.parse_args(argv)
    torch.set_num_threads(opts.threads)
    from iconet.runtime import machine_name

    rows: list[dict[str, Any]] = []
    if opts.skip_blocks and opts.results.exists():
        rows = json.loads(opts.results.read_text())["blocks"]
    for shape_name, shape in () if opts.skip_blocks else (("fit 12x32x64", (12, 32, 64)), ("recipe 16x64x64", (16, 64, 64))):
        for precision in ("bf16", "fp32"):
            for width in opts.widths:
                dw = dn = 0.0
                pairs = [(_time_block(width, shape, precision, False, opts.repeats),
                          _time_block(width, shape, precision, True, opts.repeats)) for _ in range(2)]
                dw, dn = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
                rows.append({"batch": shape_name, "precision": precision, "width": width,
                             "depthwise_ms": round(dw * 1e3, 2), "dense_ms": round(dn * 1e3, 2),
                             "speedup": round(dw / dn, 2)})
                print(rows[-1], flush=True)
    recipes = []
    for recipe in opts.recipes:
        for _ in range(2):
            recipes.append({"recipe": str(recipe),
                            "depthwise_cpu_s_per_step": round(_time_recipe_step(recipe, False, opts.recipe_steps), 3),
                            "dense_cpu_s_per_step": round(_time_recipe_step(recipe, True, opts.recipe_steps), 3)})
            print(recipes[-1], flush=True)
    fit = []
    if opts.fit_steps and opts.volume.exists():
        for _ in range(2):
            fit.append({"depthwise_cpu_s_per_step": round(_time_fit(False, opts.fit_steps, opts.volume), 3),
                        "dense_cpu_s_per_step": round(_time_fit(True, opts.fit_steps, opts.volume), 3)})
            print(fit[-1], flush=True)
    out = {"machine": machine_name("cpu"), "threads": opts.threads, "torch": torch.__version__,
           "repeats": opts.repeats, "blocks": rows, "through_plane_fit": fit, "recipe_steps": recipes}
    opts.results.parent.mkdir(parents=True, exist_ok=True)
    opts.results.write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Depth-wise spatial attention in CPU training: depth-wise vs dense block-diagonal convs", "",
             f"{out['machine']}, {opts.threads} torch thread(s), torch {out['torch']}; forward + backward of one "
             "SpatialAttention, median of "
             f"{opts.repeats} × 2 alternating runs; generated by `python benchmarks/depthwise_train.py`.", "",
             "| batch (B×H×W) | precision | width | depth-wise ms | dense ms | speed-up |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['precision']} | {r['width']} | {r['depthwise_ms']} | {r['dense_ms']} | "
              f"{r['speedup']}× |" for r in rows]
    if fit:
        lines += ["", "Through-plane fit (S1 crop, 4 mm, x4, bf16, width 32), CPU s per training step:", "",
                  "| run | depth-wise | dense |", "|---|---:|---:|"]
        lines += [f"| {i + 1} | {f['depthwise_cpu_s_per_step']} | {f['dense_cpu_s_per_step']} |" for i, f in enumerate(fit)]
    if recipes:
        lines += ["", "Whole training step of the shipped recipes' ICONet (bf16, one batch of the recipe's shape; "
                  "median of the steps after the first), CPU s:", "", "| recipe | depth-wise | dense | speed-up |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['recipe']} | {r['depthwise_cpu_s_per_step']} | {r['dense_cpu_s_per_step']} | "
                  f"{r['depthwise_cpu_s_per_step'] / r['dense_cpu_s_per_step']:.2f}× |" for r in recipes]
    opts.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.results} and {opts.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
