"""Complexity benchmark: parameters, FLOPs, forward time and peak memory against LR size.

For ICONet (default config), EDSR-baseline and the T2Net-style net, at 2x by default, on the
CPU with 2 threads, for LR sizes 64², 128², 256², 512²; fp32 and bf16 autocast, channels_last,
batch 1, ``torch.inference_mode``. Each (model, size, precision) runs in its own process so
that its peak resident memory can be read (``ru_maxrss`` minus the memory after the model was
built). A model that passes ``--max-seconds`` (60 s) for one forward pass or ``--max-gib``
(16 GiB) is stopped and not run at larger sizes.

It prints a Markdown table, the exponent ``p`` of a least-squares fit ``time ∝ N^p`` (N = LR
pixel count) per model and precision, and ICONet's achieved GFLOP/s next to the GFLOP/s of a
plain 3×3 convolution of ICONet's width on the same input, measured in the same run.

    python benchmarks/complexity.py                 # full table (about 10 minutes here)
    python benchmarks/complexity.py --sizes 64 128  # quicker
    python benchmarks/complexity.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("iconet", "edsr", "t2net")
PRECISIONS = ("fp32", "bf16")


def _child(args: argparse.Namespace) -> None:
    """Run one measurement and print one JSON line (executed in a fresh process)."""
    import torch

    from iconet.models import build_model
    from iconet.models.summary import count_flops, count_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.allocator == "keep":
        from iconet.runtime import keep_freed_memory

        keep_freed_memory()
    n = args.size
    if args.model == "conv3x3":
        width = build_model("iconet").cfg.width
        model = torch.nn.Conv2d(width, width, 3, padding=1).eval()
        shape = (1, width, n, n)
        params = count_parameters(model)
        flops = 2 * width * width * 9 * n * n
    else:
        model = build_model(args.model, scale=args.scale).eval()
        shape = (1, model.in_channels, n, n)
        params = count_parameters(model)
        flops = 0
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(shape).contiguous(memory_format=torch.channels_last)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: list[float] = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        model(x)  # warm-up (oneDNN kernel selection)
        start = time.perf_counter()
        while len(times) < args.repeats and (time.perf_counter() - start < args.budget or len(times) < 1):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.flops and args.model != "conv3x3":  # counted after timing: it runs a forward too
        flops = count_flops(model, shape)
    times.sort()
    print(json.dumps({
        "model": args.model, "size": n, "precision": args.precision, "params": params, "flops": flops,
        "seconds": times[len(times) // 2], "runs": len(times), "peak_mib": (peak_kib - base_kib) / 1024,
    }))


def _rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def measure(model: str, size: int, precision: str, opts: argparse.Namespace) -> dict:
    """Run one measurement in a subprocess, enforcing the time and memory limits."""
    cmd = [sys.executable, __file__, "--child", "--model", model, "--size", str(size),
           "--precision", precision, "--scale", str(opts.scale), "--threads", str(opts.threads),
           "--repeats", str(opts.repeats), "--budget", str(opts.budget), "--allocator", opts.allocator]
    if precision == "fp32":
        cmd.append("--flops")
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, stopped = time.time(), None
    # The child runs a warm-up and at least one timed pass: allow both within the limit.
    while proc.poll() is None:
        if time.time() - start > 2 * opts.max_seconds + 30:
            stopped = f"> {opts.max_seconds:.0f} s"
        elif _rss_gib(proc.pid) > opts.max_gib:
            stopped = f"> {opts.max_gib:.0f} GiB"
        if stopped:
            proc.kill()
            proc.wait()
            return {"model": model, "size": size, "precision": precision, "stopped": stopped}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return {"model": model, "size": size, "precision": precision, "stopped": f"failed: {last}"}
    row = json.loads(out.strip().splitlines()[-1])
    if row["seconds"] > opts.max_seconds:
        row["stopped"] = f"> {opts.max_seconds:.0f} s"
    return row


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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per point (median reported)")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed passes per point at most")
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--max-gib", type=float, default=16.0)
    ap.add_argument("--allocator", choices=("keep", "system"), default="keep",
                    help="keep: glibc keeps freed memory for reuse (iconet.runtime.keep_freed_memory, "
                    "as jemalloc/tcmalloc would); system: glibc defaults (large blocks are unmapped "
                    "on free and page-faulted again)")
    ap.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    # internal: one measurement in a child process
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        _child(opts)
        return

    import torch

    rows: list[dict] = []
    flops: dict[tuple[str, int], int] = {}
    params: dict[str, int] = {}
    for precision in opts.precisions:
        for model in [*opts.models, "conv3x3"] if "iconet" in opts.models else opts.models:
            for size in opts.sizes:
                row = measure(model, size, precision, opts)
                if row.get("flops"):
                    flops[(model, size)] = row["flops"]
                if "params" in row:
                    params[model] = row["params"]
                rows.append(row)
                shown = f"{row['seconds']:.3f} s" if "seconds" in row else row["stopped"]
                print(f"  {model:8s} {size:4d}² {precision}: {shown}", file=sys.stderr, flush=True)
                if "stopped" in row:
                    break  # larger sizes only get worse

    cpu = _cpu_name()
    print(f"\n### Complexity at x{opts.scale}, batch 1, {opts.threads} threads, channels_last, "
          f"allocator {opts.allocator}, torch {torch.__version__}, {cpu}\n")
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


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
