"""Comparison figures: LR | each model | HR at one window, zoomed insets, shared error scale.

Needs matplotlib (``pip install iconet[figures]``); imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

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
