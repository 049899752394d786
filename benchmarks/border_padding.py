"""Does circular padding of whole k-space-grid slices change what trained models score?

The k-space degradation is periodic (an FFT): an LR slice's left edge continues its right edge.
Trained models pad their convolutions with zeros instead, and the Colin27 figures show a band of
larger error along the image border for every trained model. This benchmark scores exported
models on S1's held-out slab (never Colin27: this is a design question) per plane, with the
slice as it is and with the slice extended by ``--pad`` LR pixels of circular padding before the
forward pass (output cropped back), the way tiled inference already pads every tile, and with
``auto``: only the slices whose border cuts through the object padded (``iconet infer --pad``).

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
from iconet.data.normalize import NormalizeConfig
from iconet.data.nifti import read_nifti
from iconet.evaluation.runner import Candidate, evaluate, load_candidate
from iconet.inference import KSPACE_MARGIN, circular_rows, forward_whole

REPO = Path(__file__).resolve().parent.parent


class BorderPadded(nn.Module):
    """``model`` with its slice borders extended as ``iconet infer --pad MODE`` extends them.

    ``(B, C, h, w)`` in; the model's ``{"sr": [...], "rec": [...]}`` at their own sizes out.
    ``mode``: ``"none"``, ``"circular"`` (every slice, :data:`KSPACE_MARGIN` LR pixels) or
    ``"auto"`` (only slices whose border cuts through the object); the same code path as
    inference (:func:`iconet.inference.circular_rows`, :func:`iconet.inference.forward_whole`).
    ``counts`` tallies ``[slices padded, slices seen]``.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.model, self.mode = model, mode
        self.counts = [0, 0]

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        def predict(t: torch.Tensor) -> dict[str, torch.Tensor]:
            out = self.model(t)
            return {f"{key}/{i}": o for key, tensors in out.items() for i, o in enumerate(tensors)}

        rows = circular_rows(x, self.mode, "kspace")
        self.counts[0] += int(rows.sum())
        self.counts[1] += len(rows)
        flat = forward_whole(predict, x, rows)
        named: dict[str, list[torch.Tensor]] = {}
        for key in sorted(flat, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
            named.setdefault(key.split("/")[0], []).append(flat[key])
        return named


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="exported model folders (k-space grid)")
    ap.add_argument("--scale", type=int, required=True)
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
    modes = ("none", "circular", "auto")
    lines = [f"| model | plane (axis) | PSNR none | PSNR circular ({KSPACE_MARGIN} px) | PSNR auto | auto padded | "
             "Δ auto − none | SSIM none | SSIM circular | SSIM auto |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with torch.inference_mode():
        for axis in (0, 1, 2):
            scores, counts = {}, {}
            for mode in modes:
                cands = [Candidate(c.name, BorderPadded(c.model, mode), c.grid, c.source) for c in base]
                # the wrapper pads, so the infer path must not (pad none); one draw and HR's statistic:
                # the protocol its results were measured with
                res = evaluate(cands, [vol], deg, axis=axis, batch=8, pad="none", draws=1,
                               normalization=NormalizeConfig())
                scores[mode] = {c.name: res.summary[c.name]["sr"] for c in base}
                counts[mode] = {c.name: c.model.counts for c in cands}
            for c in base:
                z, p, a = (scores[m][c.name] for m in modes)
                done, seen = counts["auto"][c.name]
                line = (f"| {c.name} | {axis} | {z['psnr'][0]:.2f} | {p['psnr'][0]:.2f} | {a['psnr'][0]:.2f} "
                        f"| {done}/{seen} | {a['psnr'][0] - z['psnr'][0]:+.2f} "
                        f"| {z['ssim'][0]:.4f} | {p['ssim'][0]:.4f} | {a['ssim'][0]:.4f} |")
                lines.append(line)
                print(line, flush=True)
    note = (f"\nS1 held-out slab ({Path(args.volume).name}), k-space degradation x{args.scale} (seeded masks), "
            "docs/design.md §3 protocol, fp32 on the CPU. `none`: the slice as it is (convolutions zero-pad); "
            f"`circular`: every slice extended by {KSPACE_MARGIN} LR pixels of circular padding, output cropped "
            "back; `auto`: only the slices whose border ring holds signal (`iconet.inference.border_cuts_object`), "
            "the default of `iconet infer --pad`. `python benchmarks/border_padding.py "
            + " ".join(str(m) for m in args.models) + f" --scale {args.scale} --out ...`.")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n" + note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
