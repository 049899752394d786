r"""Design measurements of iconet.make_isotropic (issue 20), on S1 only (never Colin27).

Each run makes a crop of S1 (``--crop``, the head's extent) thick along ``--axis`` with
:func:`iconet.isotropic.thick_slices` (Gaussian profile, FWHM and spacing per variant), fits the
through-plane ICONet for a fixed number of steps (``fit_steps``: a step count, not a clock, so
runs on this shared machine compare), applies it to the planes with columns along either
in-plane axis, and scores on the 1-mm grid against the true crop:

    plane_A / plane_B   one orientation alone
    fused               their mean (what make_isotropic returns with fuse=True)
    cubic               cubic B-spline across the slices (scipy.ndimage order 3, borders repeated)

PSNR and SSIM inside the head mask come from benchmarks/through_plane.py (``head_mask``, ``score``:
the same metric as the benchmark table). CPU seconds (``time.process_time``) of the fit and of the
application are recorded, with ``torch.set_num_threads(--threads)``; wall seconds too (noisy here).

Variants (``--variants``; all by default):

    base           4 mm, FWHM 4, x4 on the thick slices as they are, half the patches where there is structure
    focus0         base with every patch drawn uniformly
    fwhm3          4 mm, FWHM 3 (a 1 mm gap)
    r5_input       5 mm: thick slices resampled onto 4 mm rows, x4 (ratio_mode resample_input)
    r5_output      5 mm: x8 on the thick slices, output resampled onto 1 mm (resample_output)
    r444_input     4.44 mm (0.9 mm pixels with 4 mm slices, as a ratio): resample_input
    r444_output    4.44 mm: resample_output
    fp32           base trained and applied in fp32 (the others: --precision, default bf16)
    steps_*        base with another step count (the fit-length curve)
    w24 / w40      base with another width
    b1_970, w24b1_1200   smaller models given base's CPU time at 600 steps (measured per-step cost)

Timing (``--timing``): a 256x256x40 thick scan (S1's 256x256 slices, 160 mm of it made 4 mm thick
along axis 2) made isotropic by the real command, ``iconet infer THICK OUT --isotropic`` with its
defaults (and with ``--precision auto``), in a child process with ``OMP_NUM_THREADS=--threads``:
wall seconds, CPU seconds (user + system, ``os.wait4``), peak resident memory (``ru_maxrss``
of the child), and the fit's steps and seconds from the command's own result line.

Run (appends to the JSON; a variant already there is skipped unless --force), then the table:

    python benchmarks/isotropic_design.py --variants base fwhm3 r5_input r5_output
    python benchmarks/isotropic_design.py --report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "isotropic_design.json"
REPORT = HERE / "results" / "isotropic_design.md"
S1 = HERE.parent.parent / "shared" / "data" / "pycortex_S1_T1.nii.gz"

BASE = {"spacing": 4.0, "fwhm": 4.0, "steps": 300, "ratio_mode": "resample_input", "focus": 0.5}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "fwhm3": {"fwhm": 3.0},
    "r5_input": {"spacing": 5.0, "fwhm": 5.0},
    "r5_output": {"spacing": 5.0, "fwhm": 5.0, "ratio_mode": "resample_output"},
    "r444_input": {"spacing": 4.44, "fwhm": 4.44},
    "r444_output": {"spacing": 4.44, "fwhm": 4.44, "ratio_mode": "resample_output"},
    "r2": {"spacing": 2.0, "fwhm": 2.0},
    "fp32": {"precision": "fp32"},
    "steps_100": {"steps": 100},
    "steps_600": {"steps": 600},
    "steps_1200": {"steps": 1200},
    "w24": {"width": 24},
    "w40": {"width": 40},
    "rec0": {"rec_weight": 0.0},
    "focus0": {"focus": 0.0},
    "b1_970": {"blocks_per_group": 1, "steps": 970},
    "w24b1_1200": {"width": 24, "blocks_per_group": 1, "steps": 1200},
    "lr2": {"lr": 2e-3, "focus": 0.0},
}


def truth_on(out_affine: np.ndarray, out_shape: tuple[int, ...], hr: np.ndarray, hr_affine: np.ndarray):
    """Index boxes where an output on ``out_affine`` and the HR volume share voxels (same grid)."""
    m = np.linalg.inv(hr_affine) @ out_affine
    if not np.allclose(m[:3, :3], np.eye(3), atol=1e-6) or not np.allclose(m[:3, 3], np.round(m[:3, 3]), atol=1e-4):
        raise RuntimeError(f"output grid is not the HR grid: {m}")
    off = np.round(m[:3, 3]).astype(int)
    o_sl, h_sl = [], []
    for a in range(3):
        lo = max(0, -off[a])
        hi = min(out_shape[a], hr.shape[a] - off[a])
        o_sl.append(slice(lo, hi))
        h_sl.append(slice(lo + off[a], hi + off[a]))
    return tuple(o_sl), tuple(h_sl)


def run(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    import torch

    from iconet.data.io import read_volume
    from iconet.data.through_plane import sample_axis, output_grid
    from iconet.engine.isotropic_fit import FitConfig, fit_through_plane
    from iconet.isotropic import _finish, apply_model, prepare, thick_slices

    sys.path.insert(0, str(HERE))
    from through_plane import head_mask, score  # the benchmark's metric

    torch.set_num_threads(opts.threads)
    v = {**BASE, "precision": opts.precision, **VARIANTS[name]}
    hr = read_volume(opts.volume)
    box = tuple(slice(a, b) for a, b in zip(opts.crop[0::2], opts.crop[1::2]))
    aff = hr.affine.copy()
    aff[:3, 3] = hr.world(np.array([s.start for s in box]))
    hr = hr.with_data(np.asarray(hr.data[box], dtype=np.float32), aff)
    thick = thick_slices(hr, opts.axis, v["spacing"], v["fwhm"])
    cfg = replace(FitConfig(), **{k: v[k] for k in FitConfig.__dataclass_fields__ if k in v})
    job = prepare(thick, axis=opts.axis, slice_thickness=v["fwhm"], target_spacing=1.0, device="cpu",
                  precision=v["precision"], fit_config=cfg, ratio_mode=v["ratio_mode"])
    cache = opts.cache / f"{name}_seed{opts.seed}_axis{opts.axis}.pt"
    if cache.exists():  # a fit kept from an earlier run of this variant (its times too)
        saved = torch.load(cache, weights_only=False)
        fit, fit_cpu, fit_wall = saved["fit"], saved["fit_cpu"], saved["fit_wall"]
    else:
        c0, w0 = time.process_time(), time.perf_counter()
        fit = fit_through_plane(job.pairs, cfg=job.cfg, minutes=0, steps=v["steps"], seed=opts.seed,
                                device=job.device, precision=job.precision, progress=False)
        fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - w0
        opts.cache.mkdir(parents=True, exist_ok=True)
        torch.save({"fit": fit, "fit_cpu": fit_cpu, "fit_wall": fit_wall}, cache)
    outs, apply_cpu = {}, {}
    for key in ("A", "B"):
        c0 = time.process_time()
        outs[key] = apply_model(fit.model, job.thick, job.plan, planes=key, device=job.device,
                                precision=job.precision, progress=False)
        apply_cpu[key] = time.process_time() - c0
    outs["AB"] = (outs["A"] + outs["B"]) / 2
    # cubic B-spline across the slices, on the same grid
    grids, affine = output_grid(thick, 1.0)
    g = grids[opts.axis]
    cubic = sample_axis(np.asarray(thick.data, dtype=np.float32), opts.axis, g.first, g.step, g.n)
    row: dict[str, Any] = {"variant": name, **v, "crop": opts.crop, "axis": opts.axis, "seed": opts.seed,
                           "threads": opts.threads, "scale": job.plan.scale, "input_spacing_mm": job.plan.input_spacing,
                           "fit_steps": fit.steps, "fit_cpu_s": round(fit_cpu, 1), "fit_wall_s": round(fit_wall, 1),
                           "apply_cpu_s": round(apply_cpu["A"] + apply_cpu["B"], 1),
                           "loss_first": fit.loss_first, "loss_last": fit.loss_last, "scores": {}}
    o_sl = h_sl = None
    mask = None
    for key, arr in (("plane_A", outs["A"]), ("plane_B", outs["B"]), ("fused", outs["AB"])):
        vol = _finish(thick, arr, job.plan, job.norm, {})
        o_sl, h_sl = truth_on(vol.affine, vol.shape, hr.data, hr.affine)
        truth = hr.data[h_sl]
        if mask is None:
            mask = head_mask(truth)
        row["scores"][key] = score(vol.data[o_sl].astype(np.float64), truth, mask)
        if key == "fused":
            row["psnr_by_phase"] = {"fused": _by_phase(vol.data[o_sl], truth, mask, opts.axis, o_sl, thick, g)}
    cub = thick.with_data(cubic, affine)
    o2, h2 = truth_on(cub.affine, cub.shape, hr.data, hr.affine)
    assert o2 == o_sl and h2 == h_sl
    row["scores"]["cubic"] = score(cub.data[o2].astype(np.float64), hr.data[h2], mask)
    row["psnr_by_phase"]["cubic"] = _by_phase(cub.data[o2], hr.data[h2], mask, opts.axis, o_sl, thick, g)
    return row


def _by_phase(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, axis: int, o_sl: tuple, thick: Any,
              g: Any) -> dict[str, float]:
    """PSNR in the mask per distance of an output plane from its nearest slice centre (in
    output voxels, rounded): 0 = on a slice centre."""
    import math

    j = np.arange(o_sl[axis].start, o_sl[axis].stop)
    t = g.first + j * g.step  # thick coordinate of each output plane
    dist = np.rint(np.abs(t - np.rint(t)) / g.step).astype(int)
    dr = float(truth.max())
    out = {}
    for k in np.unique(dist):
        sel = np.zeros(truth.shape, dtype=bool)
        idx = [slice(None)] * 3
        idx[axis] = dist == k
        sel[tuple(idx)] = True
        m = sel & mask
        mse = float(((pred.astype(np.float64) - truth)[m] ** 2).mean())
        out[str(int(k))] = round(10 * math.log10(dr**2 / mse), 3)
    return out


def timing(opts: argparse.Namespace, precision: str | None) -> dict[str, Any]:
    """The 256x256x40 command (see the module docstring)."""
    import os
    import re
    import subprocess
    import tempfile

    import nibabel as nib

    from iconet.data.io import read_volume, write_volume
    from iconet.isotropic import thick_slices

    hr = read_volume(opts.volume)
    box = (slice(0, 256), slice(0, 256), slice(48, 208))
    aff = hr.affine.copy()
    aff[:3, 3] = hr.world(np.array([0.0, 0.0, 48.0]))
    thick = thick_slices(hr.with_data(np.asarray(hr.data[box], dtype=np.float32), aff), 2, 4.0)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "thick.nii.gz", Path(tmp) / "iso.nii.gz"
        write_volume(thick.with_data(np.rint(thick.data).astype(np.uint8)), src)
        shape = nib.load(src).shape
        cmd = [str(Path(sys.executable).parent / "iconet"), "infer", str(src), str(dst), "--isotropic", "--quiet"]
        if precision:
            cmd += ["--precision", precision]
        env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads)}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out, err = proc.stdout.read(), proc.stderr.read()
        if status != 0:
            raise RuntimeError(f"iconet infer failed: {err}")
        m = re.search(r"fit (\d+) steps in (\d+) s", out)
        return {"variant": f"timing_{precision or 'default'}", "input_shape": list(shape),
                "command": " ".join(["iconet", *cmd[1:]]).replace(str(tmp) + "/", ""), "threads": opts.threads,
                "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "fit_steps": int(m.group(1)) if m else None,
                "fit_wall_s": int(m.group(2)) if m else None, "output_line": out.strip(), "seed": 0, "axis": 2}


def report(results: list[dict[str, Any]]) -> str:
    lines = ["# make_isotropic design measurements (S1 crop; generated by benchmarks/isotropic_design.py)", "",
             "PSNR (dB) / SSIM inside the head mask on the 1-mm grid; cubic = cubic B-spline across the slices. "
             "CPU seconds with the stated thread count (time.process_time). Fixed step counts.", "",
             "| variant | slices mm / FWHM | scale, input mm | mode | prec | steps | fit CPU s | apply CPU s | cubic | plane A | plane B | fused | fused − cubic |",
             "|---|---|---|---|---|---:|---:|---:|---|---|---|---|---:|"]
    for r in (r for r in results if "scores" in r):
        s = r["scores"]
        f = lambda k: f"{s[k]['psnr']:.2f} / {s[k]['ssim']:.4f}"  # noqa: E731
        name = r["variant"] if r.get("seed", 0) == 0 else f"{r['variant']} (seed {r['seed']})"
        lines.append(f"| {name} | {r['spacing']:g} / {r['fwhm']:g} | x{r['scale']}, {r['input_spacing_mm']:g} | "
                     f"{r['ratio_mode']} | {r['precision']} | {r['fit_steps']} | {r['fit_cpu_s']:.0f} | {r['apply_cpu_s']:.0f} | "
                     f"{f('cubic')} | {f('plane_A')} | {f('plane_B')} | {f('fused')} | "
                     f"{s['fused']['psnr'] - s['cubic']['psnr']:+.2f} |")
    timed = [r for r in results if r["variant"].startswith("timing")]
    if timed:
        lines += ["", "A 256x256x40 thick scan (4 mm slices, 1 mm pixels) made isotropic by the command, fit included:", "",
                  "| command | threads | wall s | CPU s | fit steps (fit wall s) | peak RSS MiB |", "|---|---:|---:|---:|---|---:|"]
        for r in timed:
            lines.append(f"| `{r['command']}` | {r['threads']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                         f"{r['fit_steps']} ({r['fit_wall_s']}) | {r['peak_rss_mib']:.0f} |")
    hw = results[0].get("machine", "") if results else ""
    lines += ["", f"Hardware: {hw}. Seed 0 unless the variant names another; one seed per row (the seed rows "
              "are the spread). The CPU seconds of rows measured after the dense form of the depth-wise convs "
              "(benchmarks/depthwise_train.py) are lower per step: compare CPU seconds within a seed's rows."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--volume", type=Path, default=S1)
    ap.add_argument("--crop", type=int, nargs=6, default=[40, 216, 24, 232, 16, 240],
                    help="i0 i1 j0 j1 k0 k1 of S1 (the head's extent)")
    ap.add_argument("--axis", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rewrite the .md table from the JSON")
    ap.add_argument("--timing", nargs="*", default=None, metavar="PRECISION",
                    help="time the 256x256x40 command (with each --precision given; none: the default)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/iconet_isotropic_design"),
                    help="fitted models are kept here, so a rerun only re-scores")
    opts = ap.parse_args()
    if "colin" in str(opts.volume).lower():
        raise SystemExit("Colin27 is held out: design measurements run on S1 only")
    results = json.loads(opts.results.read_text()) if opts.results.exists() else []
    if opts.timing is not None:
        from iconet.runtime import machine_name

        for prec in opts.timing or [None]:
            row = timing(opts, prec)
            row["machine"] = machine_name("cpu")
            results = [r for r in results if r["variant"] != row["variant"]] + [row]
            opts.results.write_text(json.dumps(results, indent=1) + "\n")
            print(row, flush=True)
    elif not opts.report:
        from iconet.runtime import machine_name

        for name in opts.variants:
            key = (name, opts.seed, opts.axis)
            if not opts.force and any((r["variant"], r["seed"], r["axis"]) == key for r in results):
                print(f"skip {name} (in {opts.results.name})")
                continue
            row = run(name, opts)
            row["machine"] = machine_name("cpu")
            results = [r for r in results if (r["variant"], r["seed"], r["axis"]) != key] + [row]
            opts.results.parent.mkdir(parents=True, exist_ok=True)
            opts.results.write_text(json.dumps(results, indent=1) + "\n")
            s = row["scores"]
            print(f"{name}: cubic {s['cubic']['psnr']:.2f}  A {s['plane_A']['psnr']:.2f}  B {s['plane_B']['psnr']:.2f}  "
                  f"fused {s['fused']['psnr']:.2f}  fit {row['fit_cpu_s']:.0f} CPU s", flush=True)
    REPORT.write_text(report(results))


if __name__ == "__main__":
    main()
