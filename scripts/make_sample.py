#!/usr/bin/env python
"""Cut the shipped real sample ``src/iconet/samples/colin27_slab.nii.gz`` from Colin27.

Takes 8 axial slices, every 4th, centred on the middle of the foreground slices of Colin27
(``ch2.nii.gz`` of the Debian package ``mricron-data``, checked by SHA-256), keeps the voxels
as they are (uint8) and the real geometry: the affine's origin moves to the first kept slice
and its slice axis is scaled by the step (spacing 1 x 1 x 4 mm). The output is gzipped with
mtime 0, so the same input always gives the same bytes.

Usage (from the repository root)::

    python scripts/make_sample.py [--src ../shared/data/colin27_T1.nii.gz]

``--src`` defaults to ``../shared/data/colin27_T1.nii.gz``; ``iconet data fetch-samples``
fetches the same file anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLIN27_SHA256 = "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309"
N_SLICES, STEP, AXIS = 8, 4, 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "colin27_T1.nii.gz")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "iconet" / "samples" / "colin27_slab.nii.gz")
    args = ap.parse_args(argv)

    raw = args.src.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != COLIN27_SHA256:
        print(f"{args.src}: sha256 {digest} is not Colin27's {COLIN27_SHA256}", file=sys.stderr)
        return 1
    img = nib.load(args.src)
    if "".join(nib.aff2axcodes(img.affine)) != "RAS":
        print(f"{args.src}: expected RAS orientation", file=sys.stderr)
        return 1
    data = np.asanyarray(img.dataobj)
    norm = data.astype(np.float64) / np.percentile(data, 99.5)
    frac = (norm > 0.1).mean(axis=(0, 1))
    fg = np.nonzero(frac > 0.10)[0]
    mid = (int(fg[0]) + int(fg[-1])) // 2
    first = mid - STEP * (N_SLICES // 2)
    idx = np.arange(first, first + STEP * N_SLICES, STEP)
    assert np.all(frac[idx] > 0.10), "every kept slice must be a foreground slice"
    slab = np.ascontiguousarray(data[:, :, idx])

    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([0.0, 0.0, float(first)]) + img.affine[:3, 3]
    affine[:3, AXIS] *= STEP
    hdr = img.header.copy()
    out = nib.Nifti1Image(slab, affine, hdr)
    out.set_qform(affine, code=int(img.header["qform_code"]) or 1)
    out.set_sform(affine, code=int(img.header["sform_code"]) or 1)
    out.header["descrip"] = f"Colin27 ch2 axial k={idx[0]}:{idx[-1] + 1}:{STEP}".encode()[:80]
    out.set_data_dtype(data.dtype)

    payload = gzip.compress(out.to_bytes(), compresslevel=9, mtime=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(payload)
    print(f"wrote {args.out}: shape {slab.shape}, {slab.dtype}, slices {idx.tolist()} of axis {AXIS}, "
          f"world z {[float(v) for v in (affine[2, 3], affine[2, 3] + affine[2, 2] * (N_SLICES - 1))]} mm, "
          f"{len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
