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

Run (fp32, CPU; one part per scale, convention and model, bicubic re-scored in each as the paired
reference; each part is written when it is done, so a stopped run keeps its finished parts)::

    python benchmarks/multidraw.py --data data/colin27_T1.nii.gz --draws 8 \
        --parts x2/lr/iconet-t1-x2 x2/hr/iconet-t1-x2 x4/lr/iconet-t1-x4 x4/hr/iconet-t1-x4 \
                x2/lr/iconet-t1-x2-fast x2/hr/iconet-t1-x2-fast
    python benchmarks/multidraw.py --parts --pad-check x2/iconet-t1-x2   # draw 0, pad none vs auto
    python benchmarks/multidraw.py --table-only          # rebuild the .md/.json from the parts

Writes ``benchmarks/results/multidraw/x<s>_<norm>_<model>.json`` per part and
``benchmarks/results/multidraw_colin27.{md,json}`` from the parts on disk. The infer path pads
slices whose border cuts the head circularly (``--pad auto``, 110 of Colin27's 168 axial slices
at x4), which makes it about 4x slower than a bare forward pass on the CPU.
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
MODELS = {2: ["iconet-t1-x2", "iconet-t1-x2-fast"], 4: ["iconet-t1-x4"]}
DEFAULT_PARTS = [f"x{s}/{n}/{m}" for m in ("iconet-t1-x2", "iconet-t1-x4", "iconet-t1-x2-fast")
                 for s in (2, 4) if m in MODELS[s] for n in ("lr", "hr")]
NORM_TEXT = {"hr": "HR statistic (as trained; old protocol)", "lr": "LR statistic (as iconet infer computes it)"}


def score_part(data: Path, scale: int, norm: str, model: str, draws: int) -> dict[str, Any]:
    """One ``evaluate`` of bicubic and ``model`` on ``data`` with the ``norm`` convention."""
    import torch

    from iconet.data.degrade import Degradation
    from iconet.data.io import read_volume
    from iconet.data.normalize import NormalizeConfig
    from iconet.evaluation.runner import evaluate, load_candidate

    vol = read_volume(data)
    cands = [load_candidate(m, scale, "kspace") for m in ("bicubic", model)]
    tick = time.time()

    def progress(done: int, total: int) -> None:
        if done == int(done):  # whole passes only (the runner also reports fractions of one)
            print(f"[{time.strftime('%H:%M:%S')}] x{scale} {norm} {model}: {int(done)}/{total} passes, "
                  f"{time.time() - tick:.0f} s", file=sys.stderr, flush=True)

    res = evaluate(cands, [vol], Degradation(kind="kspace", scale=scale), axis=2,
                   normalization=NormalizeConfig(reference=norm), draws=draws, progress=progress)
    return {
        "scale": scale, "normalize_on": norm, "model": model, "data": str(data), "models": ["bicubic", model],
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


def merge(parts: dict[tuple[int, str, str], dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The parts of one scale and convention as one evaluation: bicubic (the same in every part:
    checked) plus each scored model, in MODELS order."""
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    for (scale, norm, model) in sorted(parts, key=lambda k: (k[0], k[1], MODELS[k[0]].index(k[2]))):
        part = parts[(scale, norm, model)]
        mine = [r for r in part["rows"] if r["model"] == model]
        bic = [r for r in part["rows"] if r["model"] == "bicubic"]
        if (scale, norm) not in merged:
            merged[(scale, norm)] = {**part, "models": ["bicubic"], "rows": bic, "summary": {"bicubic": part["summary"]["bicubic"]},
                                     "seconds": 0.0}
        m = merged[(scale, norm)]
        same = [(a["draw"], a["psnr"]) for a in bic] == [(a["draw"], a["psnr"]) for a in m["rows"] if a["model"] == "bicubic"]
        if not same:
            raise SystemExit(f"x{scale} {norm}: bicubic differs between parts (different draws or data): rescore them")
        m["models"].append(model)
        m["rows"] = m["rows"] + mine
        m["summary"][model] = part["summary"][model]
        m["seconds"] += part["seconds"]
    return merged


def assemble(parts: dict[tuple[int, str], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The markdown and JSON of the merged parts (:func:`merge`)."""
    out: dict[str, Any] = {"parts": {f"x{s}_{n}": {k: v for k, v in p.items() if k not in ("rows", "model")}
                                     for (s, n), p in parts.items()}, "scales": {}}
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
        models = [m for m in ["bicubic", *MODELS[scale]] if any(m in part["models"] for part in have.values())]
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
                if "hr" in have and m in have["hr"]["models"]:
                    d0 = _per_draw(have["hr"]["rows"], m, metric)[0]
                    cells.append(f"{d0:.{digits}f}")
                    entry.setdefault("draw0_hr", {})[metric] = d0
                else:
                    cells.append("–")
                deltas = {}
                for n, part in have.items():
                    if m not in part["models"]:
                        cells += ["not scored"] + ["–"] * 3
                        continue
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
        if scale == 2:
            for n, part in have.items():
                if not all(m in part["models"] for m in ("iconet-t1-x2", "iconet-t1-x2-fast")):
                    continue
                for metric, digits in (("psnr", 2), ("ssim", 4)):
                    a = _per_draw(part["rows"], "iconet-t1-x2", metric)
                    b = _per_draw(part["rows"], "iconet-t1-x2-fast", metric)
                    text, iv = _iv([x - y for x, y in zip(a, b)], digits, signed=True)
                    sc.setdefault("x2_minus_fast", {}).setdefault(n, {})[metric] = {**iv, "claim": _claim(iv)}
                    lines.append(f"iconet-t1-x2 − iconet-t1-x2-fast, {NORM_TEXT[n]}, {metric.upper()}: {text} ({_claim(iv)}).")
            lines.append("")
        for n, part in have.items():
            ms = {m: part["summary"][m]["ms_per_slice"] for m in part["models"]}
            lines.append(f"Protocol ({n}): {part['protocol']}. Scored in {part['seconds']:.0f} s; ms/slice "
                         + ", ".join(f"{m} {v:.0f}" for m, v in ms.items()) + " (shared CPU: noisy).")
        lines.append("")
        out["scales"][f"x{scale}"] = sc
    lines += ["A lead is claimed only where the 95 % interval of the paired difference excludes 0. "
              "Rebuild: `python benchmarks/multidraw.py --data data/colin27_T1.nii.gz --draws 8` "
              "(scores the parts; `--table-only` reassembles this file from benchmarks/results/multidraw/*.json)."]
    return "\n".join(lines) + "\n", out


def pad_check(data: Path, scale: int, model: str, results: Path) -> dict[str, Any]:
    """Draw 0 with HR's statistic and ``pad="none"`` (a bare forward pass, as ``iconet eval`` ran
    before it went through the infer path): the README's single-draw protocol exactly. Beside
    the ``hr`` part's draw 0 (pad auto) it shows what the infer path's border padding does."""
    from iconet.data.degrade import Degradation
    from iconet.data.io import read_volume
    from iconet.data.normalize import NormalizeConfig
    from iconet.evaluation.runner import evaluate, load_candidate

    res = evaluate([load_candidate("bicubic", scale, "kspace"), load_candidate(model, scale, "kspace")],
                   [read_volume(data)], Degradation(kind="kspace", scale=scale), axis=2, draws=1,
                   normalization=NormalizeConfig(reference="hr"), pad="none")
    doc = {"scale": scale, "model": model, "normalize_on": "hr", "pad": "none", "draw": 0, "data": str(data),
           "protocol": res.protocol, "rows": res.rows}
    path = results / "multidraw" / f"padnone_x{scale}_hr_{model}.json"
    path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {path}", file=sys.stderr, flush=True)
    return doc


def _pad_lines(results: Path, merged: dict[tuple[int, str], dict[str, Any]]) -> list[str]:
    lines = []
    for path in sorted((results / "multidraw").glob("padnone_x*_hr_*.json")):
        doc = json.loads(path.read_text())
        part = merged.get((int(doc["scale"]), "hr"))
        if part is None or doc["model"] not in part["models"]:
            continue
        for m in ("bicubic", doc["model"]):
            none = next(r for r in doc["rows"] if r["model"] == m and r["branch"] == "sr")
            auto = next(r for r in part["rows"] if r["model"] == m and r["branch"] == "sr" and int(r["draw"]) == 0)
            lines.append(f"x{doc['scale']} {m}, draw 0, HR statistic: pad none (a bare forward, the README's protocol) "
                         f"{none['psnr']:.2f} dB / {none['ssim']:.4f}; pad auto (the infer path, as above) "
                         f"{auto['psnr']:.2f} dB / {auto['ssim']:.4f}; auto − none {auto['psnr'] - none['psnr']:+.2f} dB / "
                         f"{auto['ssim'] - none['ssim']:+.4f}.")
    return lines + ([""] if lines else [])


def _part_path(results: Path, scale: int, norm: str, model: str) -> Path:
    return results / "multidraw" / f"x{scale}_{norm}_{model}.json"


def _parse_part(spec: str) -> tuple[int, str, str]:
    try:
        scale_text, norm, model = spec.split("/")
        scale = int(scale_text.removeprefix("x"))
    except ValueError:
        raise SystemExit(f"--parts: {spec!r} is not xS/NORM/MODEL (e.g. x2/lr/iconet-t1-x2)") from None
    if scale not in MODELS or model not in MODELS[scale] or norm not in NORM_TEXT:
        raise SystemExit(f"--parts: {spec!r}: scale 2 or 4, norm hr or lr, a model of {MODELS}")
    return scale, norm, model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/colin27_T1.nii.gz"))
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--parts", nargs="*", default=DEFAULT_PARTS, metavar="xS/NORM/MODEL",
                    help="what to score, in this order (default: " + " ".join(DEFAULT_PARTS) + ")")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--table-only", action="store_true", help="only reassemble the .md/.json from the parts on disk")
    ap.add_argument("--redo", action="store_true", help="score parts again even when their file exists")
    ap.add_argument("--pad-check", nargs="*", default=[], metavar="xS/MODEL",
                    help="also score draw 0 with HR's statistic and pad none (the README's single-draw protocol) "
                         "for these models, e.g. x2/iconet-t1-x2")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    (args.results / "multidraw").mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for scale, norm, model in map(_parse_part, args.parts):
            path = _part_path(args.results, scale, norm, model)
            if path.exists() and not args.redo:
                print(f"{path.name}: exists, kept (--redo to score again)", file=sys.stderr)
                continue
            part = score_part(args.data, scale, norm, model, args.draws)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(part, indent=1))
            tmp.replace(path)
            print(f"wrote {path}", file=sys.stderr, flush=True)
        for spec in args.pad_check:
            scale_text, model = spec.split("/")
            pad_check(args.data, int(scale_text.removeprefix("x")), model, args.results)
    parts = {}
    for path in sorted((args.results / "multidraw").glob("x*_*_*.json")):
        part = json.loads(path.read_text())
        parts[(int(part["scale"]), part["normalize_on"], part["model"])] = part
    if not parts:
        print("no parts scored yet", file=sys.stderr)
        return 1
    merged = merge(parts)
    md, doc = assemble(merged)
    pad = _pad_lines(args.results, merged)
    if pad:
        md = md.replace("\nA lead is claimed only where", "\nBorder padding of the infer path (`--pad auto`) against "
                        "a bare forward pass:\n\n" + "\n".join(pad) + "\nA lead is claimed only where", 1)
        doc["pad_check"] = pad[:-1]
    (args.results / f"{STEM}.md").write_text(md)
    (args.results / f"{STEM}.json").write_text(json.dumps(doc, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
