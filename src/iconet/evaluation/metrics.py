"""PSNR, SSIM and NMSE under an explicit metric protocol (docs/design.md §3).

The same model reads 5 dB apart depending on whether PSNR uses the peak of the volume or of
each slice, so the protocol is an object (:class:`MetricProtocol`), every function takes one,
and :meth:`MetricProtocol.describe` gives the line to print under every table.

The default (:data:`FASTMRI`) is the fastMRI convention (``fastmri/evaluate.py``):

* PSNR over the whole stacked volume, ``data_range = max(HR volume)``;
* SSIM = mean over slices of scikit-image's 2-D ``structural_similarity`` (7×7 uniform
  window, ``gaussian_weights=False``, sample covariance, K1 = 0.01, K2 = 0.03), with the same
  ``data_range``;
* NMSE = ``||HR − SR||² / ||HR||²`` over the volume;
* float64 throughout; mean ± sample std (``ddof=1``) over volumes (:func:`aggregate`).

Arrays: NumPy arrays or torch tensors of any real dtype (integers are converted to float64
before any difference, so ``uint8`` inputs cannot wrap around). A volume has its slices along
``protocol.slice_axis`` (default ``-1``: NIfTI-style ``(H, W, S)``; use ``slice_axis=0`` for
fastMRI-style ``(S, H, W)`` arrays or ``(B, C, H, W)`` batches); the two remaining trailing
axes are the slice plane, and any other axes are folded into the slice list. A 2-D array is
one slice. The reference (``ref``, HR) always comes second, as in fastMRI's ``psnr(gt, pred)``
read with the prediction first: ``psnr(pred, ref, protocol)``.

Order of operations: convert to float64 → stack slices → centre crop (if any) → data range
and foreground mask from the *cropped* HR → metrics. So cropping inside the protocol is the
same as cropping both arrays first.

Identical prediction and reference: PSNR = ``inf`` (the MSE is 0; no warning is raised),
SSIM = 1, NMSE = 0. :func:`aggregate` then reports a mean of ``inf`` (std ``nan``) for PSNR
rather than failing, and :func:`format_mean_std` prints it as ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

DATA_RANGES: tuple[str, ...] = ("hr_max", "fixed", "slice_max")
SSIM_MODES: tuple[str, ...] = ("2d", "3d")
MASKS: tuple[str, ...] = ("none", "foreground")
METRICS: tuple[str, ...] = ("psnr", "ssim", "nmse")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class MetricProtocol:
    """How PSNR / SSIM / NMSE are computed; print :meth:`describe` beside every number.

    Attributes:
        data_range: where the peak of PSNR and the ``data_range`` of SSIM come from:
            ``"hr_max"`` (default): the maximum of the HR *volume* (after the crop);
            ``"fixed"``: ``data_range_value`` (e.g. a CT window width, 2000 HU for −1000..1000);
            ``"slice_max"``: the maximum of each HR *slice*; PSNR is then the mean of
            per-slice PSNRs. Offered only to reproduce papers that used it: it is not
            comparable with volume-peak figures (dim slices get a small peak and so a lower
            PSNR). Not allowed with ``ssim_mode="3d"``. An HR slice with max <= 0 is an error
            without a mask; with a mask it holds no foreground and is skipped.
        data_range_value: the range for ``"fixed"`` (> 0); must be ``None`` otherwise.
        ssim_mode: ``"2d"``: mean of 2-D SSIMs over slices (fastMRI); ``"3d"``: one 3-D SSIM
            over the stacked volume (``ssim_win`` in every direction; needs at least
            ``ssim_win`` slices).
        ssim_win: side of the uniform SSIM window (odd, ≥ 3; default 7).
        slice_axis: axis of the input arrays along which slices lie (ignored for 2-D input).
        crop: ``(H, W)`` centre crop of every slice, applied to prediction and reference before
            anything else (offsets ``(size - crop) // 2``, as fastMRI's ``center_crop``).
        mask: ``"none"`` or ``"foreground"``: PSNR and NMSE over foreground voxels only; SSIM =
            mean of the SSIM map (``full=True``) over foreground pixels, excluding the
            ``(ssim_win - 1) // 2`` border strip that scikit-image also leaves out (so an
            all-foreground mask gives exactly the unmasked SSIM).
        mask_threshold: foreground = HR voxels above ``range_low + mask_threshold × range``,
            with ``range`` = max(HR volume) for ``"hr_max"``/``"slice_max"`` (and
            ``range_low`` = 0: the rule is "HR > 5 % of the HR volume max") and
            ``data_range_value`` for ``"fixed"``. In [0, 1).
        range_low: for ``"fixed"`` only: the intensity at the bottom of the range (e.g.
            −1000 HU for a −1000..1000 CT window), used only for the foreground threshold
            (PSNR depends on the range width alone). ``None`` means 0. Without it a CT in HU
            would be thresholded at a fraction of its max (≈ 150 HU), dropping soft tissue.

    The arithmetic is always float64 (:attr:`dtype`).
    """

    data_range: Literal["hr_max", "fixed", "slice_max"] = "hr_max"
    data_range_value: float | None = None
    ssim_mode: Literal["2d", "3d"] = "2d"
    ssim_win: int = 7
    slice_axis: int = -1
    crop: tuple[int, int] | None = None
    mask: Literal["none", "foreground"] = "none"
    mask_threshold: float = 0.05
    range_low: float | None = None

    dtype: ClassVar[str] = "float64"

    def __post_init__(self) -> None:
        if self.data_range not in DATA_RANGES:
            raise ValueError(f"data_range must be one of {DATA_RANGES}, got {self.data_range!r}")
        if self.data_range == "fixed":
            v = self.data_range_value
            if v is None:
                raise ValueError("data_range='fixed' needs data_range_value (e.g. 2000 for a -1000..1000 HU window)")
            if not _is_number(v) or not math.isfinite(float(v)) or float(v) <= 0:
                raise ValueError(f"data_range_value must be a finite number > 0, got {v!r}")
            object.__setattr__(self, "data_range_value", float(v))
        elif self.data_range_value is not None:
            raise ValueError(
                f"data_range_value is only used with data_range='fixed' (got data_range={self.data_range!r} "
                f"and data_range_value={self.data_range_value!r})"
            )
        if self.range_low is not None:
            if self.data_range != "fixed":
                raise ValueError("range_low is only used with data_range='fixed'")
            if not _is_number(self.range_low) or not math.isfinite(float(self.range_low)):
                raise ValueError(f"range_low must be a finite number, got {self.range_low!r}")
            object.__setattr__(self, "range_low", float(self.range_low))
        if self.ssim_mode not in SSIM_MODES:
            raise ValueError(f"ssim_mode must be one of {SSIM_MODES}, got {self.ssim_mode!r}")
        if self.ssim_mode == "3d" and self.data_range == "slice_max":
            raise ValueError("data_range='slice_max' cannot be used with ssim_mode='3d' (one SSIM, one range)")
        if not _is_int(self.ssim_win) or self.ssim_win < 3 or self.ssim_win % 2 == 0:
            raise ValueError(f"ssim_win must be an odd integer >= 3, got {self.ssim_win!r}")
        if not _is_int(self.slice_axis):
            raise ValueError(f"slice_axis must be an integer, got {self.slice_axis!r}")
        if self.crop is not None:
            c = self.crop
            if (
                not isinstance(c, (tuple, list))
                or len(c) != 2
                or not all(_is_int(n) and n > 0 for n in c)
            ):
                raise ValueError(f"crop must be None or two positive integers (H, W), got {c!r}")
            object.__setattr__(self, "crop", (int(c[0]), int(c[1])))
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        t = self.mask_threshold
        if not _is_number(t) or not 0 <= float(t) < 1:
            raise ValueError(f"mask_threshold must be a number in [0, 1) (a fraction of the range), got {t!r}")
        object.__setattr__(self, "mask_threshold", float(t))

    # ------------------------------------------------------------------ description
    def _threshold_text(self) -> str:
        t = self.mask_threshold
        if self.data_range == "fixed":
            v = float(self.data_range_value)  # type: ignore[arg-type]
            low = self.range_low or 0.0
            if low:
                return f"HR > {low:g} + {t:g} × {v:g} = {low + t * v:g}"
            return f"HR > {t:g} × {v:g} = {t * v:g}"
        return f"HR > {t:g} × max(HR volume)"

    def describe(self, *, slices: str | None = None, spread: str | None = None) -> str:
        """One human line stating the protocol, to print under every table of metrics.

        ``slices`` replaces ``"slices along axis <slice_axis>"`` where the arrays scored are a
        stack built from the user's volume (say ``"axial slices (axis 2 of the volume)"``, not the
        stack's axis 0); ``spread`` replaces ``"mean ± sample std (ddof=1) over volumes"``.
        """
        masked = self.mask == "foreground"
        if self.data_range == "hr_max":
            rng = "data_range = max(HR volume)"
        elif self.data_range == "fixed":
            rng = f"data_range = {self.data_range_value:g} (fixed)"
            if self.range_low is not None:
                rng += f" from {self.range_low:g}"
        else:
            rng = (
                "data_range = max(HR slice) for each slice (paper reproduction only: "
                "not comparable with volume-peak figures)"
            )
        where = f"over foreground voxels ({self._threshold_text()})" if masked else "over the whole volume"
        if self.data_range == "slice_max":
            psnr_txt = f"PSNR = mean of per-slice PSNRs {where}, {rng}"
        else:
            psnr_txt = f"PSNR {where}, {rng}"
        w = self.ssim_win
        if self.ssim_mode == "2d":
            ssim_txt = (
                f"SSIM = mean of the 2-D SSIM maps over foreground pixels ({w}×{w} window, same data_range)"
                if masked
                else f"SSIM = mean of 2-D SSIMs over slices ({w}×{w} window, same data_range)"
            )
        else:
            ssim_txt = (
                f"SSIM = one 3-D SSIM map averaged over foreground voxels ({w}×{w}×{w} window, same data_range)"
                if masked
                else f"SSIM = one 3-D SSIM over the volume ({w}×{w}×{w} window, same data_range)"
            )
        nmse_txt = "NMSE = ||HR − SR||² / ||HR||²" + (" over foreground voxels" if masked else "")
        parts = []
        if self.crop is not None:
            parts.append(f"centre crop {self.crop[0]}×{self.crop[1]} of each slice first")
        parts += [psnr_txt, ssim_txt, nmse_txt, slices or f"slices along axis {self.slice_axis}"]
        parts.append("float64; " + (spread or "mean ± sample std (ddof=1) over volumes"))
        return "; ".join(parts)


#: the default: fastMRI's evaluate.py protocol (volume peak, mean 2-D SSIM, 7×7 window).
FASTMRI = MetricProtocol()


def ct_protocol(window: tuple[float, float] = (-1000.0, 1000.0)) -> MetricProtocol:
    """CT protocol for volumes in HU: fixed ``data_range`` = window width, foreground mask.

    Foreground = HR above ``low + 5 % of the width`` (−900 HU for the default window): air is
    left out, soft tissue and bone are kept (docs/design.md §3: about half of a head-CT slice is air).
    """
    if not isinstance(window, (tuple, list)) or len(window) != 2 or not all(_is_number(x) for x in window):
        raise ValueError(f"window must be two numbers (low, high) in HU, got {window!r}")
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"window high ({high:g}) must be greater than low ({low:g})")
    return MetricProtocol(data_range="fixed", data_range_value=high - low, range_low=low, mask="foreground")


# ---------------------------------------------------------------------- array handling
def _to_float64(x: Any, name: str) -> np.ndarray:
    """NumPy float64 copy of an array or torch tensor of any real dtype."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "is_complex"):  # torch tensor
        t = x.detach().cpu()
        if t.is_complex():
            raise ValueError(f"{name} is complex ({t.dtype}); take the magnitude first")
        return t.double().numpy()
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise ValueError(f"{name} is complex ({a.dtype}); take the magnitude first")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a.astype(np.float64)


def _stack(a: np.ndarray, protocol: MetricProtocol, name: str) -> np.ndarray:
    """``(S, H, W)`` view of ``a`` with the slices first."""
    if a.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (H, W), got shape {a.shape}")
    if a.ndim == 2:
        return a[None]
    ax = protocol.slice_axis
    if not -a.ndim <= ax < a.ndim:
        raise ValueError(f"slice_axis {ax} is out of range for {name} with shape {a.shape}")
    moved = np.moveaxis(a, ax, 0)
    lead = moved.shape[:-2]
    if protocol.ssim_mode == "3d" and sum(1 for n in lead if n > 1) > 1:
        raise ValueError(
            f"ssim_mode='3d' needs one volume, but {name} with shape {a.shape} and slice_axis {ax} "
            f"has several non-singleton axes besides the slice plane"
        )
    return moved.reshape(-1, *moved.shape[-2:])


def _centre_crop(a: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    h, w = a.shape[-2:]
    ch, cw = crop
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}×{cw} is larger than the slices ({h}×{w})")
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[:, top : top + ch, left : left + cw]


@dataclass
class _Prepared:
    pred: np.ndarray  # (S, H, W) float64
    ref: np.ndarray  # (S, H, W) float64
    mask: np.ndarray | None  # (S, H, W) bool, or None for the whole volume
    data_range: float | np.ndarray  # float, or (S,) for slice_max
    protocol: MetricProtocol


def _prepare(pred: Any, ref: Any, protocol: MetricProtocol | None) -> _Prepared:
    protocol = FASTMRI if protocol is None else protocol
    if not isinstance(protocol, MetricProtocol):
        raise ValueError(f"protocol must be a MetricProtocol, got {type(protocol).__name__}")
    p = _to_float64(pred, "pred")
    r = _to_float64(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch: pred has shape {tuple(p.shape)}, ref has shape {tuple(r.shape)}")
    if p.size == 0:
        raise ValueError(f"empty arrays (shape {tuple(p.shape)})")
    if not np.all(np.isfinite(r)):
        raise ValueError("ref contains NaN or infinite values")
    if not np.all(np.isfinite(p)):
        raise ValueError("pred contains NaN or infinite values (diverged model?)")
    p, r = _stack(p, protocol, "pred"), _stack(r, protocol, "ref")
    if protocol.crop is not None:
        p, r = _centre_crop(p, protocol.crop), _centre_crop(r, protocol.crop)
    vol_max = float(r.max())
    dr: float | np.ndarray
    if protocol.data_range == "fixed":
        dr = float(protocol.data_range_value)  # type: ignore[arg-type]
    else:
        if not vol_max > 0:
            raise ValueError(
                f"max(HR) = {vol_max:g}: data_range={protocol.data_range!r} needs a positive HR maximum "
                "(use data_range='fixed' for data that is not positive)"
            )
        if protocol.data_range == "hr_max":
            dr = vol_max
        else:
            dr = r.reshape(r.shape[0], -1).max(axis=1)
            bad = np.flatnonzero(dr <= 0)
            if bad.size and protocol.mask == "none":  # with a mask they hold no foreground: skipped
                raise ValueError(
                    f"data_range='slice_max': HR slice(s) {bad.tolist()} have max <= 0 (empty slices); "
                    "drop them before scoring"
                )
    mask = None
    if protocol.mask == "foreground":
        mask = _foreground(r, protocol)
        if not mask.any():
            raise ValueError(f"no foreground voxel ({protocol._threshold_text()}) in the reference")
    return _Prepared(p, r, mask, dr, protocol)


def foreground_mask(ref: Any, protocol: MetricProtocol) -> np.ndarray:
    """Boolean foreground of the HR ``ref`` as the protocol defines it (see ``mask_threshold``).

    Returned as ``(S, H, W)`` (slices first, after the crop), the layout the metrics use.
    """
    r = _stack(_to_float64(ref, "ref"), protocol, "ref")
    if protocol.crop is not None:
        r = _centre_crop(r, protocol.crop)
    return _foreground(r, protocol)


def _foreground(r: np.ndarray, protocol: MetricProtocol) -> np.ndarray:
    """Foreground of the stacked, cropped float64 HR ``r``."""
    t = protocol.mask_threshold
    if protocol.data_range == "fixed":
        thr = (protocol.range_low or 0.0) + t * float(protocol.data_range_value)  # type: ignore[arg-type]
    else:
        thr = t * float(r.max())
    return r > thr


# ---------------------------------------------------------------------- metrics
def _psnr_value(data_range: float, mse: float) -> float:
    if mse == 0:
        return math.inf
    return float(10 * np.log10((data_range**2) / mse))  # same formula as skimage


def _psnr(pp: _Prepared) -> float:
    sq = (pp.ref - pp.pred) ** 2
    if pp.protocol.data_range != "slice_max":
        mse = float(sq[pp.mask].mean()) if pp.mask is not None else float(sq.mean())
        return _psnr_value(float(pp.data_range), mse)
    ranges = np.asarray(pp.data_range, dtype=np.float64)
    values = []
    for i in range(sq.shape[0]):
        if pp.mask is None:
            values.append(_psnr_value(float(ranges[i]), float(sq[i].mean())))
        elif pp.mask[i].any():  # slices without foreground carry no PSNR
            values.append(_psnr_value(float(ranges[i]), float(sq[i][pp.mask[i]].mean())))
    return float(np.mean(values))


def _ssim(pp: _Prepared) -> float:
    from skimage.metrics import structural_similarity

    proto = pp.protocol
    win = proto.ssim_win
    pad = (win - 1) // 2
    s, h, w = pp.ref.shape
    if h < win or w < win:
        raise ValueError(f"SSIM with a {win}×{win} window needs slices of at least {win}×{win}, got {h}×{w}")
    if proto.ssim_mode == "3d":
        if s < win:
            raise ValueError(f"3-D SSIM with window {win} needs at least {win} slices, got {s}")
        if pp.mask is None:
            return float(
                structural_similarity(
                    pp.ref, pp.pred, data_range=float(pp.data_range), win_size=win, gaussian_weights=False
                )
            )
        _, smap = structural_similarity(
            pp.ref, pp.pred, data_range=float(pp.data_range), win_size=win, gaussian_weights=False, full=True
        )
        inner = (slice(pad, s - pad), slice(pad, h - pad), slice(pad, w - pad))
        m = pp.mask[inner]
        if not m.any():
            raise ValueError("no foreground voxel outside the SSIM border strip")
        return float(smap[inner][m].mean())
    ranges = np.broadcast_to(np.asarray(pp.data_range, dtype=np.float64), (s,))
    if pp.mask is None:
        vals = [
            structural_similarity(
                pp.ref[i], pp.pred[i], data_range=float(ranges[i]), win_size=win, gaussian_weights=False
            )
            for i in range(s)
        ]
        return float(np.mean(vals))
    total, count = 0.0, 0
    inner2 = (slice(pad, h - pad), slice(pad, w - pad))
    for i in range(s):
        m = pp.mask[i][inner2]
        if not m.any():
            continue
        _, smap = structural_similarity(
            pp.ref[i], pp.pred[i], data_range=float(ranges[i]), win_size=win, gaussian_weights=False, full=True
        )
        sel = smap[inner2][m]
        total += float(sel.sum())
        count += int(sel.size)
    if count == 0:
        raise ValueError("no foreground pixel outside the SSIM border strip")
    return total / count


def _nmse(pp: _Prepared) -> float:
    diff = (pp.ref - pp.pred) ** 2
    ref2 = pp.ref**2
    if pp.mask is not None:
        diff, ref2 = diff[pp.mask], ref2[pp.mask]
    den = float(ref2.sum())
    if den == 0:
        raise ValueError("NMSE is undefined: the reference is zero everywhere it is scored")
    return float(diff.sum()) / den


def psnr(pred: Any, ref: Any, protocol: MetricProtocol | None = None) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` when ``pred`` equals ``ref``).

    ``10·log10(data_range² / MSE)`` with the MSE over the whole (cropped, optionally masked)
    volume; for ``data_range="slice_max"`` the mean of per-slice PSNRs. ``None`` = :data:`FASTMRI`.
    """
    return _psnr(_prepare(pred, ref, protocol))


def ssim(pred: Any, ref: Any, protocol: MetricProtocol | None = None) -> float:
    """Structural similarity (scikit-image, uniform window) as the protocol says (2-D mean or 3-D)."""
    return _ssim(_prepare(pred, ref, protocol))


def nmse(pred: Any, ref: Any, protocol: MetricProtocol | None = None) -> float:
    """Normalised MSE ``||ref − pred||² / ||ref||²`` (over foreground voxels when masked)."""
    return _nmse(_prepare(pred, ref, protocol))


def evaluate_volume(pred: Any, ref: Any, protocol: MetricProtocol | None = None) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` of one volume (the arrays are prepared once)."""
    pp = _prepare(pred, ref, protocol)
    return {"psnr": _psnr(pp), "ssim": _ssim(pp), "nmse": _nmse(pp)}


# ---------------------------------------------------------------------- aggregation
def aggregate(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and std of each metric over volumes (one row per volume).

    The std is the *sample* std (``ddof=1``) when there are two volumes or more, and 0.0 for
    a single volume. A metric with a non-finite value (PSNR = ``inf`` for a perfect volume)
    gets that mean (``inf``; ``nan`` if ``+inf`` and ``-inf`` or ``nan`` mix) and a ``nan``
    std, without warnings: the table shows ``inf`` rather than a made-up finite figure.

    Raises:
        ValueError: no rows, or rows that do not all have the same metric names.
    """
    if not rows:
        raise ValueError("aggregate() needs at least one row (one dict of metrics per volume)")
    keys = list(rows[0])
    for i, row in enumerate(rows):
        if set(row) != set(keys):
            raise ValueError(f"row {i} has metrics {sorted(row)}, row 0 has {sorted(keys)}")
    out: dict[str, tuple[float, float]] = {}
    for k in keys:
        vals = np.array([float(row[k]) for row in rows], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            mean = float(vals.mean())
        if not np.all(np.isfinite(vals)):
            std = math.nan
        elif vals.size > 1:
            std = float(vals.std(ddof=1))
        else:
            std = 0.0
        out[k] = (mean, std)
    return out


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"34.56 ± 0.12"`` for tables; a non-finite mean prints alone (``"inf"``, ``"nan"``)."""
    if not _is_int(digits) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    mean, std = float(mean), float(std)
    if not math.isfinite(mean):
        return str(mean)
    if not math.isfinite(std):
        return f"{mean:.{digits}f} ± {std}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


__all__ = [
    "DATA_RANGES",
    "FASTMRI",
    "MASKS",
    "METRICS",
    "SSIM_MODES",
    "MetricProtocol",
    "aggregate",
    "ct_protocol",
    "evaluate_volume",
    "foreground_mask",
    "format_mean_std",
    "nmse",
    "psnr",
    "ssim",
]
