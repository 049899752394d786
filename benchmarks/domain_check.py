"""What every shipped model does outside its domain (T1 magnitude MR): CT, T2, EPI, PET-like.

For each shipped model and each input this records

* whether ``iconet infer`` refuses it by default (:func:`iconet.domain.check_input`) and why;
* with the mismatch accepted (``--allow-domain-mismatch``): the input taken as HR, made LR by
  the model's own training degradation (k-space truncation, seeded Cartesian mask, noise; a
  signed input is shifted to a floor of 0 for it and back), super-resolved through the same code path as
  ``iconet infer`` (:func:`iconet.inference.super_resolve_volume`, the model's normalisation),
  and scored against HR: PSNR over whole slices with the HR's range (max - min) as the peak,
  for the model and for bicubic interpolation on the same grid; the output's minimum against
  the HR's (are negative values kept?) and the fraction of output voxels that are exactly 0.

Inputs (all real files shipped inside packages, except the PET-like one):

* ``CT``: pydicom's ``CT_small.dcm`` (128², -896..1167 HU);
* ``T2``: pydicom's ``MR_small.dcm`` (64², spin echo, TE 240 ms / TR 4000 ms);
* ``EPI``: nibabel's ``example4d.nii.gz``, frame 0 (128×96×24, 2 mm, echo-planar BOLD);
* ``T1 (in domain)``: iconet's package sample (a Colin27 slab, src/iconet/samples);
* ``PET-like``: that sample blurred to 6 mm FWHM and given Poisson counts (a synthetic stand-in:
  no real PET volume of a usable size ships in a package), values in counts.

Run: ``python benchmarks/domain_check.py`` (CPU, fp32, about a minute) → writes
``benchmarks/results/domain_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _inputs() -> dict[str, object]:
    import nibabel as nib
    import nibabel.testing
    from pydicom.data import get_testdata_file
    from scipy.ndimage import gaussian_filter

    from iconet.data.io import read_volume
    from iconet.data.volume import Volume

    sample = read_volume(Path(str(files("iconet.samples").joinpath("colin27_slab.nii.gz"))))
    epi_img = nib.load(os.path.join(nibabel.testing.data_path, "example4d.nii.gz"))
    epi = Volume(np.asarray(epi_img.dataobj[..., 0], dtype=np.float32), epi_img.affine, source=Path("example4d.nii.gz"))
    rng = np.random.default_rng(0)
    sigma = [6.0 / 2.3548 / s for s in sample.spacing]
    activity = gaussian_filter(np.asarray(sample.data, dtype=np.float64), sigma)
    counts = rng.poisson(np.clip(activity, 0, None) / activity.max() * 200).astype(np.float32)
    pet = Volume(counts, sample.affine, source=Path("pet_like.nii.gz"))
    return {
        "CT": read_volume(get_testdata_file("CT_small.dcm")),
        "T2": read_volume(get_testdata_file("MR_small.dcm")),
        "EPI": epi,
        "T1 (in domain)": sample,
        "PET-like": pet,
    }


def _degrade(hr: np.ndarray, degradation: dict, name: str) -> np.ndarray:
    """LR slices ``(n, h/s, w/s)`` from HR slices ``(n, h, w)`` with the model's own training
    degradation (:class:`iconet.data.degrade.Degradation`, mask seeded by ``name``) in the
    model's normalised units (HR's 99.5th percentile = 1). A signed input (CT) is shifted to
    a floor of 0 before and back after, since the k-space degradation returns magnitudes."""
    from iconet.data.degrade import Degradation

    high = float(np.percentile(hr, 99.5))
    x = hr / high
    floor = min(0.0, float(x.min()))
    deg = Degradation(**{**degradation, "mask_mode": "seeded"})
    lr = deg.degrade(torch.from_numpy(x - floor).float(), name, noise_key="domain_check")["lr"]
    return (lr.double().numpy() + floor) * high


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    peak = float(ref.max() - ref.min())
    mse = float(np.mean((x.astype(np.float64) - ref) ** 2))
    return 10 * np.log10(peak**2 / mse)


def check(model_name: str, name: str, vol: object) -> dict[str, object]:
    from iconet.data.normalize import NormalizeConfig
    from iconet.data.volume import Volume
    from iconet.domain import DomainMismatch, check_input
    from iconet.hub import load_model
    from iconet.inference import slice_axis, super_resolve_volume
    from iconet.models import build_model

    model, info = load_model(model_name)
    s = model.scale
    row: dict[str, object] = {"model": model_name, "input": name}
    try:
        notes = check_input(info.domain, vol, model=model_name, source=name)  # type: ignore[arg-type]
        row["refused"], row["why"] = False, "; ".join(notes) or "in domain"
    except DomainMismatch as err:
        row["refused"], row["why"] = True, str(err).split(";")[0]
    axis = slice_axis(vol, None)  # type: ignore[arg-type]
    hr = np.moveaxis(np.asarray(vol.data, dtype=np.float64), axis, 0)  # type: ignore[attr-defined]
    m = 2 * s
    hr = hr[:, : hr.shape[1] // m * m, : hr.shape[2] // m * m]
    lr = _degrade(hr, info.degradation, name)
    norm = NormalizeConfig(**info.normalization) if info.normalization else NormalizeConfig()
    lr_vol = Volume(np.moveaxis(lr, 0, 2).astype(np.float32))
    outs = {}
    for label, net in (("model", model), ("bicubic", build_model("bicubic", scale=s, grid=info.grid).eval())):
        sr = super_resolve_volume(net, lr_vol, grid=info.grid, normalization=norm,
                                  options=None)["sr"].data
        outs[label] = np.moveaxis(sr, 2, 0).astype(np.float64)
    row.update({
        "hr_min": float(hr.min()),
        "sr_min": float(outs["model"].min()),
        "sr_zero_fraction": float(np.mean(outs["model"] == 0)),
        "psnr_model": _psnr(outs["model"], hr),
        "psnr_bicubic": _psnr(outs["bicubic"], hr),
    })
    row["gain_db"] = row["psnr_model"] - row["psnr_bicubic"]  # type: ignore[operator]
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = ("| model | input | refused by default | PSNR model / bicubic (dB) | gain | HR min → SR min | SR voxels = 0 |\n"
            "|---|---|---|---|---:|---|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input']} | {'yes' if r['refused'] else 'no'} | "
                     f"{r['psnr_model']:.2f} / {r['psnr_bicubic']:.2f} | {r['gain_db']:+.2f} | "
                     f"{r['hr_min']:.0f} → {r['sr_min']:.0f} | {100 * r['sr_zero_fraction']:.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "domain_check.json")
    args = parser.parse_args(argv)
    from iconet.hub import available_models

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    inputs = _inputs()
    rows = [check(m, name, vol) for m in available_models() for name, vol in inputs.items()]
    doc = {"protocol": "input = HR; LR = the model's own k-space degradation (seeded mask, noise) in its "
                       "normalised units; whole-slice PSNR with the HR's max - min as peak; CPU fp32",
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    md = f"{doc['protocol']}\n\n{table(rows)}\n\nWhy refused / notes:\n\n" + "\n".join(
        f"- {r['model']} on {r['input']}: {r['why']}" for r in rows if r["why"] != "in domain")
    args.out.with_suffix(".md").write_text(md + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
