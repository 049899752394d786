"""Where the SR error lies in k-space: inside the band the LR was cut from, or above it.

Under the k-space degradation the LR's band of HR's spectrum is *measured* (aliased by the
undersampling mask), the rest is missing. This splits each model's squared error on S1's
held-out slab (axial slices, seeded mask, never Colin27) into the two parts and reports what
PSNR each model would reach if one part were perfect (the other part's error alone):

    python benchmarks/error_bands.py MODEL [MODEL ...] [--scale 2] [--data data/s1_holdout/S1_val.nii.gz]
    python benchmarks/error_bands.py runs/cpu_relu/exports/kspace_x2_{iconet,edsr,t2net} bicubic --scale 2

MODEL: anything ``iconet eval --models`` takes, optionally as ``LABEL=MODEL``. Writes ``benchmarks/results/error_bands_x<s>.md``.
PSNR as the protocol (whole stack, data_range = HR's maximum), in normalised units.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from _slab import held_out_slab, model_outputs, write_result  # benchmarks/ is on sys.path when run as a script

from iconet.ops.fft import fft2c
from iconet.ops.grid import low_band

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--data", type=Path, default=Path("data/s1_holdout/S1_val.nii.gz"))
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks/results")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    hr, lr, deg = held_out_slab(args.data, args.scale)
    peak2 = float(hr.max()) ** 2
    n = hr.numel()
    H, W = hr.shape[-2:]
    band = low_band(H, W, H // args.scale, W // args.scale)

    def psnr(sq_err: float) -> float:
        return 10 * math.log10(peak2 / (sq_err / n))

    lines = [f"| model (x{args.scale}) | PSNR (dB) | error in the LR band | PSNR if the band were exact | "
             "PSNR if the rest were exact |", "|---|---:|---:|---:|---:|"]
    for arg in args.models:
        label, sr = model_outputs(arg, lr, deg)
        # Unitary FFT: the squared error splits exactly between the two parts of the spectrum.
        e2 = fft2c((sr - hr).double()).abs() ** 2
        inside, total = float(e2[..., band].sum()), float(e2.sum())
        lines.append(f"| {label} | {psnr(total):.2f} | {100 * inside / total:.0f} % | "
                     f"{psnr(total - inside):.2f} | {psnr(inside):.2f} |")
    lines += ["", f"{args.data} (axial foreground slices, {len(hr)}), k-space degradation x{args.scale} with the "
              "volume's seeded mask; normalised intensities; the LR band is the interior of the centre "
              f"1/{args.scale} of each axis of HR's centred spectrum. `python benchmarks/error_bands.py "
              f"{' '.join(args.models)} --scale {args.scale}`."]
    write_result(args.results, f"error_bands_x{args.scale}.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
