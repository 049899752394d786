"""Complexity benchmark: parameters, FLOPs, forward time and peak memory against LR size.

For ICONet (default config), EDSR-baseline and the T2Net-style net, at 2x by default, on the
CPU with 2 threads, for LR sizes 64², 128², 256², 512²; fp32 and bf16 autocast, channels_last,
batch 1, ``torch.inference_mode``. Each (model, size, precision) runs in its own process
(``benchmarks/_runner.py``) so that its peak resident memory can be read; a model that passes
``--max-seconds`` (60 s) for one forward pass or ``--max-gib`` (16 GiB) is stopped and not run
at larger sizes. Children keep freed memory for reuse (``--allocator keep``, see
:mod:`iconet.runtime`) unless ``--allocator system`` is given.

It prints a Markdown table, the exponent ``p`` of a least-squares fit ``time ∝ N^p`` (N = LR
pixel count) per model and precision, and ICONet's achieved GFLOP/s next to the GFLOP/s of a
plain 3×3 convolution of ICONet's width on the same input, measured in the same run.

    python benchmarks/complexity.py                 # full table (about 10 minutes here)
    python benchmarks/complexity.py --sizes 64 128  # quicker
    python benchmarks/complexity.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from _runner import Point, add_limit_args, limits_from, machine, measure

MODELS = ("iconet", "edsr", "t2net")
PRECISIONS = ("fp32", "bf16")


def fit_exponent(rows: list[dict]) -> float | None:
    """Least-squares slope of log(time) against log(pixels); None with fewer than 2 points."""
    pts = [(math.log(r["size"] ** 2), math.log(r["seconds"])) for r in rows if "seconds" in r]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--scale", type=int, default=2)
    add_limit_args(ap)
    ap.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    opts = ap.parse_args()

    import torch

    rows: list[dict] = []
    flops: dict[tuple[str, int], int] = {}
    params: dict[str, int] = {}
    for precision in opts.precisions:
        lim = limits_from(opts, flops=precision == "fp32")
        for model in [*opts.models, "conv3x3"] if "iconet" in opts.models else opts.models:
            for size in opts.sizes:
                # a lone conv takes milliseconds: time it more often so its median is stable
                point_lim = dataclasses.replace(lim, repeats=max(lim.repeats, 50)) if model == "conv3x3" else lim
                row = measure(Point(model, size, opts.scale, 1, precision), point_lim)
                if row.get("flops"):
                    flops[(model, size)] = row["flops"]
                if "params" in row:
                    params[model] = row["params"]
                rows.append(row)
                shown = f"{row['seconds']:.3f} s" if "seconds" in row else row["stopped"]
                print(f"  {model:8s} {size:4d}² {precision}: {shown}", file=sys.stderr, flush=True)
                if "stopped" in row:
                    break  # larger sizes only get worse

    print(f"\n### Complexity at x{opts.scale}, batch 1, {opts.threads} threads, channels_last, "
          f"allocator {opts.allocator}, torch {torch.__version__}, {machine()}\n")
    print("| model | params | LR size | GFLOPs | precision | time (s) | peak mem (MiB) | GFLOP/s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        if r["model"] == "conv3x3":
            continue
        f = flops.get((r["model"], r["size"]))
        p = params.get(r["model"], 0)
        gflops = "–" if f is None else f"{f / 1e9:.1f}"
        if "seconds" in r:
            rate = "–" if f is None else f"{f / r['seconds'] / 1e9:.0f}"
            print(f"| {r['model']} | {p:,} | {r['size']}² | {gflops} | {r['precision']} | "
                  f"{r['seconds']:.3f} | {r['peak_mib']:.0f} | {rate} |")
        else:
            print(f"| {r['model']} | {p:,} | {r['size']}² | {gflops} | {r['precision']} | "
                  f"stopped ({r['stopped']}) | | |")
    print("\n| model | precision | exponent p (time ∝ N^p) |")
    print("|---|---|---:|")
    for model in opts.models:
        for precision in opts.precisions:
            p = fit_exponent([r for r in rows if r["model"] == model and r["precision"] == precision])
            print(f"| {model} | {precision} | {'n/a' if p is None else f'{p:.2f}'} |")
    if "iconet" in opts.models:
        print("\n| LR size | precision | ICONet GFLOP/s | 3×3 conv (same width) GFLOP/s |")
        print("|---:|---|---:|---:|")
        for precision in opts.precisions:
            for size in opts.sizes:
                ic = next((r for r in rows if r["model"] == "iconet" and r["size"] == size
                           and r["precision"] == precision and "seconds" in r), None)
                cv = next((r for r in rows if r["model"] == "conv3x3" and r["size"] == size
                           and r["precision"] == precision and "seconds" in r), None)
                if ic and cv and ("iconet", size) in flops:
                    g_ic = flops[("iconet", size)] / ic["seconds"] / 1e9
                    g_cv = cv["flops"] / cv["seconds"] / 1e9
                    print(f"| {size}² | {precision} | {g_ic:.0f} | {g_cv:.0f} |")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
