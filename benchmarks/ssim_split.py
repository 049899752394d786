"""Where each model's SSIM is won or lost: in the head (foreground) or in the air around it.

The protocol's SSIM (docs/design.md §3) is the mean of a 7×7 SSIM map over the *whole* slice; on a
head slice most pixels are background, where HR is nearly constant and any faint texture an SR
output leaves there scores badly however small its error. This computes each model's SSIM map
on S1's held-out slab (axial slices, seeded mask, never Colin27) and reports its mean over the
foreground (HR > 10 % of HR's maximum), over the background, and the squared error in each:

    python benchmarks/ssim_split.py MODEL [MODEL ...] [--scale 2] [--data data/s1_holdout/S1_val.nii.gz] [--name NAME] [--floor 0]

MODEL: anything ``iconet eval --models`` takes, optionally as ``LABEL=MODEL``. Writes
``benchmarks/results/ssim_split_x<s>[_NAME].md``. The SSIM map is the protocol's (uniform 7×7
window, data_range = HR's maximum, the 3-pixel border strip left out), in normalised units.
``--floor 0`` clips every SR output at 0 before scoring: what ICONet's ``nonnegative`` switch
does inside the network, applied to any model (to see what the clip alone is worth to a peer).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from _slab import held_out_slab, model_outputs, write_result  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent
WIN = 7


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--data", type=Path, default=Path("data/s1_holdout/S1_val.nii.gz"))
    ap.add_argument("--name", default="", help="suffix of the results file")
    ap.add_argument("--floor", type=float, default=None, help="clip SR outputs at this value before scoring")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks/results")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    hr_t, lr, deg = held_out_slab(args.data, args.scale)
    hr = hr_t.double().numpy()
    peak = float(hr.max())
    pad = (WIN - 1) // 2
    inner = (slice(None), slice(pad, hr.shape[1] - pad), slice(pad, hr.shape[2] - pad))
    fg = (hr > 0.1 * peak)[inner]

    lines = [f"| model (x{args.scale}) | SSIM | SSIM foreground | SSIM background | "
             "MSE foreground (1e-4) | MSE background (1e-4) |", "|---|---:|---:|---:|---:|---:|"]
    for arg in args.models:
        label, sr = model_outputs(arg, lr, deg)
        sr_np = (sr.double() if args.floor is None else sr.double().clamp_min(args.floor)).numpy()
        maps = np.stack([structural_similarity(h, s, data_range=peak, win_size=WIN, gaussian_weights=False, full=True)[1]
                         for h, s in zip(hr, sr_np)])[inner]
        err = ((sr_np - hr) ** 2)[inner]
        lines.append(f"| {label} | {maps.mean():.4f} | {maps[fg].mean():.4f} | {maps[~fg].mean():.4f} | "
                     f"{1e4 * err[fg].mean():.2f} | {1e4 * err[~fg].mean():.2f} |")
    lines += ["", f"{args.data} (axial foreground slices, {len(hr)}; background {100 * (~fg).mean():.0f} % of the "
              f"scored pixels), k-space degradation x{args.scale} with the volume's seeded mask; normalised "
              f"intensities. `python benchmarks/ssim_split.py {' '.join(args.models)} --scale {args.scale}"
              + (f" --name {args.name}" if args.name else "") + (f" --floor {args.floor:g}" if args.floor is not None else "")
              + "`." + (f" SR outputs clipped at {args.floor:g} before scoring." if args.floor is not None else "")]
    write_result(args.results, f"ssim_split_x{args.scale}{'_' + args.name if args.name else ''}.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
