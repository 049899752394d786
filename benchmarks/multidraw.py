r"""The shipped models on Colin27 over K seeded mask draws, with the old and the new normalisation.

What one draw hides: the score of a model depends on which k-space lines the seeded mask keeps,
and by more than the leads it is used to claim. This scores the shipped models and bicubic on
Colin27 (held out: scoring only) with ``iconet eval``'s multi-draw protocol
(:func:`iconet.evaluation.runner.evaluate`: K draws, every model through the code path of
``iconet infer``, 95 % intervals, paired differences to bicubic on the same draws), once per
normalisation convention:

* ``hr``: the statistic (99.5th percentile) of the HR volume, as the shipped models were trained
  and as the README's single-draw numbers were scored; ``iconet infer`` cannot compute it.
* ``lr``: the statistic of each draw's LR volume, what ``iconet infer`` computes on a real scan.

Draw 0's mask is the volume's own seeded mask, so draw 0 under ``hr`` is the single-draw protocol
of the README. The normalisation's cost to a model is its lead over bicubic under ``lr`` minus
under ``hr``, paired per draw (the scored HR is clipped at the statistic, so raw scores of one
model under the two conventions are not comparable; the lead over bicubic on the same HR is).

Run (fp32, CPU; each part is written when it is done, so a stopped run keeps its finished parts)::

    python benchmarks/multidraw.py --data data/colin27_T1.nii.gz --draws 8 --scales 2 4 --norms hr lr
    python benchmarks/multidraw.py --table-only          # rebuild the .md/.json from the parts

Writes ``benchmarks/results/multidraw_colin27_x<s>_<norm>.json`` per part and
``benchmarks/results/multidraw_colin27.{md,json}`` from the parts on disk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
STEM = "multidraw_colin27"
MODELS = {2: ["bicubic", "iconet-t1-x2", "iconet-t1-x2-fast"], 4: ["bicubic", "iconet-t1-x4"]}
NORM_TEXT = {"hr": "HR statistic (as trained; old protocol)", "lr": "LR statistic (as iconet infer computes it)"}


def score_part(data: Path, scale: int, norm: str, draws: int) -> dict[str, Any]:
    """One ``evaluate`` of the scale's models on ``data`` with the ``norm`` convention."""
    import torch

    from iconet.data.degrade import Degradation
    from iconet.data.io import read_volume
    from iconet.data.normalize import NormalizeConfig
    from iconet.evaluation.runner import evaluate, load_candidate

    vol = read_volume(data)
    cands = [load_candidate(m, scale, "kspace") for m in MODELS[scale]]
    tick = time.time()

    def progress(done: int, total: int) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] x{scale} {norm}: {done}/{total} passes, {time.time() - tick:.0f} s",
              file=sys.stderr, flush=True)

    res = evaluate(cands, [vol], Degradation(kind="kspace", scale=scale), axis=2,
                   normalization=NormalizeConfig(reference=norm), draws=draws, progress=progress)
    return {
        "scale": scale, "normalize_on": norm, "data": str(data), "models": MODELS[scale],
        "protocol": res.protocol, "degradation": res.degradation, "draws": res.draws, "interval": res.interval_method,
        "reference_model": res.reference_model, "summary": res.summary, "rows": res.rows,
        "seconds": round(time.time() - tick, 1),
        "hardware": {"device": "cpu", "precision": "fp32", "torch_threads": torch.get_num_threads(),
                     "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                     "torch": torch.__version__, "note": "2 CPU cores shared with other jobs: ms/slice is noisy"},
    }


def _per_draw(rows: list[dict[str, Any]], model: str, metric: str) -> list[float]:
    mine = sorted((r for r in rows if r["model"] == model and r["branch"] == "sr"), key=lambda r: int(r["draw"]))
    return [float(r[metric]) for r in mine]


def _iv(values: list[float], digits: int, signed: bool = False) -> tuple[str, dict[str, Any]]:
    from iconet.evaluation.stats import format_interval, interval

    iv = interval({"v": values})
    return format_interval(iv, digits, signed=signed), iv.as_dict()


def _claim(d: dict[str, Any]) -> str:
    from iconet.evaluation.stats import Interval, claim

    return claim(Interval(**{k: d[k] for k in ("mean", "low", "high", "n_volumes", "n_draws", "method")}))


def assemble(parts: dict[tuple[int, str], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The markdown and JSON of every part on disk."""
    out: dict[str, Any] = {"parts": {f"x{s}_{n}": {k: v for k, v in p.items() if k != "rows"} for (s, n), p in parts.items()},
                           "scales": {}}
    lines = ["# The shipped models on Colin27 over K seeded mask draws, old and new normalisation", ""]
    any_part = next(iter(parts.values()))
    lines += [f"Data: `{Path(any_part['data']).name}` (held out: scoring only), axis 2, every foreground slice; "
              f"k-space degradation (truncation + seeded Cartesian mask, 30 % of lines, 15 % centre); "
              f"fp32 on the CPU ({any_part['hardware']['cpus']} cores shared with other jobs, "
              f"{any_part['hardware']['torch_threads']} torch thread(s), torch {any_part['hardware']['torch']}); "
              "every model through the code path of `iconet infer` (`super_resolve_volume`, pad auto).", ""]
    for scale in sorted({s for s, _ in parts}):
        have = {n: parts[(scale, n)] for n in ("hr", "lr") if (scale, n) in parts}
        first = next(iter(have.values()))
        k = first["draws"]["k"]
        models = first["models"]
        sc: dict[str, Any] = {"k": k, "models": {}}
        lines += [f"## x{scale}", "", f"K = {k} draws of one volume; values: mean [95 % t-interval over the draws] "
                  "(the mask spread on this volume, not across subjects); draw 0 is the README's single draw.", ""]
        for metric, digits, unit in (("psnr", 2, " (dB)"), ("ssim", 4, "")):
            head = ["model", f"draw 0 only, HR stat{unit}"]
            for n in have:
                head += [f"K = {k}, {NORM_TEXT[n]}{unit}", f"std over draws ({n})", f"Δ vs bicubic, {n} stat", "lead?"]
            if len(have) == 2:
                head += ["normalisation cost (Δ lr − Δ hr)"]
            lines += [f"{metric.upper()}:", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            for m in models:
                entry = sc["models"].setdefault(m, {})
                cells = [m]
                if "hr" in have:
                    d0 = _per_draw(have["hr"]["rows"], m, metric)[0]
                    cells.append(f"{d0:.{digits}f}")
                    entry.setdefault("draw0_hr", {})[metric] = d0
                else:
                    cells.append("–")
                deltas = {}
                for n, part in have.items():
                    vals = _per_draw(part["rows"], m, metric)
                    text, iv = _iv(vals, digits)
                    entry.setdefault(n, {})[metric] = {**iv, "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
                                                       "min": min(vals), "max": max(vals), "per_draw": vals}
                    cells += [text, f"{np.std(vals, ddof=1):.{digits}f}" if len(vals) > 1 else "–"]
                    if m == part["reference_model"]:
                        cells += ["reference", "–"]
                        continue
                    ref = _per_draw(part["rows"], part["reference_model"], metric)
                    deltas[n] = [a - b for a, b in zip(vals, ref)]
                    dtext, div = _iv(deltas[n], digits, signed=True)
                    entry[n][f"{metric}_vs_bicubic"] = {**div, "claim": _claim(div)}
                    cells += [dtext, _claim(div)]
                if len(have) == 2:
                    if len(deltas) == 2:
                        ctext, civ = _iv([a - b for a, b in zip(deltas["lr"], deltas["hr"])], digits, signed=True)
                        entry[f"{metric}_normalisation_cost"] = civ
                        cells.append(ctext)
                    else:
                        cells.append("–")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        if scale == 2 and all(m in models for m in ("iconet-t1-x2", "iconet-t1-x2-fast")):
            for n, part in have.items():
                for metric, digits in (("psnr", 2), ("ssim", 4)):
                    a = _per_draw(part["rows"], "iconet-t1-x2", metric)
                    b = _per_draw(part["rows"], "iconet-t1-x2-fast", metric)
                    text, iv = _iv([x - y for x, y in zip(a, b)], digits, signed=True)
                    sc.setdefault("x2_minus_fast", {}).setdefault(n, {})[metric] = {**iv, "claim": _claim(iv)}
                    lines.append(f"iconet-t1-x2 − iconet-t1-x2-fast, {NORM_TEXT[n]}, {metric.upper()}: {text} ({_claim(iv)}).")
            lines.append("")
        for n, part in have.items():
            ms = {m: part["summary"][m]["ms_per_slice"] for m in models}
            lines.append(f"Protocol ({n}): {part['protocol']}. Scored in {part['seconds']:.0f} s; ms/slice "
                         + ", ".join(f"{m} {v:.0f}" for m, v in ms.items()) + " (shared CPU: noisy).")
        lines.append("")
        out["scales"][f"x{scale}"] = sc
    lines += ["A lead is claimed only where the 95 % interval of the paired difference excludes 0. "
              "Rebuild: `python benchmarks/multidraw.py --data data/colin27_T1.nii.gz --draws 8 --scales 2 4 --norms hr lr` "
              "(scores the parts; `--table-only` reassembles this file from benchmarks/results/multidraw_colin27_x*_*.json)."]
    return "\n".join(lines) + "\n", out


def _part_path(results: Path, scale: int, norm: str) -> Path:
    return results / f"{STEM}_x{scale}_{norm}.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/colin27_T1.nii.gz"))
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4], choices=(2, 4))
    ap.add_argument("--norms", nargs="+", default=["hr", "lr"], choices=("hr", "lr"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--table-only", action="store_true", help="only reassemble the .md/.json from the parts on disk")
    ap.add_argument("--redo", action="store_true", help="score parts again even when their file exists")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for scale in args.scales:
            for norm in args.norms:
                path = _part_path(args.results, scale, norm)
                if path.exists() and not args.redo:
                    print(f"{path.name}: exists, kept (--redo to score again)", file=sys.stderr)
                    continue
                part = score_part(args.data, scale, norm, args.draws)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(part, indent=1))
                tmp.replace(path)
                print(f"wrote {path}", file=sys.stderr, flush=True)
    parts = {}
    for path in sorted(args.results.glob(f"{STEM}_x*_*.json")):
        part = json.loads(path.read_text())
        parts[(int(part["scale"]), part["normalize_on"])] = part
    if not parts:
        print("no parts scored yet", file=sys.stderr)
        return 1
    md, doc = assemble(parts)
    (args.results / f"{STEM}.md").write_text(md)
    (args.results / f"{STEM}.json").write_text(json.dumps(doc, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
