"""Figures: slice comparisons (LR | each model | HR) and the per-model PSNR/SSIM bar chart.

* :func:`comparison_figure` — one slice at one window, zoomed insets, shared error scale.
* :func:`metric_bar_chart` — ``iconet eval``'s ``bars.png``: mean ± std over volumes per model,
  SR (vs HR) and REC (vs CLEAN) as separately labelled bars, the protocol as the caption.

Needs matplotlib (``pip install iconet[figures]``); imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _nearest_upscale(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Blow a small image up by pixel repetition (for display only: shows the real LR pixels)."""
    fy, fx = shape[0] // img.shape[0], shape[1] // img.shape[1]
    return np.kron(img, np.ones((fy, fx)))[: shape[0], : shape[1]]


def comparison_figure(
    lr: np.ndarray,
    outputs: dict[str, np.ndarray],
    hr: np.ndarray,
    path: str | Path,
    *,
    inset: tuple[int, int, int] | None = None,
    window: tuple[float, float] | None = None,
    title: str = "",
    scores: dict[str, str] | None = None,
) -> Path:
    """Save a figure of one slice: LR | outputs... | HR over absolute-error maps.

    Args:
        lr: the LR slice ``(h, w)`` (shown with its real pixels, nearest-neighbour enlarged).
        outputs: model name → SR slice ``(H, W)``, in display order.
        hr: the HR slice ``(H, W)``.
        path: PNG to write (its folder must exist).
        inset: ``(row, col, size)`` in HR pixels of the zoomed region drawn in every panel
            (default: a square at the centre, a quarter of the short side).
        window: display range ``(low, high)``, the same for every panel (default: HR 0.5-99.5
            percentiles).
        title: figure title.
        scores: model name → text under its panel (e.g. ``"31.2 dB / 0.912"``).

    Error maps ``|output − HR|`` share one colour scale (up to the 99.5th percentile of all).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    H, W = hr.shape
    size = inset[2] if inset else max(8, min(H, W) // 4)
    r0, c0 = (inset[0], inset[1]) if inset else ((H - size) // 2, (W - size) // 2)
    lo, hi = window if window else (float(np.percentile(hr, 0.5)), float(np.percentile(hr, 99.5)))
    panels = {"LR": _nearest_upscale(lr, (H, W)), **outputs, "HR": hr}
    errors = {k: np.abs(v - hr) for k, v in outputs.items()}
    emax = float(np.percentile(np.concatenate([e.ravel() for e in errors.values()]), 99.5)) if errors else 1.0
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 2.6 * 2 * H / W + 0.6), squeeze=False)
    for i, (name, img) in enumerate(panels.items()):
        ax = axes[0, i]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, edgecolor="yellow", linewidth=1))
        zoom = ax.inset_axes([0.6, 0.0, 0.4, 0.4])
        zoom.imshow(img[r0 : r0 + size, c0 : c0 + size], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        zoom.set_xticks([]), zoom.set_yticks([])
        for spine in zoom.spines.values():
            spine.set_edgecolor("yellow")
        label = name if not scores or name not in scores else f"{name}\n{scores[name]}"
        ax.set_title(label, fontsize=9)
        ax.axis("off")
        err_ax = axes[1, i]
        err_ax.axis("off")
        if name in errors:
            im = err_ax.imshow(errors[name], cmap="inferno", vmin=0, vmax=emax, interpolation="nearest")
            err_ax.set_title(f"|{name} − HR|", fontsize=8)
    if errors:
        fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


#: bar colours and legend labels of the two scored branches.
_BRANCHES = {"sr": ("SR vs HR", "#3b6ea8"), "rec": ("REC vs CLEAN", "#d08c3a")}


def metric_bar_chart(
    summary: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    protocol: str = "",
    title: str = "",
    dpi: int = 110,
) -> Any:
    """Save a two-panel bar chart (PSNR in dB, SSIM) of an evaluation summary; returns the Figure.

    Args:
        summary: model name → ``{"sr": {"psnr": (mean, std), "ssim": (mean, std), ...},
            "rec": {...}}`` (``EvalResult.summary``; ``rec`` only where a model has one), and
            optionally ``"intervals": {branch: {metric: {"low", "high", ...}}}``: the error bars
            then show those 95 % intervals instead of the std.
        path: PNG to write (its folder must exist). The image is exactly
            ``fig.get_size_inches() × dpi`` pixels (whole quarter inches, no tight cropping).
        protocol: the metric protocol line, printed (wrapped) as the caption under the panels.
        title: figure title.
        dpi: resolution.

    One bar per model for its SR output and, where the model has one, a second, hatched bar
    for its reconstruction (REC vs CLEAN), so the two are never read as one. Bar height = the
    mean, error bar = the interval or the std (none when it is not finite, e.g. one unit or
    PSNR = inf), the mean printed on the bar. A non-finite mean draws no bar, only its text.
    The value axes are zoomed to the bars (they need not start at 0): read the printed values.

    The returned :class:`matplotlib.figure.Figure` is not attached to pyplot (no global state);
    each bar is a patch with a ``gid`` of ``"<model>/<branch>/<metric>"``.
    """
    from matplotlib.figure import Figure

    names = list(summary)
    if not names:
        raise ValueError("metric_bar_chart: the summary holds no model")
    branches = [b for b in _BRANCHES if any(b in summary[n] for n in names)]
    if "sr" not in branches:
        raise ValueError("metric_bar_chart: no model has an SR summary")
    width = max(7.0, 2.0 + 2 * len(names) * (0.45 * len(branches) + 0.35))
    with_iv = any("intervals" in summary[n] for n in names)
    note = ("Bars: mean over all (volume, draw) units; error bars: 95 % interval (see the protocol)." if with_iv
            else "Bars: mean over volumes; error bars: ± sample std.") + (f" Protocol: {protocol}" if protocol else "")
    caption = "\n".join(textwrap.wrap(note, int(width * 20)))
    n_caption = caption.count("\n") + 1
    height = 3.4 + 0.13 * n_caption + (0.3 if title else 0)
    width, height = math.ceil(width * 4) / 4, math.ceil(height * 4) / 4  # quarter inches: whole pixels
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 2)
    bar_w = 0.8 / len(branches)
    x = np.arange(len(names), dtype=float)
    for ax, (metric, label, digits) in zip(axes, (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4))):
        lows, highs = [], []
        for j, branch in enumerate(branches):
            text, colour = _BRANCHES[branch]
            offset = (j - (len(branches) - 1) / 2) * bar_w
            for i, name in enumerate(names):
                if branch not in summary[name]:
                    continue
                mean, std = (float(v) for v in summary[name][branch][metric])
                xi = x[i] + offset
                if not math.isfinite(mean):
                    ax.text(xi, 0.5, str(mean), transform=ax.get_xaxis_transform(), ha="center", fontsize=8)
                    continue
                err: Any = std if math.isfinite(std) and std > 0 else None
                iv = summary[name].get("intervals", {}).get(branch, {}).get(metric)
                if iv is not None:  # the 95 % interval (asymmetric in general); none for one unit
                    ok = math.isfinite(iv["low"]) and math.isfinite(iv["high"])
                    err = [[mean - iv["low"]], [iv["high"] - mean]] if ok else None
                bars = ax.bar(xi, mean, bar_w * 0.9, yerr=err, capsize=3, color=colour,
                              hatch="//" if branch == "rec" else None, edgecolor="white" if branch == "rec" else None,
                              label=text if i == min(k for k, n in enumerate(names) if branch in summary[n]) else None)
                bars.patches[0].set_gid(f"{name}/{branch}/{metric}")
                ax.bar_label(bars, labels=[f"{mean:.{digits}f}"], padding=2, fontsize=7)
                down, up = (err[0][0], err[1][0]) if isinstance(err, list) else (err or 0.0, err or 0.0)
                lows.append(mean - down)
                highs.append(mean + up)
        if lows:
            lo, hi = min(lows), max(highs)
            span = max(hi - lo, 0.02 if metric == "ssim" else 2.0)  # near-equal bars look near-equal
            bottom = max(0.0, lo - 0.6 * span)
            top = hi + 0.35 * span
            if metric == "ssim":
                top = min(top, 1.0 + 0.1 * span)
            ax.set_ylim(bottom, top)
        ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center",
                      fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    if len(branches) > 1:
        axes[0].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.supxlabel(caption, fontsize=6.5, x=0.01, ha="left", multialignment="left")
    fig.savefig(Path(path), dpi=dpi, format="png")
    return fig
