"""``iconet demo``: the main job on the package's own real sample, with no network.

The 8 shipped Colin27 slices (a subject no shipped model was trained on) are degraded with the
default task of docs/design.md §2 (k-space truncation plus a seeded Cartesian mask), super-resolved by
the shipped ICONet model (or, until one ships, only by the interpolation peers, with a notice),
scored with the default metric protocol, and written out: the SR volume as NIfTI at the HR
geometry, the LR input, a comparison figure and a metrics table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iconet.data.degrade import Degradation, crop_to_multiple
from iconet.data.geometry import downscaled_affine
from iconet.data.io import atomic_output, read_volume, write_volume
from iconet.data.normalize import Normalization, NormalizeConfig, denormalize, normalize
from iconet.data.samples import sample_path
from iconet.data.volume import Volume
from iconet.evaluation.metrics import FASTMRI, evaluate_volume
from iconet.inference import restore_dtype
from iconet.models import build_model
from iconet.models.base import SRModel

SAMPLE_NAME = "colin27_slab"


@dataclass
class DemoResult:
    """Where the demo wrote its files and what it measured (metrics per model)."""

    sr: Path
    lr: Path
    figure: Path
    table: Path
    metrics: dict[str, dict[str, float]]
    model: str


def _models(scale: int, model: str | None) -> tuple[dict[str, SRModel], str]:
    """The peers plus the model to show; returns ``(models, name of the one written out)``."""
    from iconet.hub import available_models, load_model

    models: dict[str, SRModel] = {
        "bicubic": build_model("bicubic", scale=scale, grid="kspace"),
        "zero-filled": build_model("zerofill", scale=scale, grid="kspace"),
    }
    name = model or f"iconet-t1-x{scale}"
    if model is not None or name in available_models():
        net, info = load_model(name)
        if info.grid != "kspace" or net.scale != scale:
            raise ValueError(f"{name}: the demo needs a x{scale} model trained on the kspace grid "
                             f"(this one: x{net.scale}, {info.grid} grid)")
        models["ICONet"] = net
        return models, "ICONet"
    print(f"iconet: notice: no shipped ICONet model for x{scale} yet; the demo shows the "
          "interpolation peers only (train one with `iconet train configs/demo_s1_x2.yaml`)", file=sys.stderr)
    return models, "bicubic"


def _targets(out_dir: Path, scale: int) -> dict[str, Path]:
    return {
        "sr": out_dir / f"colin27_sr_x{scale}.nii.gz",
        "lr": out_dir / f"colin27_lr_x{scale}.nii.gz",
        "figure": out_dir / f"comparison_x{scale}.png",
        "table": out_dir / f"metrics_x{scale}.md",
    }


def _sample(scale: int) -> tuple[Volume, torch.Tensor, Normalization, torch.Tensor]:
    """The shipped sample as the demo scores it: ``(volume, HR (S, H, W) in [0, 1], its
    normalisation, LR (S, h, w))``, HR cropped to multiples of ``2·scale``, LR by the default
    k-space degradation with the mask seeded from the sample's name."""
    vol = read_volume(sample_path())
    hr_raw = crop_to_multiple(torch.from_numpy(vol.data.astype(np.float32)).permute(2, 0, 1), 2 * scale)
    hr_np, norm = normalize(hr_raw.numpy(), NormalizeConfig())
    hr = torch.from_numpy(np.ascontiguousarray(hr_np, dtype=np.float32))
    lr = Degradation(kind="kspace", scale=scale).degrade(hr, SAMPLE_NAME)["lr"]
    return vol, hr, norm, lr


def _hwz(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).double().numpy()  # (S, H, W) -> (H, W, S)


@torch.inference_mode()
def score_on_sample(model: SRModel) -> dict[str, float]:
    """PSNR / SSIM / NMSE of ``model`` on the shipped sample, degraded and scored as ``iconet demo``
    does (default protocol, fp32 on the CPU). A shipped model's ``metrics.json`` states this under
    ``"sample"`` and a test holds it to 0.01 dB."""
    _, hr, _, lr = _sample(model.scale)
    return evaluate_volume(_hwz(model.eval()(lr[:, None])["sr"][-1][:, 0]), _hwz(hr), FASTMRI)


@torch.inference_mode()
def run_demo(out_dir: str | Path = "iconet-demo", *, scale: int = 2, model: str | None = None,
             overwrite: bool = False) -> DemoResult:
    """Run the demo into ``out_dir``; refuses to replace earlier outputs unless ``overwrite``."""
    out_dir = Path(out_dir)
    targets = _targets(out_dir, scale)
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: output exists (use --overwrite to replace it)")
    models, shown = _models(scale, model)

    vol, hr, norm, lr = _sample(scale)
    outputs = {name: m.eval()(lr[:, None])["sr"][-1][:, 0] for name, m in models.items()}
    metrics = {name: evaluate_volume(_hwz(out), _hwz(hr), FASTMRI) for name, out in outputs.items()}

    out_dir.mkdir(parents=True, exist_ok=True)
    hr_affine = vol.affine  # cropping keeps voxel (0, 0, 0): the affine is unchanged
    lr_affine = downscaled_affine(hr_affine, (scale, scale, 1), "kspace")
    restore = lambda t: restore_dtype(denormalize(t.permute(1, 2, 0).numpy(), norm), vol.data.dtype)  # noqa: E731
    description = f"iconet demo: {shown} x{scale} of Colin27 (k-space truncation + Cartesian mask)"
    for key, data, affine in (("lr", lr, lr_affine), ("sr", outputs[shown], hr_affine)):
        write_volume(vol.with_data(restore(data), affine), targets[key], reference=vol, description=description)

    from iconet.evaluation.figures import comparison_figure

    k = hr.shape[0] // 2
    # The sample is RAS with axial slices (I, J): show them radiologically, anterior up.
    show = lambda t: np.flipud(t[k].numpy().T)  # noqa: E731
    scores = {n: f"{m['psnr']:.2f} dB / {m['ssim']:.3f}" for n, m in metrics.items()}
    with atomic_output(targets["figure"]) as tmp:
        comparison_figure(show(lr), {n: show(o) for n, o in outputs.items()}, show(hr), tmp,
                          title=f"Colin27 (held out), x{scale}, k-space truncation + Cartesian mask",
                          scores=scores)
    lines = [f"| model (x{scale}) | PSNR (dB) | SSIM | NMSE |", "|---|---:|---:|---:|"]
    for n, m in metrics.items():
        lines.append(f"| {n} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['nmse']:.4f} |")
    lines += ["", f"Protocol: {FASTMRI.describe()}. One volume: 8 axial slices of Colin27 shipped "
              "with iconet, normalised by its 99.5th percentile (clipped)."]
    with atomic_output(targets["table"]) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return DemoResult(targets["sr"], targets["lr"], targets["figure"], targets["table"], metrics, shown)
