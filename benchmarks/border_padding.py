"""Does circular padding of whole k-space-grid slices change what trained models score?

The k-space degradation is periodic (an FFT): an LR slice's left edge continues its right edge.
Trained models pad their convolutions with zeros instead, and the Colin27 figures show a band of
larger error along the image border for every trained model. This benchmark scores exported
models on S1's held-out slab (never Colin27: this is a design question) per plane, with the
slice as it is and with the slice extended by ``--pad`` LR pixels of circular padding before the
forward pass (output cropped back), the way tiled inference already pads every tile.

    python benchmarks/border_padding.py runs/quality/exports/kspace_x2_{edsr,iconet,iconet_small} \\
        --scale 2 --out benchmarks/results/border_padding_x2.md

(the models exported by ``benchmarks/quality.py export``; ``iconet_small`` is the package-default config).

The slab is 80 slices thick along axis 2: its axis-0 and axis-1 slices are 80-pixel strips
cut through tissue (borders that are not background), its axis-2 slices whole head slices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from iconet.data.degrade import Degradation
from iconet.data.nifti import read_nifti
from iconet.evaluation.runner import Candidate, evaluate, load_candidate
from iconet.inference import crop_margin

REPO = Path(__file__).resolve().parent.parent


class CircularPadded(nn.Module):
    """``model`` on its input circularly extended by ``pad`` LR pixels, outputs cropped back.

    ``(B, C, h, w)`` in; the model's ``{"sr": [...], "rec": [...]}`` at their own sizes out.
    """

    def __init__(self, model: nn.Module, pad: int) -> None:
        super().__init__()
        self.model, self.pad = model, pad

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        p = self.pad
        if not p:
            return self.model(x)
        h, w = x.shape[-2:]
        out = self.model(nn.functional.pad(x, (p, p, p, p), mode="circular"))
        return {key: [crop_margin(t, p, h, w) for t in tensors] for key, tensors in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="exported model folders (k-space grid)")
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--pad", type=int, default=16, help="LR pixels of circular padding (default 16)")
    ap.add_argument("--volume", default=str(REPO / "data/s1_holdout/S1_val.nii.gz"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the markdown table here too")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vol = read_nifti(args.volume)
    base = [load_candidate(m, args.scale, "kspace") for m in args.models]
    if any(c.grid != "kspace" for c in base):
        print("border_padding: every model must be trained on the k-space grid", file=sys.stderr)
        return 2
    deg = Degradation(kind="kspace", scale=args.scale)
    lines = [f"| model | plane (axis) | PSNR zero-padded | PSNR + {args.pad} px circular | Δ | SSIM zero | SSIM circular |",
             "|---|---|---:|---:|---:|---:|---:|"]
    with torch.inference_mode():
        for axis in (0, 1, 2):
            scores = {}
            for pad in (0, args.pad):
                cands = [Candidate(c.name, CircularPadded(c.model, pad), c.grid, c.source) for c in base]
                res = evaluate(cands, [vol], deg, axis=axis, batch=8)
                scores[pad] = {c.name: res.summary[c.name]["sr"] for c in base}
            for c in base:
                z, p = scores[0][c.name], scores[args.pad][c.name]
                line = (f"| {c.name} | {axis} | {z['psnr'][0]:.2f} | {p['psnr'][0]:.2f} | {p['psnr'][0] - z['psnr'][0]:+.2f} "
                        f"| {z['ssim'][0]:.4f} | {p['ssim'][0]:.4f} |")
                lines.append(line)
                print(line, flush=True)
    note = (f"\nS1 held-out slab ({Path(args.volume).name}), k-space degradation x{args.scale} (seeded masks), "
            "DESIGN §3 protocol, fp32 on the CPU; models exported by `benchmarks/quality.py export` "
            "(`iconet_small` = the package-default config). `python benchmarks/border_padding.py "
            + " ".join(f"runs/quality/exports/{Path(m).name}" for m in args.models)
            + f" --scale {args.scale} --pad {args.pad} --out ...`.")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n" + note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
