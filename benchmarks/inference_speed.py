"""Inference speed: slices per second and peak memory for whole HR slices, ICONet vs peers.

For HR slices of 256² and 512² at 2x and 4x (LR 128², 64², 256², 128²), batches of
``--batch`` slices, ``torch.inference_mode`` and ``channels_last``, each point in its own
process (``benchmarks/_runner.py``): ICONet's default config, EDSR-baseline and the
T2Net-style peer in the same run, fp32 and bf16 autocast on the CPU (2 threads by default),
plus fp16 on CUDA when a GPU is present (``--device cuda``). Untrained weights: speed does not
depend on them. ``--compile`` times every point a second time under ``torch.compile`` (inductor,
default mode; the compilation itself, two warm-up passes, is reported in its own column and not
in the timings), and 'vs EDSR' then compares like with like (compiled with compiled). On the
CPU a compiled row's peak memory includes the compiler's own (the process's high-water mark
cannot be reset); on CUDA it is counted after compilation.

    python benchmarks/inference_speed.py                         # CPU table (a few minutes)
    python benchmarks/inference_speed.py --device cuda --threads 16 --batch 16 --compile
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _runner import Point, add_limit_args, limits_from, machine, measure

MODELS = ("iconet", "edsr", "t2net")


def model_scale(model: str) -> int | None:
    """The scale of a shipped name or exported model folder; ``None`` for a registry name."""
    from iconet.models import model_names

    if model in model_names() or model == "conv3x3":
        return None
    from iconet.hub import load_model

    return load_model(model)[0].scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS),
                    help="registry names (default configs) and/or shipped names / exported model folders")
    ap.add_argument("--hr-sizes", nargs="+", type=int, default=[256, 512])
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 4])
    ap.add_argument("--batch", type=int, default=4, help="slices per forward pass")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", default=None,
                    help="default: fp32 bf16 on CPU, fp32 bf16 fp16 on CUDA")
    ap.add_argument("--compile", action="store_true", help="also time each point torch.compile'd")
    ap.add_argument("--json", type=Path)
    add_limit_args(ap)
    opts = ap.parse_args()
    precisions = opts.precisions or (["fp32", "bf16"] if opts.device == "cpu" else ["fp32", "bf16", "fp16"])
    lim = limits_from(opts)

    import torch

    rows = []
    for hr in opts.hr_sizes:
        for scale in opts.scales:
            for precision in precisions:
                for model in opts.models:
                    if model_scale(model) not in (None, scale):
                        continue  # a shipped/exported model is timed at its own scale only
                    for compiled in (False, True) if opts.compile else (False,):
                        p = Point(model, hr // scale, scale, opts.batch, precision, opts.device, compiled)
                        row = {**measure(p, lim), "hr": hr}
                        rows.append(row)
                        shown = f"{row['seconds']:.3f} s" if "seconds" in row else row["stopped"]
                        print(f"  {model:7s} HR {hr}² x{scale} {precision}{' compiled' if compiled else ''}: {shown}",
                              file=sys.stderr, flush=True)

    print(f"\n### Inference speed, batch {opts.batch}, device {opts.device}, {opts.threads} CPU threads, "
          f"channels_last, allocator {opts.allocator}, torch {torch.__version__}, {machine(opts.device)}\n")
    compile_col = " compiled (compile s) |" if opts.compile else ""
    print(f"| HR slice | scale | precision |{compile_col} model | params | slices/s | ms/slice | peak mem (MiB) | vs EDSR |")
    print("|---:|---:|---|" + ("---|" if opts.compile else "") + "---|---:|---:|---:|---:|---:|")
    for r in rows:
        edsr = next((e for e in rows if e["model"] == "edsr" and e["hr"] == r["hr"] and e["scale"] == r["scale"]
                     and e["precision"] == r["precision"] and e["compiled"] == r["compiled"] and "seconds" in e), None)
        params = r.get("params") or next((o["params"] for o in rows if o["model"] == r["model"]
                                          and o["scale"] == r["scale"] and "params" in o), None)
        compiled = (f" yes ({r.get('compile_s', 0):.0f} s) |" if r["compiled"] else " no |") if opts.compile else ""
        head = f"| {r['hr']}² | x{r['scale']} | {r['precision']} |{compiled} {r['model']} | " + \
               ("–" if params is None else f"{params:,}") + " |"
        if "seconds" not in r:
            print(f"{head} stopped ({r['stopped']}) | | | |")
            continue
        rate = r["batch"] / r["seconds"]
        ratio = f"{edsr['seconds'] / r['seconds']:.2f}×" if edsr else "–"
        print(f"{head} {rate:.2f} | {1000 * r['seconds'] / r['batch']:.0f} | {r['peak_mib']:.0f} | {ratio} |")
    print("\n'vs EDSR' = EDSR-baseline's time / this model's time (above 1: faster than EDSR)"
          + (", compiled against compiled." if opts.compile else "."))
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
