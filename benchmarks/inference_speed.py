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

``--onnx`` adds ONNX Runtime rows (fp32, CPU provider, the same thread count): each model's SR
path exported once with :func:`iconet.onnx_export.build_graph` (checked against PyTorch, cached
in ``--onnx-dir`` by config hash) and timed the same way (warm-up, median of the timed runs) in
its own process; 'vs eager' compares them with the same model in PyTorch eager fp32.

``--conv-reference`` measures, in the same run, the FLOP rate of a plain dense 3x3-conv stack
(:data:`REFERENCE_LAYERS` convs of :data:`REFERENCE_WIDTH`→:data:`REFERENCE_WIDTH` channels at the
LR side of each row, the same batch, channels_last, fp32 and bf16) and gives every model row
'% of conv rate': the model's counted FLOPs (``torch.utils.flop_counter``: convolutions and
matmuls, as ``iconet model`` counts them; FFTs and element-wise work not counted) per second,
as a percentage of that reference's rate at the same LR side and precision (ONNX rows: the
PyTorch fp32 reference). Spread: the fastest and slowest timed pass beside the median.
Timings on a shared CPU are noisy: compare rows of one run only.

    python benchmarks/inference_speed.py                         # CPU table (a few minutes)
    python benchmarks/inference_speed.py --device cuda --threads 16 --batch 16 --compile
    python benchmarks/inference_speed.py --models edsr iconet-t1-x2 iconet-t1-x2-fast iconet-t1-x4 \
        --onnx --conv-reference --json benchmarks/results/inference_speed_onnx_cpu.json \
        --md benchmarks/results/inference_speed_onnx_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from _runner import Limits, Point, add_limit_args, limits_from, machine, measure

MODELS = ("iconet", "edsr", "t2net")
#: the dense reference: REFERENCE_LAYERS 3x3 convolutions, REFERENCE_WIDTH channels in and out
REFERENCE_WIDTH = 64
REFERENCE_LAYERS = 4
REFERENCE = f"conv3x3 {REFERENCE_WIDTH}->{REFERENCE_WIDTH} x{REFERENCE_LAYERS}"


def model_scale(model: str) -> int | None:
    """The scale of a shipped name or exported model folder; ``None`` for a registry name."""
    from iconet.models import model_names

    if model in model_names() or model == "conv3x3":
        return None
    from iconet.hub import load_model

    return load_model(model)[0].scale


# --------------------------------------------------------------------------- ONNX and reference


def onnx_graph(model: str, scale: int, folder: Path, spectral: str = "matmul") -> Path | None:
    """``model.onnx`` of ``model`` (a registry name at ``scale``, a shipped name or an exported
    folder), exported once and cached in ``folder`` under its config hash; ``spectral``: the
    export form of the Fourier branch (``None`` for a form other than the default of a model
    without that branch: the same graph)."""
    from iconet.models import build_model, model_names
    from iconet.onnx_export import build_graph, check_graph, config_hash, model_config_dict

    if model in model_names():
        net = build_model(model, scale=scale).eval()
    else:
        from iconet.hub import load_model

        net = load_model(model)[0]
    from iconet.models.rscfl import SpectralMixing

    if spectral != "matmul" and not any(isinstance(m, SpectralMixing) for m in net.modules()):
        return None
    key = config_hash(model_config_dict(net))[:12]
    path = folder / f"{Path(model).name}-x{net.scale}-{key}-{spectral}.onnx"
    if path.is_file():  # the same config; registry models' weights are random anyway
        return path
    t = time.perf_counter()
    proto = build_graph(net, spectral=spectral)
    diff = check_graph(proto, net)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    print(f"  exported {model} x{net.scale} ({spectral}) to ONNX in {time.perf_counter() - t:.0f} s "
          f"(max |ORT - PyTorch| {diff:.1e} on the probe)", file=sys.stderr, flush=True)
    return path


def _timed(run, lim: Limits) -> list[float]:  # noqa: ANN001
    """A warm-up pass, then up to ``lim.repeats`` timed passes within ``lim.budget`` seconds."""
    run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < lim.repeats and (time.perf_counter() - start < lim.budget or not times):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return sorted(times)


def _child(kind: str, p: Point, lim: Limits, onnx_path: str) -> dict:
    """Time one ONNX Runtime point (``kind="onnx"``) or one dense reference point (``"reference"``)."""
    import numpy as np
    import torch

    torch.set_num_threads(lim.threads)
    torch.manual_seed(0)
    if lim.allocator == "keep":
        from iconet.runtime import keep_freed_memory

        keep_freed_memory()
    flops = 0
    if kind in ("onnx", "onnx-noarena"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = lim.threads
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = kind == "onnx"  # as iconet.onnx_runtime.OnnxSRModel's `arena`
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((p.batch, 1, p.size, p.size), dtype=np.float32)
        base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = _timed(lambda: session.run(None, {"lr": x}), lim)
    else:
        convs = [torch.nn.Conv2d(REFERENCE_WIDTH, REFERENCE_WIDTH, 3, padding=1) for _ in range(REFERENCE_LAYERS)]
        model = torch.nn.Sequential(*convs).eval().to(memory_format=torch.channels_last)
        x = torch.rand(p.batch, REFERENCE_WIDTH, p.size, p.size).contiguous(memory_format=torch.channels_last)
        flops = 2 * REFERENCE_WIDTH * REFERENCE_WIDTH * 9 * p.size * p.size * p.batch * REFERENCE_LAYERS
        amp = {"bf16": torch.bfloat16}.get(p.precision)
        base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            times = _timed(lambda: model(x), lim)
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib) / 1024
    return {**asdict(p), "flops": flops, "seconds": times[len(times) // 2], "min_seconds": times[0],
            "max_seconds": times[-1], "runs": len(times), "peak_mib": peak_mib, "compile_s": 0.0}


def measure_other(kind: str, p: Point, lim: Limits, onnx_path: str = "") -> dict:
    """Run :func:`_child` in a fresh process (as ``_runner.measure`` does); a row with
    ``seconds`` or with ``stopped`` (why)."""
    cmd = [sys.executable, __file__, "--child-other", kind, json.dumps(asdict(p)), json.dumps(asdict(lim)), onnx_path]
    env = {**os.environ, "OMP_NUM_THREADS": str(lim.threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2 * lim.max_seconds + 60)
    except subprocess.TimeoutExpired:
        return {**asdict(p), "stopped": f"> {lim.max_seconds:.0f} s"}
    if proc.returncode != 0:
        return {**asdict(p), "stopped": "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if row["seconds"] > lim.max_seconds:
        row["stopped"] = f"> {lim.max_seconds:.0f} s"
    return row


# --------------------------------------------------------------------------- table


def _same(a: dict, b: dict, *keys: str) -> bool:
    return all(a.get(k) == b.get(k) for k in keys)


def table(rows: list[dict], opts: argparse.Namespace, caption: str) -> list[str]:
    """The markdown table of ``rows``."""
    timed = [r for r in rows if "seconds" in r]
    with_ref = opts.conv_reference
    lines = [caption, ""]
    cols = "| HR slice | scale | precision | runtime | model | params | slices/s | ms/slice (min–max) | peak mem (MiB) | vs EDSR |"
    cols += " vs eager |" + (" GFLOP/s | % of conv rate |" if with_ref else "")
    lines.append(cols)
    lines.append("|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if with_ref else ""))
    for r in rows:
        runtime = r["runtime"]
        params = r.get("params") or next((o["params"] for o in rows if o["model"] == r["model"]
                                          and o["scale"] == r["scale"] and o.get("params")), None)
        if runtime == "torch.compile":
            runtime += f" ({r.get('compile_s', 0):.0f} s)"
        head = (f"| {r['hr']}² | x{r['scale']} | {r['precision']} | {runtime} | {r['model']} | "
                + ("–" if not params else f"{params:,}") + " |")
        if "seconds" not in r:
            lines.append(f"{head} stopped ({r['stopped']}) | | | | |" + (" | |" if with_ref else ""))
            continue
        edsr = next((e for e in timed if e["model"] == "edsr" and _same(e, r, "hr", "scale", "precision")
                     and e["runtime"] == r["runtime"].replace(" (DFT op)", "")), None)  # same arena setting
        eager = next((e for e in timed if e["model"] == r["model"] and e["runtime"] == "torch"
                      and _same(e, r, "hr", "scale") and e["precision"] == "fp32"), None)
        ms = 1000 * r["seconds"] / r["batch"]
        spread = f"{1000 * r['min_seconds'] / r['batch']:.0f}–{1000 * r['max_seconds'] / r['batch']:.0f}"
        ratio = f"{edsr['seconds'] / r['seconds']:.2f}×" if edsr and r["model"] != REFERENCE else "–"
        vs_eager = f"{eager['seconds'] / r['seconds']:.2f}×" if eager and runtime != "torch" else "–"
        line = (f"{head} {r['batch'] / r['seconds']:.2f} | {ms:.0f} ({spread}) | {r['peak_mib']:.0f} | "
                f"{ratio} | {vs_eager} |")
        if with_ref:
            flops = r.get("flops") or next((o["flops"] for o in timed if o["model"] == r["model"]
                                            and _same(o, r, "hr", "scale") and o.get("flops")), 0)
            ref_precision = "fp32" if r["runtime"].startswith("onnxruntime") else r["precision"]
            ref = next((e for e in timed if e["model"] == REFERENCE and _same(e, r, "hr", "scale")
                        and e["precision"] == ref_precision), None)
            rate = flops / r["seconds"] if flops else None
            pct = f"{100 * rate / (ref['flops'] / ref['seconds']):.0f} %" if rate and ref else "–"
            line += f" {rate / 1e9:.1f} | {pct} |" if rate else " – | – |"
        lines.append(line)
    lines += ["", "'vs EDSR' = EDSR-baseline's time / this model's time in the same runtime and precision "
              "(above 1: faster than EDSR); 'vs eager' = the same model's PyTorch eager fp32 time / this row's."]
    if with_ref:
        lines.append(f"'% of conv rate' = the model's counted FLOPs per second / the FLOP rate of {REFERENCE} "
                     "(PyTorch, channels_last) at the same LR side and precision in this run (ONNX rows: fp32). "
                     "Counted FLOPs are convolutions and matmuls of the PyTorch model; the ONNX graph's "
                     "matmul DFT of the Fourier branch is not counted.")
    lines.append("Timings on a CPU shared with other work are noisy: only ratios between rows of this one run count. "
                 "A spread of one value: a single timed pass filled the time budget (--budget).")
    return lines


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
    ap.add_argument("--onnx", action="store_true", help="also time each model with ONNX Runtime (fp32, CPU)")
    ap.add_argument("--onnx-forms", nargs="+", choices=("matmul", "dft"), default=["matmul"],
                    help="export forms of the Fourier branch to time (iconet.onnx_export.SPECTRAL_FORMS); "
                         "rows of the 'dft' form are labelled 'onnxruntime (DFT op)'")
    ap.add_argument("--onnx-arena", nargs="+", choices=("on", "off"), default=["on"],
                    help="ONNX Runtime's CPU memory arena (SessionOptions.enable_cpu_mem_arena) on and/or "
                         "off; rows with it off are labelled '(no arena)'")
    ap.add_argument("--onnx-dir", type=Path, default=Path(tempfile.gettempdir()) / "iconet-onnx-bench",
                    help="where the exported graphs are cached (by config hash)")
    ap.add_argument("--conv-reference", action="store_true",
                    help=f"time {REFERENCE} in the same run and report each model's '%% of conv rate'")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path, help="also write the table to this file")
    add_limit_args(ap)
    opts = ap.parse_args()
    precisions = opts.precisions or (["fp32", "bf16"] if opts.device == "cpu" else ["fp32", "bf16", "fp16"])
    lim = limits_from(opts, flops=opts.conv_reference)

    import torch

    graphs: dict[tuple[str, int], list[tuple[str, Path]]] = {}
    if opts.onnx:  # exported before any timing, so the exports do not load the timed points
        for model in opts.models:
            for scale in opts.scales:
                if model_scale(model) in (None, scale):
                    found = [(form, onnx_graph(model, scale, opts.onnx_dir, form)) for form in opts.onnx_forms]
                    graphs[(model, scale)] = [(form, path) for form, path in found if path is not None]

    rows = []

    def add(row: dict, hr: int, runtime: str) -> None:
        row = {**row, "hr": hr, "runtime": runtime}
        rows.append(row)
        shown = f"{row['seconds']:.3f} s" if "seconds" in row else row["stopped"]
        print(f"  {row['model']:18s} HR {hr}² x{row['scale']} {row['precision']} {runtime}: {shown}",
              file=sys.stderr, flush=True)

    for hr in opts.hr_sizes:
        for scale in opts.scales:
            for precision in precisions:
                if opts.conv_reference:
                    p = Point(REFERENCE, hr // scale, scale, opts.batch, precision, opts.device)
                    add(measure_other("reference", p, lim), hr, "torch")
                for model in opts.models:
                    if model_scale(model) not in (None, scale):
                        continue  # a shipped/exported model is timed at its own scale only
                    for compiled in (False, True) if opts.compile else (False,):
                        p = Point(model, hr // scale, scale, opts.batch, precision, opts.device, compiled)
                        add(measure(p, lim), hr, "torch.compile" if compiled else "torch")
                    for form, path in graphs.get((model, scale), []) if precision == "fp32" else []:
                        for arena in opts.onnx_arena:
                            p = Point(model, hr // scale, scale, opts.batch, "fp32", opts.device)
                            label = ("onnxruntime" + (" (DFT op)" if form == "dft" else "")
                                     + (" (no arena)" if arena == "off" else ""))
                            kind = "onnx" if arena == "on" else "onnx-noarena"
                            add(measure_other(kind, p, lim, str(path)), hr, label)

    caption = (f"### Inference speed, batch {opts.batch}, device {opts.device}, {opts.threads} CPU threads, "
               f"channels_last, allocator {opts.allocator}, torch {torch.__version__}"
               + (f", onnxruntime {_ort_version()}" if opts.onnx else "") + f", {machine(opts.device)}")
    lines = table(rows, opts, caption)
    print("\n" + "\n".join(lines))
    if opts.md:
        opts.md.write_text("\n".join(lines) + "\n")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child-other":
        print(json.dumps(_child(sys.argv[2], Point(**json.loads(sys.argv[3])), Limits(**json.loads(sys.argv[4])),
                                sys.argv[5])))
    else:
        main()
