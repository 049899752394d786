"""Cost of checking a .nii.gz stream to its end (CRC-32 and length) when reading it.

``iconet.data.nifti.read_nifti`` decompresses a single volume whole (``gzip.decompress``, which
checks every member's trailer) and parses it from memory; before, nibabel read the stream only
as far as the voxels went and never checked the trailer. This times ``read_volume`` both ways,
interleaved in one process (the unchecked way is the same code with the check switched off), on
a 256³ head: pycortex S1 as shipped (uint8) and the same voxels as float32 (a 4x larger stream).

    python benchmarks/nifti_gzip_check.py [--src data/pycortex_S1_T1.nii.gz] [--repeats 9]

Writes benchmarks/results/nifti_gzip_check_cpu.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

import iconet.data.nifti as nifti
from iconet.data.io import read_volume
from iconet.runtime import machine_name

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _time(path: Path, checked: bool) -> float:
    real = nifti._verified_gzip_image
    if not checked:
        nifti._verified_gzip_image = lambda p, img, n_frames: img  # the reader as it was
    try:
        t = time.perf_counter()
        read_volume(path)
        return time.perf_counter() - t
    finally:
        nifti._verified_gzip_image = real


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = REPO / "data" / "pycortex_S1_T1.nii.gz"
    if not default.is_file():
        default = REPO.parent / "shared" / "data" / "pycortex_S1_T1.nii.gz"
    ap.add_argument("--src", type=Path, default=default)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = nib.load(args.src)
        f32 = Path(tmp) / "s1_float32.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(src.dataobj).astype(np.float32), src.affine), f32)
        for label, path in (("uint8 (as shipped)", args.src), ("float32", f32)):
            times: dict[bool, list[float]] = {True: [], False: []}
            _time(path, True), _time(path, False)  # warm the page cache
            for _ in range(args.repeats):
                for checked in (False, True):
                    times[checked].append(_time(path, checked))
            ratios = [c / u for c, u in zip(times[True], times[False])]
            rows.append({
                "volume": label, "shape": list(src.shape), "file_mb": round(path.stat().st_size / 1e6, 2),
                "unchecked_s": {"median": statistics.median(times[False]), "stdev": statistics.stdev(times[False])},
                "checked_s": {"median": statistics.median(times[True]), "stdev": statistics.stdev(times[True])},
                "ratio_checked_to_unchecked": {"median": statistics.median(ratios), "min": min(ratios),
                                               "max": max(ratios)},
            })
    out = {"benchmark": "nifti_gzip_check", "hardware": machine_name(torch.device("cpu")),
           "python": platform.python_version(), "nibabel": nib.__version__, "repeats": args.repeats,
           "threads": 1, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nifti_gzip_check_cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Reading a .nii.gz with the whole-stream check (CRC-32 and length)",
        "",
        f"`python benchmarks/nifti_gzip_check.py`; {out['hardware']}, 1 thread, nibabel {nib.__version__}, "
        f"{args.repeats} interleaved repeats; median (stdev) seconds of `read_volume`.",
        "",
        "| volume | file MB | unchecked s | checked s | ratio median (min-max) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        u, c, q = r["unchecked_s"], r["checked_s"], r["ratio_checked_to_unchecked"]
        lines.append(f"| 256³ {r['volume']} | {r['file_mb']} | {u['median']:.3f} ({u['stdev']:.3f}) | "
                     f"{c['median']:.3f} ({c['stdev']:.3f}) | {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |")
    (RESULTS / "nifti_gzip_check_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
