r"""Which ICONet sizes fit EDSR-baseline's inference time on this machine (issue 21's speed bar).

A screening grid, not the speed table: every candidate ICONet (the shipped recipes' blocks —
Fourier branch in the reconstruction branch, non-negative clamp — at several widths and group
counts; at 4x also a light or empty high-resolution stage, ``groups_per_stage [g, 0]``) is timed
against EDSR-baseline of the same scale *in the same process, alternately*, on a batch of
``--batch`` HR ``--hr``² slices, fp32 and bf16 autocast, channels_last, inference mode,
``--threads`` threads, untrained weights (speed does not depend on them); ``--repeats`` rounds,
medians. A candidate "fits" where it is at least as fast as EDSR-baseline in both precisions.
The figures that issue 21 is judged by come from ``benchmarks/inference_speed.py`` (each point
in its own process); this grid only says which sizes are worth training.

    python benchmarks/speed_budget.py      # writes benchmarks/results/speed_budget_cpu.{json,md}
    python benchmarks/speed_budget.py --block lean --scales 2   # ...speed_budget_lean_cpu.{json,md}

``--block lean`` screens the block of ``quality.py``'s ``iconet_lean_kd``: no large-kernel depth-wise
attention and no layer norm before the mixing, so a block is dense 3×3 convs, 1×1 convs and the
channel attention's matrix products, all of which run on the CPU's bf16 matrix units.
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
RESULTS = HERE / "results" / "speed_budget_cpu.json"
#: the shipped recipes' ICONet switches; every candidate adds width / groups / blocks
BASE = {"name": "iconet", "spectral_branch": "rec", "nonnegative": True}
#: block switches laid over BASE by ``--block``
BLOCKS: dict[str, dict[str, Any]] = {"shipped": {}, "lean": {"spatial_branch": False, "mix_norm": False}}
GRID: dict[int, list[dict[str, Any]]] = {
    2: [{"width": w, "groups_per_stage": g} for w in (32, 40, 48, 56) for g in (1, 2, 3)],
    4: [{"width": w, "groups_per_stage": g, "blocks_per_group": b}
        for w in (32, 40, 48) for g in ([2, 0], [3, 0], [4, 0], [3, 1]) for b in (1, 2)],
}


def _time(net: torch.nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    net(x)
    return time.perf_counter() - t


def screen(scale: int, candidates: list[dict[str, Any]], hr: int, batch: int, repeats: int,
           block: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from iconet.models import build_model
    from iconet.models.summary import count_flops, count_parameters

    x = torch.rand(batch, 1, hr // scale, hr // scale).contiguous(memory_format=torch.channels_last)
    edsr = build_model("edsr", scale=scale).eval().to(memory_format=torch.channels_last)
    rows = []
    for spec in candidates:
        net = build_model({**BASE, **(block or {}), "scale": scale, **spec}).eval().to(memory_format=torch.channels_last)
        row: dict[str, Any] = {"scale": scale, **spec, "params": count_parameters(net),
                               "gflops_per_slice": round(count_flops(net, (1, 1, hr // scale, hr // scale)) / 1e9, 2)}
        for precision in ("fp32", "bf16"):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                mine, ref = [], []
                for i in range(repeats + 1):
                    a, b = _time(net, x), _time(edsr, x)
                    if i:  # the first round warms both up
                        mine.append(a)
                        ref.append(b)
            row[f"{precision}_ms"] = round(statistics.median(mine) / batch * 1e3, 1)
            row[f"{precision}_edsr_ms"] = round(statistics.median(ref) / batch * 1e3, 1)
            row[f"{precision}_vs_edsr"] = round(statistics.median(ref) / statistics.median(mine), 2)
        row["fits"] = row["fp32_vs_edsr"] >= 1.0 and row["bf16_vs_edsr"] >= 1.0
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--hr", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block", choices=sorted(BLOCKS), default="shipped",
                    help="the block of every candidate: the shipped recipes' or the lean one (see above)")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"JSON to write (default {RESULTS.name}, or speed_budget_lean_cpu.json with --block lean)")
    opts = ap.parse_args(argv)
    if opts.results is None:
        opts.results = RESULTS if opts.block == "shipped" else RESULTS.with_name(f"speed_budget_{opts.block}_cpu.json")
    torch.set_num_threads(opts.threads)
    from iconet.runtime import machine_name

    rows = [r for s in opts.scales for r in screen(s, GRID[s], opts.hr, opts.batch, opts.repeats, BLOCKS[opts.block])]
    out = {"machine": machine_name("cpu"), "threads": opts.threads, "torch": torch.__version__, "hr": opts.hr,
           "batch": opts.batch, "repeats": opts.repeats, "base": {**BASE, **BLOCKS[opts.block]}, "rows": rows}
    opts.results.parent.mkdir(parents=True, exist_ok=True)
    opts.results.write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Which ICONet sizes fit EDSR-baseline's inference time (screening grid)", "",
             f"{out['machine']}, {opts.threads} torch threads, torch {out['torch']}; batch {opts.batch} of HR "
             f"{opts.hr}² slices, channels_last, inference mode, untrained weights; each candidate timed "
             f"alternately with EDSR-baseline in one process, median of {opts.repeats} rounds; ms per slice, "
             "and EDSR-baseline's time over the candidate's (above 1: faster). Candidates: the shipped "
             "recipes' ICONet (Fourier branch in the reconstruction branch, clamp at 0) at these sizes"
             + (" with the lean block (no depth-wise attention, no pre-norm)" if opts.block == "lean" else "")
             + ". Generated by `python benchmarks/speed_budget.py"
             + (f" --block {opts.block} --scales {' '.join(map(str, opts.scales))}" if opts.block != "shipped" else "")
             + "`.", "",
             "| scale | width | groups per stage | blocks per group | params | GFLOPs/slice | fp32 ms (vs EDSR) | "
             "bf16 ms (vs EDSR) | fits |", "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| x{r['scale']} | {r['width']} | {r['groups_per_stage']} | {r.get('blocks_per_group', 2)} | "
                     f"{r['params']:,} | {r['gflops_per_slice']:.2f} | {r['fp32_ms']} ({r['fp32_vs_edsr']:.2f}×) | "
                     f"{r['bf16_ms']} ({r['bf16_vs_edsr']:.2f}×) | {'yes' if r['fits'] else 'no'} |")
    opts.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.results} and {opts.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
