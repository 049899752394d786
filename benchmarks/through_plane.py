r"""Through-plane benchmark (issue 20): thick-slice volumes made isotropic again, scored against the truth.

Protocol. Each 1-mm isotropic volume is made thick along one axis at a time with the forward
model of :func:`iconet.isotropic.thick_slices` (a Gaussian slice profile of the given FWHM,
sampled at the slice spacing; the thick volume's affine puts every sample on its true slice
centre). Every method then brings the thick volume back to 1 mm and the result is scored against
the true 1-mm volume on its grid:

    cubic      cubic B-spline (scipy.ndimage, order 3, mirror boundary) along the thick axis,
               evaluated at the 1-mm voxels' exact positions in the thick volume's index space
    sinc       windowed sinc (Lanczos-3, weights normalised to sum 1, mirror boundary), same positions
    inplane    the shipped in-plane ICONet (iconet-t1-x2 for 2 mm, iconet-t1-x4 from 4 mm up) run
               on both planes that contain the thick axis, each resampled onto the 1-mm grid
               (cubic B-spline, by the affines) and averaged; no fitting
    iconet     iconet.make_isotropic: an ICONet fitted to the thick scan itself (--fit-minutes)
    eclare@Kx  ECLARE (Remedios et al. 2025; GPL-3, ``pip install eclare``) in its own virtual
               environment (--eclare-venv), as a separate process: never imported by iconet. Its
               number of training patches is set so that its training gets K times the CPU time
               of iconet's fit on the same cell (measured: see "ECLARE's budget" below)

Scoring: the head mask comes from the true 1-mm volume (:func:`head_mask`: the background/tissue
threshold of a 3-class Otsu, largest component, closed, holes filled; 26 % of S1's voxels, 55 % of
Colin27's). PSNR = 10 log10(max(HR)^2 / MSE over the mask); SSIM = mean over the mask of
scikit-image's 3-D SSIM map (7x7x7 uniform window, K1 0.01, K2 0.03, data_range = max(HR);
border strip of 3 voxels left out, as in iconet.evaluation.metrics' 3-D mode). float64. A
method's output that is not on the 1-mm grid is resampled onto it by its affine (cubic
B-spline); the row records how far off its grid was (``grid_offset_vox``; 0 = same grid).

Cost, per method and cell, measured on the method's own process: CPU seconds (user + system
from ``os.wait4``, including the processes it started and waited for, e.g. ECLARE's data-loader
workers), wall seconds, and peak resident memory of the method's main process (``VmHWM`` of
``/proc/self/status`` read at its end, MiB; not ``ru_maxrss``, which on Linux keeps the high-water
mark of the forking parent across ``exec``). Python start-up and imports are included. Every method runs
with ``--threads`` (default 2) torch/OpenMP threads. Wall time on a shared machine is noisy; CPU
time is the fairer figure. For iconet and ECLARE the fit alone is also timed inside the process.

ECLARE's budget: a calibration run per cell trains ECLARE on a few patches and stops before its
inference, giving its training CPU seconds per patch; ``eclare@Kx`` then gets
``K * (iconet fit CPU s) / (CPU s per patch)`` patches (rounded to whole batches of 128). Its
actual training CPU time is recorded beside iconet's, so the achieved ratio is in the table.

Data (a user has no ../shared; both are public, re-fetch them with):

    pip download --no-deps -d s1 pycortex==1.4.0
    tar xzf s1/pycortex-1.4.0.tar.gz -C s1 pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz
    apt-get download mricron-data && dpkg-deb -x mricron-data_*.deb mricron   # .../templates/ch2.nii.gz

S1 may be used to choose defaults; Colin27 is for scoring only.

ECLARE (optional; skipped with a note when --eclare-venv is absent):

    python -m venv /work/venvs/eclare && /work/venvs/eclare/bin/pip install torch==2.13.0
    /work/venvs/eclare/bin/pip install eclare      # pins scipy 1.11.4: keep it out of iconet's venv

Run (every option selects part of the grid; results are merged into the JSON, a cell already
there is skipped unless --force):

    python benchmarks/through_plane.py --volumes ../shared/data/pycortex_S1_T1.nii.gz \
        ../shared/data/colin27_T1.nii.gz --methods cubic sinc
    python benchmarks/through_plane.py --volumes ../shared/data/colin27_T1.nii.gz --axes 2 \
        --settings 4mm 2mm --methods cubic iconet eclare@1x eclare@5x --eclare-venv /work/venvs/eclare
    python benchmarks/through_plane.py --table-only     # regenerate the .md from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "through_plane.json"


@dataclass(frozen=True)
class Setting:
    """A thick-slice acquisition: slice spacing and slice-profile FWHM (mm)."""

    name: str
    spacing_mm: float
    fwhm_mm: float


SETTINGS = {s.name: s for s in (
    Setting("2mm", 2.0, 2.0),
    Setting("4mm", 4.0, 4.0),
    Setting("5mm", 5.0, 5.0),
    Setting("4mm-gap", 4.0, 3.0),  # 3-mm slices 4 mm apart: a 1-mm gap
    Setting("6.4mm", 6.4, 6.4),  # S1 (256 mm) at 6.4 mm = 40 slices: the 256x256x40 timing case
)}
DEFAULT_SETTINGS = ("2mm", "4mm", "5mm", "4mm-gap")
CHEAP = ("cubic", "sinc")
METHODS = (*CHEAP, "inplane", "iconet", "eclare@1x", "eclare@5x")
ECLARE_BATCH = 128  # run-eclare's default batch size (patches per step)
ECLARE_CALIBRATION_PATCHES = 8 * ECLARE_BATCH


# ----------------------------------------------------------------------------- 1-D resampling
def bspline_matrix(n_src: int, positions: np.ndarray) -> np.ndarray:
    """``(len(positions), n_src)`` weights of cubic B-spline interpolation (scipy.ndimage, order 3,
    mirror boundary) at ``positions`` in source index units: row ``i`` applied to samples ``f``
    gives ``map_coordinates(f, [[positions[i]]], order=3, mode="mirror")``.

    Built by interpolating each unit vector, so it is scipy's interpolator itself (prefilter
    included), applied as a matrix along one axis of a volume.
    """
    from scipy import ndimage

    eye = np.eye(n_src)
    return np.stack([ndimage.map_coordinates(eye[k], positions[None], order=3, mode="mirror")
                     for k in range(n_src)], axis=1)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Reflect indices about the first and last sample (scipy's ``mirror``: -1 -> 1, n -> n-2)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def lanczos_matrix(n_src: int, positions: np.ndarray, a: int = 3) -> np.ndarray:
    """``(len(positions), n_src)`` weights of Lanczos-``a`` interpolation at ``positions``
    (source index units): taps ``floor(t) - a + 1 .. floor(t) + a``, weight
    ``sinc(x) sinc(x / a)``, normalised to sum 1, indices mirrored at the ends."""
    w = np.zeros((len(positions), n_src))
    for i, t in enumerate(positions):
        taps = np.arange(math.floor(t) - a + 1, math.floor(t) + a + 1)
        k = np.sinc(t - taps) * np.sinc((t - taps) / a)
        k /= k.sum()
        np.add.at(w[i], _mirror(taps, n_src), k)
    return w


def apply_along(data: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Apply a ``(n_out, n_in)`` matrix along ``axis`` of ``data`` (float64 accumulation)."""
    out = np.tensordot(weights, np.asarray(data, dtype=np.float64), axes=([1], [axis]))
    return np.moveaxis(out, 0, axis)


def grid_mapping(src_affine: np.ndarray, dst_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)`` with ``src index = scale * dst index + offset`` per axis.

    The two grids must be axis-aligned with each other (same axis order and directions up to
    a per-axis scale); anything else is refused rather than resampled wrongly.
    """
    m = np.linalg.inv(src_affine) @ dst_affine
    lin = m[:3, :3]
    if np.abs(lin - np.diag(np.diag(lin))).max() > 1e-6 * np.abs(lin).max():
        raise ValueError(f"grids are not axis-aligned (index map {np.round(lin, 4).tolist()})")
    return np.diag(lin).copy(), m[:3, 3].copy()


def resample_to(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
                dst_shape: tuple[int, ...], kind: str = "cubic") -> tuple[np.ndarray, float]:
    """``data`` (on ``src_affine``) resampled onto the grid ``dst_affine, dst_shape``, separably.

    Returns ``(array, offset)``: ``offset`` is the largest distance (in source voxels) of a
    destination voxel from the nearest source voxel centre; 0 means the grids coincide (then
    the result is a plain copy, since B-spline interpolation at the nodes is exact).
    """
    scale, shift = grid_mapping(src_affine, dst_affine)
    out = np.asarray(data, dtype=np.float64)
    worst = 0.0
    for ax in range(3):
        pos = scale[ax] * np.arange(dst_shape[ax]) + shift[ax]
        worst = max(worst, float(np.abs(pos - np.round(pos)).max()))
        if np.allclose(pos, np.round(pos), atol=1e-6) and pos.min() > -0.5 and pos.max() < out.shape[ax] - 0.5:
            out = np.take(out, np.round(pos).astype(int), axis=ax)
            continue
        mat = bspline_matrix(out.shape[ax], pos) if kind == "cubic" else lanczos_matrix(out.shape[ax], pos)
        out = apply_along(out, mat, ax)
    return out, worst


# ----------------------------------------------------------------------------- forward model
def thick(volume: Any, axis: int, setting: Setting) -> Any:
    """The thick-slice volume of ``setting`` along ``axis`` (the library's forward model)."""
    from iconet.isotropic import thick_slices

    return thick_slices(volume, axis, setting.spacing_mm, setting.fwhm_mm)


def reference_thick(hr: np.ndarray, hr_affine: np.ndarray, thick_affine: np.ndarray, axis: int,
                    n_thick: int, fwhm_mm: float) -> np.ndarray:
    """An independent computation of the forward model, to check the library's against.

    Slice ``k`` = sum over 1-mm voxels (the border voxels repeated outwards) of a Gaussian of
    FWHM ``fwhm_mm`` centred where ``thick_affine`` puts slice ``k`` (world distance along the
    axis, evaluated directly: no interpolation), normalised to sum 1.
    """
    scale, shift = grid_mapping(hr_affine, thick_affine)
    centres = scale[axis] * np.arange(n_thick) + shift[axis]  # HR index of each slice centre
    d = float(np.linalg.norm(hr_affine[:3, axis]))
    sigma = fwhm_mm / (2 * math.sqrt(2 * math.log(2)))
    n = hr.shape[axis]
    reach = int(math.ceil(6 * sigma / d)) + 1
    taps = np.arange(-reach, n + reach)
    w = np.exp(-0.5 * (((taps[None, :] - centres[:, None]) * d) / sigma) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    folded = np.zeros((n_thick, n))
    for j, t in enumerate(np.clip(taps, 0, n - 1)):
        folded[:, t] += w[:, j]
    return apply_along(hr, folded, axis)


# ----------------------------------------------------------------------------- scoring
def head_mask(hr: np.ndarray) -> np.ndarray:
    """The head: voxels above the lower of the two 3-class Otsu thresholds (background | dark
    tissue | bright tissue; a 2-class Otsu of a T1 head falls between CSF and tissue instead),
    connected components of at least a tenth of the largest (the scalp can be apart from the
    brain in a thin slab), closed (3 iterations, 6-connectivity, the array padded so that its
    faces do not erode), holes filled in 3-D and then in 2-D along each axis (sinuses and
    ventricles open to the outside through some slice)."""
    from scipy import ndimage
    from skimage.filters import threshold_multiotsu

    m = hr > threshold_multiotsu(hr, classes=3)[0]
    lab, n = ndimage.label(m)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        m = np.isin(lab, np.flatnonzero(sizes >= 0.1 * sizes.max()))
    pad = 3
    m = ndimage.binary_closing(np.pad(m, pad, mode="edge"), structure=ndimage.generate_binary_structure(3, 1),
                               iterations=pad)[pad:-pad, pad:-pad, pad:-pad]
    m = ndimage.binary_fill_holes(m)
    for ax in range(3):
        m = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(m, ax, 0)], axis=ax)
    return m


def score(pred: np.ndarray, hr: np.ndarray, mask: np.ndarray, win: int = 7) -> dict[str, float]:
    """PSNR and SSIM inside ``mask`` (see the module docstring)."""
    from skimage.metrics import structural_similarity

    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(hr, dtype=np.float64)
    dr = float(r.max())
    mse = float(((p - r)[mask] ** 2).mean())
    # SSIM on the mask's bounding box plus the window's half width: the same map values there
    half = (win - 1) // 2
    idx = np.nonzero(mask)
    box = tuple(slice(max(int(i.min()) - half, 0), min(int(i.max()) + half + 1, n)) for i, n in zip(idx, r.shape))
    _, smap = structural_similarity(r[box], p[box], data_range=dr, win_size=win, gaussian_weights=False, full=True)
    inner = np.zeros(smap.shape, dtype=bool)
    inner[tuple(slice(half, n - half) for n in smap.shape)] = True
    # voxels in the full volume's border strip are left out as the metrics module does
    full_inner = np.zeros(r.shape, dtype=bool)
    full_inner[tuple(slice(half, n - half) for n in r.shape)] = True
    m = mask[box] & full_inner[box]
    return {"psnr": 10 * math.log10(dr**2 / mse), "ssim": float(smap[m].mean()), "mask_voxels": int(mask.sum())}


# ----------------------------------------------------------------------------- the methods (child side)
def run_interpolation(vol: Any, ref: Any, axis: int, kind: str) -> Any:
    """Cubic B-spline or Lanczos-3 along the thick axis onto the reference grid."""
    data, _ = resample_to(vol.data, vol.affine, ref.affine, ref.shape, kind=kind)
    return vol.with_data(data.astype(np.float32), ref.affine)


def run_inplane(vol: Any, ref: Any, axis: int, precision: str) -> Any:
    """The shipped in-plane ICONet on both planes that contain the thick axis, averaged."""
    import iconet

    ratio = vol.spacing[axis] / ref.spacing[axis]
    scale = 4 if ratio >= 4 else 2
    acc = np.zeros(ref.shape)
    planes = [p for p in range(3) if p != axis]
    for plane in planes:  # slicing along `plane` gives slices that hold the thick axis
        sr = iconet.super_resolve(vol, scale=scale, device="cpu", plane=plane, precision=precision)
        data, _ = resample_to(sr.data.astype(np.float32), sr.affine, ref.affine, ref.shape, kind="cubic")
        acc += data
    return vol.with_data((acc / len(planes)).astype(np.float32), ref.affine)


def run_iconet(vol: Any, ref: Any, axis: int, setting: Setting, fit_minutes: float | None,
               fit_steps: int | None, precision: str, info: dict[str, Any]) -> Any:
    """iconet.make_isotropic; the fit's own CPU time is read around the library's fit call."""
    import resource

    import iconet.isotropic as iso

    fit = iso.fit_through_plane

    def timed_fit(*args: Any, **kw: Any) -> Any:  # timing only: same call, same result
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = fit(*args, **kw)
        after = resource.getrusage(resource.RUSAGE_SELF)
        info["fit_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return result

    iso.fit_through_plane = timed_fit
    kw: dict[str, Any] = {}
    if fit_minutes is not None:
        kw["fit_minutes"] = fit_minutes
    if fit_steps is not None:
        kw["fit_steps"] = fit_steps
    out = iso.make_isotropic(vol, axis=axis, slice_thickness=setting.fwhm_mm,
                             target_spacing=ref.spacing[(axis + 1) % 3], seed=0, device="cpu",
                             precision=precision, progress=False, **kw)
    done = out.meta.get("iconet_isotropic", {})
    info["iconet"] = {k: done.get(k) for k in ("scale", "input_spacing_mm", "ratio_mode", "fit", "precision",
                                               "seconds")}
    info["fit_wall_s"] = (done.get("fit") or {}).get("seconds")
    return out


def vm_hwm_mib() -> float:
    """Peak resident set of this process since its ``exec`` (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child_main(opts: argparse.Namespace) -> None:
    import resource

    import torch

    from iconet.data.io import read_volume, write_volume

    torch.set_num_threads(opts.threads)
    vol = read_volume(opts.thick)
    ref = read_volume(opts.ref)
    setting = SETTINGS[opts.setting]
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if opts.method in CHEAP:
        out = run_interpolation(vol, ref, opts.axis, "cubic" if opts.method == "cubic" else "lanczos")
    elif opts.method == "inplane":
        out = run_inplane(vol, ref, opts.axis, "bf16" if opts.precision == "bf16" else "fp32")
    elif opts.method == "iconet":
        out = run_iconet(vol, ref, opts.axis, setting, opts.fit_minutes, opts.fit_steps, opts.precision, info)
    else:
        raise SystemExit(f"unknown method {opts.method!r}")
    info["seconds_in_method"] = time.perf_counter() - t0
    import iconet

    info["iconet_imported_from"] = str(Path(iconet.__file__).parent)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    info["cpu_s_in_process"] = usage.ru_utime + usage.ru_stime
    write_volume(out.with_data(np.asarray(out.data, dtype=np.float32)), opts.out)
    info["peak_rss_mib"] = vm_hwm_mib()
    Path(opts.info).write_text(json.dumps(info))


#: Runs inside ECLARE's own venv (python -c): times ECLARE's training apart from its inference
#: by marking the CPU time when its progress bar starts and when its first inference call
#: comes. With calibrate, it stops there (no inference). Uses ECLARE's public entry point only.
ECLARE_DRIVER = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import eclare.eclare as E
from eclare.main import main
calibrate = sys.argv[3] == "calibrate"
def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF); c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
marks = {"start": (cpu(), time.perf_counter())}
class Stop(Exception):
    pass
bar = E.LossProgBar
def marked_bar(*a, **k):
    marks.setdefault("train_start", (cpu(), time.perf_counter()))
    return bar(*a, **k)
E.LossProgBar = marked_bar
apply = E.apply_to_vol
def marked_apply(*a, **k):
    marks.setdefault("train_end", (cpu(), time.perf_counter()))
    if calibrate:
        raise Stop
    return apply(*a, **k)
E.apply_to_vol = marked_apply
try:
    main(sys.argv[4:])
except Stop:
    pass
marks["end"] = (cpu(), time.perf_counter())
marks["peak_rss_mib"] = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
json.dump(marks, open(sys.argv[1], "w"))
"""


# ----------------------------------------------------------------------------- the parent
def measured(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; CPU s (its tree's, from ``os.wait4``) and wall s."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{cmd[0]} ... exited {proc.returncode}:\n" + "\n".join(tail))
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": wall}


def child_env(threads: int, code: Path | None = None) -> dict[str, str]:
    """Environment of a method's process: its thread count, no progress bars, and (``code``)
    iconet imported from a snapshot folder instead of the working tree."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    return env


def snapshot_iconet(work: Path) -> tuple[Path, dict[str, str]]:
    """Copy ``src/iconet`` into ``work`` so that a run of hours uses one version of the library
    even while the working tree changes, and check that it imports. Returns the folder to put on
    ``PYTHONPATH`` and what it was (commit, and whether the tree had uncommitted changes)."""
    import shutil

    dest = work / f"iconet_src_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    shutil.copytree(REPO / "src" / "iconet", dest / "iconet", ignore=shutil.ignore_patterns("__pycache__"))
    check = subprocess.run([sys.executable, "-c", "import iconet, iconet.isotropic, iconet.inference; "
                            "print(iconet.__file__)"], env=child_env(1, dest), capture_output=True, text=True)
    if check.returncode != 0 or not check.stdout.strip().startswith(str(dest)):
        raise SystemExit(f"through_plane.py: the snapshot of src/iconet does not import ({check.stderr.strip()[-300:]}); "
                         "the working tree is mid-edit: try again in a minute")
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src/iconet"], capture_output=True, text=True).stdout
    return dest, {"commit": commit, "src_iconet_uncommitted_changes": str(bool(dirty.strip()))}


def eclare_python(venv: Path | None) -> Path | None:
    if venv is None:
        return None
    py = venv / "bin" / "python"
    return py if py.exists() and (venv / "bin" / "run-eclare").exists() else None


def eclare_run(py: Path, thick_path: Path, out_dir: Path, setting: Setting, in_plane_mm: float,
               n_patches: int, threads: int, calibrate: bool) -> tuple[dict[str, Any], dict[str, Any], Path]:
    marks_path = out_dir / "marks.json"
    args = ["--in-fpath", str(thick_path), "--out-dir", str(out_dir),
            "--relative-slice-thickness", f"{setting.fwhm_mm / in_plane_mm:g}",
            "--n-patches", str(n_patches)]
    cost = measured([str(py), "-c", ECLARE_DRIVER, str(marks_path), str(threads),
                     "calibrate" if calibrate else "run", *args], out_dir / "eclare.log", child_env(threads))
    marks = json.loads(marks_path.read_text())
    train_cpu = marks["train_end"][0] - marks["train_start"][0]
    info = {"n_patches": n_patches, "fit_cpu_s": train_cpu,
            "fit_wall_s": marks["train_end"][1] - marks["train_start"][1],
            "setup_cpu_s": marks["train_start"][0] - marks["start"][0],
            "apply_cpu_s": marks["end"][0] - marks["train_end"][0], "peak_rss_mib": marks["peak_rss_mib"]}
    name = thick_path.name.replace(".nii", "_eclare.nii")
    return cost, info, out_dir / name


def eclare_cpu_per_patch(py: Path, thick_path: Path, cell: Path, setting: Setting, in_plane_mm: float,
                         threads: int) -> float:
    """ECLARE's training CPU s per patch on this cell: a short run stopped before its inference
    (cached in the cell's folder, so eclare@1x and eclare@5x share one calibration)."""
    cal_dir = cell / "eclare_calibration"
    cached = cal_dir / "per_patch.json"
    if cached.exists():
        return float(json.loads(cached.read_text())["cpu_s_per_patch"])
    cal_dir.mkdir(exist_ok=True)
    _, cal, _ = eclare_run(py, thick_path, cal_dir, setting, in_plane_mm, ECLARE_CALIBRATION_PATCHES,
                           threads, calibrate=True)
    per_patch = cal["fit_cpu_s"] / ECLARE_CALIBRATION_PATCHES
    cached.write_text(json.dumps({"cpu_s_per_patch": per_patch, **cal}))
    return per_patch


def cell_key(row: dict[str, Any]) -> tuple:
    return (row["volume"], row["axis"], row["setting"], row["method"])


def load_results(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": [], "runs": []}


def update_results(path: Path, rows: list[dict[str, Any]] = (), run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``rows`` (replacing rows of the same cell) and ``run`` into the JSON at ``path``,
    rewrite the .md beside it (and the block in docs/through_plane.md for the default JSON).

    Read, merged and written under a file lock, so several runs of this script (different
    cells) can share one results file.
    """
    import fcntl
    import hashlib

    lock = Path(tempfile.gettempdir()) / f"through_plane_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        results = load_results(path)
        keys = {cell_key(r) for r in rows}
        results["rows"] = [r for r in results["rows"] if cell_key(r) not in keys] + list(rows)
        results["rows"].sort(key=lambda r: (r["volume"], r["setting"], METHODS.index(r["method"])
                                            if r["method"] in METHODS else 99, r["axis"]))
        if run is not None:
            results["runs"] = [r for r in results.get("runs", []) if r.get("id") != run["id"]] + [run]
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(path)
        md = table(results)
        path.with_suffix(".md").write_text(md)
        if path.resolve() == RESULTS.resolve():
            paste_into_doc(md)
    return results


def paste_into_doc(md: str) -> None:
    """Replace the generated block of docs/through_plane.md (between its two markers) by ``md``."""
    doc = REPO / "docs" / "through_plane.md"
    if not doc.exists():
        return
    text = doc.read_text()
    begin, end = "<!-- generated:through_plane -->", "<!-- /generated:through_plane -->"
    if begin not in text or end not in text:
        return
    body = md.split("\n", 2)[2].strip()  # without the page title
    body = body.replace("## ", "### ")
    head, rest = text.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")


def _fmt(vals: list[float], digits: int) -> str:
    if not vals:
        return "—"
    m = float(np.mean(vals))
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {float(np.std(vals, ddof=1)):.{digits}f}"



def _rows_of(rows: list[dict[str, Any]], volume: str, method: str, setting: str) -> list[dict[str, Any]]:
    """The result rows of one table cell (every thick axis scored)."""
    return [r for r in rows if r["volume"] == volume and r["method"] == method and r["setting"] == setting]


def _method_rows(rows: list[dict[str, Any]], volume: str, methods: list[str], settings: list[str],
                 cell: Callable[[list[dict[str, Any]]], str]) -> list[str]:
    """One Markdown row per method: ``cell`` of the rows of each setting, "—" where there are none."""
    return [f"| {m} | " + " | ".join(cell(sel) if (sel := _rows_of(rows, volume, m, s)) else "—" for s in settings)
            + " |" for m in methods]


def _score_cell(sel: list[dict[str, Any]]) -> str:
    axes = ",".join(str(r["axis"]) for r in sel)
    return f"{_fmt([r['psnr'] for r in sel], 2)} / {_fmt([r['ssim'] for r in sel], 4)} (axes {axes})"


def _cost_cell(sel: list[dict[str, Any]]) -> str:
    txt = (f"{_fmt([r['cpu_s'] for r in sel], 0)} / {_fmt([r['wall_s'] for r in sel], 0)} / "
           f"{max(r['peak_rss_mib'] for r in sel):.0f}")
    fits = [r["fit_cpu_s"] for r in sel if r.get("fit_cpu_s") is not None]
    if fits:
        txt += f"; fit {_fmt(fits, 0)}"
    pats = [r["n_patches"] for r in sel if r.get("n_patches")]
    if pats:
        txt += f"; {', '.join(str(p) for p in pats)} patches"
    return txt

def table(results: dict[str, Any]) -> str:
    """Markdown tables from the rows: quality, gain over cubic (paired by axis), cost."""
    rows = results["rows"]
    out = ["# Through-plane benchmark (issue 20)", "",
           "Generated by `benchmarks/through_plane.py` from `through_plane.json`; protocol in "
           "docs/through_plane.md. Mean ± sample std over the thick axes scored (n = number of axes).", ""]
    vols = sorted({r["volume"] for r in rows})
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for v in vols:
        out += [f"## {v}", "", "PSNR (dB) / SSIM inside the head mask", "",
                "| method | " + " | ".join(f"{s} ({SETTINGS[s].spacing_mm:g} mm, FWHM {SETTINGS[s].fwhm_mm:g})"
                                           for s in settings) + " |",
                "|---|" + "---|" * len(settings)]
        out += _method_rows(rows, v, methods, settings, _score_cell)
        out += ["", "Gain over cubic, paired by axis: ΔPSNR (dB) / ΔSSIM", "",
                "| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
        for m in methods:
            if m == "cubic":
                continue
            cells = []
            for s in settings:
                dp, ds = [], []
                for r in rows:
                    if r["volume"] == v and r["method"] == m and r["setting"] == s:
                        c = [q for q in rows if cell_key(q) == (v, r["axis"], s, "cubic")]
                        if c:
                            dp.append(r["psnr"] - c[0]["psnr"])
                            ds.append(r["ssim"] - c[0]["ssim"])
                cells.append(f"{_fmt(dp, 2)} / {_fmt(ds, 4)}" if dp else "—")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out += ["", "Cost per volume: CPU s (user+sys of the method's processes) / wall s / peak RSS MiB; "
                "fit CPU s where the method fits", "",
                "| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
        out += _method_rows(rows, v, methods, settings, _cost_cell)
        out.append("")
    out += bars(rows)
    notes = [n for run in results.get("runs", []) for n in run.get("notes", [])]
    machines = sorted({run["machine"] for run in results.get("runs", [])})
    out += ["Machines: " + "; ".join(machines) + ".", ""]
    if notes:
        out += ["Notes:", "", *[f"- {n}" for n in dict.fromkeys(notes)], ""]
    return "\n".join(out)


def bars(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's bars, checked on whatever rows there are (paired by volume and axis)."""
    def paired(method: str, other: str, setting: str, key: str) -> list[tuple[str, int, float]]:
        got = []
        for r in rows:
            if r["method"] == method and r["setting"] == setting:
                o = [q for q in rows if cell_key(q) == (r["volume"], r["axis"], setting, other)]
                if o:
                    got.append((r["volume"], r["axis"], r[key] - o[0][key]))
        return got

    def line(what: str, diffs: list[tuple[str, int, float]], unit: str, need: float) -> str:
        if not diffs:
            return f"- {what}: not measured yet"
        vals = [d for _, _, d in diffs]
        where = ", ".join(f"{v} axis {a}" for v, a, _ in diffs)
        ok = all(v >= need for v in vals)
        return f"- {what}: {_fmt(vals, 4 if unit == '' else 2)}{unit} ({where}): {'met' if ok else 'NOT met'}"

    out = ["## The bars of issue 20", ""]
    out.append(line("4 mm: iconet − cubic PSNR ≥ +2 dB", paired("iconet", "cubic", "4mm", "psnr"), " dB", 2.0))
    out.append(line("4 mm: iconet − eclare@5x PSNR > 0", paired("iconet", "eclare@5x", "4mm", "psnr"), " dB", 1e-9))
    out.append(line("4 mm: iconet − eclare@5x SSIM ≥ 0", paired("iconet", "eclare@5x", "4mm", "ssim"), "", 0.0))
    out.append(line("2 mm: iconet − cubic PSNR > 0", paired("iconet", "cubic", "2mm", "psnr"), " dB", 1e-9))
    timed = [r for r in rows if r["method"] == "iconet" and sorted(r["thick_shape"]) == [40, 256, 256]]
    for r in timed:
        out.append(f"- a 256×256×40 thick scan ({r['volume']}, axis {r['axis']}, {r['setting']}) made isotropic, "
                   f"fit included: {r['wall_s']:.0f} s wall on the shared machine, {r['cpu_s']:.0f} CPU s "
                   f"(at least {r['cpu_s'] / 2:.0f} s of wall on 2 free cores); the bar is 600 s wall")
    if not timed:
        out.append("- a 256×256×40 thick scan in ≤ 10 min: not measured yet (`--volumes S1 --axes 2 --settings 6.4mm`)")
    return [*out, ""]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("_child", help=argparse.SUPPRESS)
    for name in ("--method", "--thick", "--ref", "--out", "--info", "--setting", "--precision"):
        c.add_argument(name, required=True)
    c.add_argument("--axis", type=int, required=True)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--fit-minutes", type=float, default=None)
    c.add_argument("--fit-steps", type=int, default=None)
    ap.add_argument("--volumes", nargs="+", type=Path,
                    default=[REPO.parent / "shared/data/pycortex_S1_T1.nii.gz",
                             REPO.parent / "shared/data/colin27_T1.nii.gz"],
                    help="1-mm isotropic NIfTI volumes (see the docstring for where to fetch them)")
    ap.add_argument("--axes", nargs="+", type=int, default=[0, 1, 2], choices=(0, 1, 2))
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--methods", nargs="+", default=list(CHEAP), choices=list(METHODS))
    ap.add_argument("--fit-minutes", type=float, default=None,
                    help="iconet's wall-clock fit budget (default: the library's)")
    ap.add_argument("--fit-steps", type=int, default=None,
                    help="iconet's fit steps instead (independent of the machine's load)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="iconet's precision (auto: the library's choice, bf16 on CPUs with native bf16); "
                         "the inplane baseline runs fp32 unless bf16 is asked")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every method")
    ap.add_argument("--eclare-venv", type=Path, default=None,
                    help="virtual environment with `pip install eclare` (ECLARE is skipped without it)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON to merge into (the .md goes beside it)")
    ap.add_argument("--work-dir", type=Path, default=None, help="keep thick inputs and outputs here")
    ap.add_argument("--force", action="store_true", help="rerun cells already in the results")
    ap.add_argument("--table-only", action="store_true", help="only regenerate the .md from the JSON")
    ap.add_argument("--rescore", action="store_true",
                    help="score again the outputs the JSON's rows name (kept in --work-dir) on --volumes, "
                         "e.g. after a change of the mask or metric; nothing is rerun")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    if opts.cmd == "_child":
        child_main(opts)
        return
    if opts.table_only:
        update_results(opts.results)
        print(opts.results.with_suffix(".md").read_text())
        return
    missing = [str(p) for p in opts.volumes if not p.exists()]
    if missing:
        raise SystemExit(f"through_plane.py: no such volume: {', '.join(missing)} (fetch commands: "
                         "see the docstring of benchmarks/through_plane.py or ../shared/data/README.md)")
    if opts.rescore:
        rescore(opts)
        return
    work = Path(tempfile.mkdtemp(prefix="through_plane_")) if opts.work_dir is None else opts.work_dir
    work.mkdir(parents=True, exist_ok=True)
    run_main(opts, work)


def rescore(opts: argparse.Namespace) -> None:
    """Recompute PSNR/SSIM of every row whose output file still exists."""
    from iconet.data.io import read_volume

    rows = load_results(opts.results)["rows"]
    updated = []
    for vpath in opts.volumes:
        hr = read_volume(vpath)
        hr_data = np.asarray(hr.data, dtype=np.float32)
        mask = head_mask(hr_data)
        for row in (r for r in rows if r["volume"] == hr.name):
            out_path = Path(row.get("output", ""))
            if "output" not in row and opts.work_dir is not None:  # rows from before outputs were named
                out_path = opts.work_dir / f"{row['volume']}_ax{row['axis']}_{row['setting']}" / f"{row['method']}.nii.gz"
            if not out_path.is_file():
                print(f"  {cell_key(row)}: output {out_path} is gone; row kept as it was", file=sys.stderr)
                continue
            row = dict(row, output=str(out_path))
            out = read_volume(out_path)
            data, _ = resample_to(out.data, out.affine, hr.affine, hr.shape, kind="cubic")
            new = dict(row, **score(data, hr_data, mask))
            print(f"  {cell_key(row)}: PSNR {row['psnr']:.2f} -> {new['psnr']:.2f}, "
                  f"SSIM {row['ssim']:.4f} -> {new['ssim']:.4f}")
            updated.append(new)
    update_results(opts.results, updated)


def run_main(opts: argparse.Namespace, work: Path) -> None:
    import torch

    from iconet.data.io import read_volume, write_volume
    from iconet.runtime import machine_name

    torch.set_num_threads(opts.threads)
    code, code_info = snapshot_iconet(work)
    py_eclare = eclare_python(opts.eclare_venv)
    notes: list[str] = []
    methods = list(opts.methods)
    if any(m.startswith("eclare") for m in methods) and py_eclare is None:
        notes.append(f"ECLARE skipped: no venv with run-eclare at {opts.eclare_venv} "
                     "(python -m venv V && V/bin/pip install torch==2.13.0 eclare; pass --eclare-venv V)")
        print(notes[-1], file=sys.stderr)
        methods = [m for m in methods if not m.startswith("eclare")]
    run = {"id": f"{time.time():.0f}-{os.getpid()}", "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": f"{machine_name('cpu')}, "
           f"{opts.threads} threads per method, {os.cpu_count()} cores shared (load {os.getloadavg()[0]:.1f} at start)",
           "torch": torch.__version__, "precision": opts.precision, "fit_minutes": opts.fit_minutes, "fit_steps": opts.fit_steps,
           "argv": sys.argv[1:], "notes": notes, "iconet_code": code_info}
    done = {cell_key(r) for r in update_results(opts.results, run=run)["rows"]}
    for vpath in opts.volumes:
        hr = read_volume(vpath)
        hr_data = np.asarray(hr.data, dtype=np.float32)
        mask = head_mask(hr_data)
        ref_path = work / f"{hr.name}_hr.nii.gz"
        write_volume(hr.with_data(hr_data), ref_path)
        for axis in opts.axes:
            for sname in opts.settings:
                setting = SETTINGS[sname]
                todo = [m for m in methods if opts.force or (hr.name, axis, sname, m) not in done]
                if not todo:
                    continue
                lr = thick(hr.with_data(hr_data), axis, setting)
                check = reference_thick(hr_data, hr.affine, lr.affine, axis, lr.shape[axis], setting.fwhm_mm)
                fm_err = float(np.abs(check - lr.data).max())
                if fm_err > 1e-3 * float(hr_data.max()):
                    raise RuntimeError(f"forward model disagrees with the independent computation by {fm_err:g}")
                cell = work / f"{hr.name}_ax{axis}_{sname}"
                cell.mkdir(exist_ok=True)
                thick_path = cell / f"{hr.name}_ax{axis}_{sname}.nii.gz"
                write_volume(lr.with_data(np.asarray(lr.data, dtype=np.float32)), thick_path)
                base = {"volume": hr.name, "axis": axis, "setting": sname, "spacing_mm": setting.spacing_mm,
                        "fwhm_mm": setting.fwhm_mm, "thick_shape": list(lr.shape),
                        "forward_model_max_abs_diff": fm_err}
                iconet_fit_cpu: float | None = None
                for method in todo:
                    row = dict(base, method=method)
                    out_path = cell / f"{method}.nii.gz"
                    print(f"[{time.strftime('%H:%M:%S')}] {hr.name} axis {axis} {sname} {method} ...", flush=True)
                    if method.startswith("eclare"):
                        if iconet_fit_cpu is None:
                            prior = [r for r in load_results(opts.results)["rows"]
                                     if cell_key(r) == (hr.name, axis, sname, "iconet")]
                            iconet_fit_cpu = prior[0].get("fit_cpu_s") if prior else None
                        if iconet_fit_cpu is None:
                            raise RuntimeError("eclare@Kx is sized by iconet's fit CPU time on the same cell: "
                                               "run iconet on it first (or list iconet before eclare in --methods)")
                        k = float(method.split("@")[1].rstrip("x"))
                        in_plane = min(lr.spacing[a] for a in range(3) if a != axis)
                        per_patch = eclare_cpu_per_patch(py_eclare, thick_path, cell, setting, in_plane,
                                                         opts.threads)
                        n = max(1, round(k * iconet_fit_cpu / per_patch / ECLARE_BATCH)) * ECLARE_BATCH
                        edir = cell / method.replace("@", "_")
                        edir.mkdir(exist_ok=True)
                        cost, info, produced = eclare_run(py_eclare, thick_path, edir, setting, in_plane, n,
                                                          opts.threads, calibrate=False)
                        info.update(calibration_cpu_s_per_patch=per_patch, budget_ratio=k,
                                    achieved_ratio=info["fit_cpu_s"] / iconet_fit_cpu)
                        out_path = produced
                    else:
                        cmd = [sys.executable, str(Path(__file__).resolve()), "_child", "--method", method,
                               "--thick", str(thick_path), "--ref", str(ref_path), "--out", str(out_path),
                               "--info", str(cell / f"{method}.json"), "--setting", sname,
                               "--precision", opts.precision, "--axis", str(axis), "--threads", str(opts.threads)]
                        if opts.fit_minutes is not None:
                            cmd += ["--fit-minutes", str(opts.fit_minutes)]
                        if opts.fit_steps is not None:
                            cmd += ["--fit-steps", str(opts.fit_steps)]
                        cost = measured(cmd, cell / f"{method}.log", child_env(opts.threads, code))
                        info = json.loads((cell / f"{method}.json").read_text())
                        if method == "iconet":
                            iconet_fit_cpu = info.get("fit_cpu_s") or cost["cpu_s"]
                            info.setdefault("fit_cpu_s", iconet_fit_cpu)
                    out = read_volume(out_path)
                    data, offset = resample_to(out.data, out.affine, hr.affine, hr.shape, kind="cubic")
                    row.update(cost, **info, grid_offset_vox=offset, out_shape=list(out.shape),
                               out_spacing=[round(s, 4) for s in out.spacing], output=str(out_path))
                    row.update(score(data, hr_data, mask))
                    print(f"    PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}, CPU {row['cpu_s']:.0f} s, "
                          f"wall {row['wall_s']:.0f} s, peak {row['peak_rss_mib']:.0f} MiB", flush=True)
                    update_results(opts.results, [row])
    run["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    run["load_at_end"] = round(os.getloadavg()[0], 1)
    update_results(opts.results, run=run)
    print(f"wrote {opts.results} and {opts.results.with_suffix('.md')}")


if __name__ == "__main__":
    main()
