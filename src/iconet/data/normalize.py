"""Intensity normalisation that can be undone (docs/design.md §2).

Every method maps ``low → 0`` and ``high → 1`` linearly: ``y = (x - low) / (high - low)``;
what differs is where ``low`` and ``high`` come from:

* ``"percentile"`` (MRI, default): ``low`` fixed (default 0), ``high`` = the volume's
  ``percentile``-th percentile (default 99.5) over all voxels (background included), and
  clipped to ``[0, 1]`` by default: the brightest 0.5 % (fat, vessels) saturate at 1. This is
  the protocol behind the reference figures of docs/design.md §7 (HR max = 1 there; without the clip
  Colin27's max is 1.43 and every PSNR reads 3.1 dB higher). ``clip=False`` keeps them.
* ``"window"`` (CT): a fixed window in HU, ``low``/``high`` given; clipped to ``[0, 1]``
  (values outside the window are lost, by design of a window).
* ``"range"`` (PET): a recorded range, e.g. SUV ``[0, 20]`` given as ``low``/``high``, or, if
  not given, the volume's ``[min, max]``; not clipped by default.

The :class:`Normalization` record keeps the method and the values actually used, so any
output can be put back in scanner units with :func:`denormalize` before it is scored.

**Which volume the statistic comes from** (``NormalizeConfig.reference``; percentile, and
range without given bounds). ``iconet infer`` only has the LR scan, so it can only take the
statistic on that LR. ``reference: lr`` makes training, validation and ``iconet eval`` do the
same: the statistic is taken on the LR volume (:func:`lr_volume`: every slice along the slice
axis degraded once, mask seeded from the volume's name, or from the draw's key in
``iconet eval``) and HR and LR are both scaled by it. ``reference: hr`` takes it on the HR
volume: the convention of every model trained before this field existed (a config without the
key means ``hr``), which ``iconet infer`` cannot reproduce: on Colin27 at x2 the LR's 99.5th
percentile is about 8 % below the HR's, so such a model sees its inputs that much brighter than
in training (measured: benchmarks/multidraw.py). New recipes say ``reference: lr``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

METHODS: tuple[str, ...] = ("percentile", "window", "range")
REFERENCES: tuple[str, ...] = ("hr", "lr")


@dataclass
class NormalizeConfig:
    """How to normalise a volume (build with ``iconet.config.from_dict``).

    Attributes:
        method: ``"percentile"``, ``"window"`` or ``"range"`` (see the module docstring).
        percentile: the high percentile for ``"percentile"`` (0–100).
        low: lower value mapped to 0 (``"percentile"``: default 0; ``"window"``: required;
            ``"range"``: default the volume minimum).
        high: upper value mapped to 1 (``"window"``: required; ``"range"``: default the
            volume maximum; ignored by ``"percentile"``).
        clip: clip the result to ``[0, 1]``; ``None`` means True for ``"percentile"`` and
            ``"window"``, False for ``"range"``.
        reference: the volume the statistic is taken on (see the module docstring): ``"lr"``
            (the LR volume; what ``iconet infer`` can compute; new recipes) or ``"hr"`` (the
            HR volume; the default only so that configs saved without the key keep their
            meaning). Ignored where nothing is measured (``"window"``, ``"range"`` with both
            bounds given).
    """

    method: Literal["percentile", "window", "range"] = "percentile"
    percentile: float = 99.5
    low: float | None = None
    high: float | None = None
    clip: bool | None = None
    reference: Literal["hr", "lr"] = "hr"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown normalisation method {self.method!r}; expected one of {METHODS}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must lie in (0, 100], got {self.percentile}")
        if self.method == "window" and (self.low is None or self.high is None):
            raise ValueError("a 'window' normalisation needs both low and high (e.g. -1000 and 1000 HU)")
        if self.low is not None and self.high is not None and self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be 'hr' or 'lr' (the volume the statistic is taken on), "
                             f"got {self.reference!r}")

    @property
    def measures(self) -> bool:
        """Whether a statistic is taken on a volume (else every value is given)."""
        return self.method == "percentile" or (self.method == "range" and (self.low is None or self.high is None))

    @property
    def needs_lr(self) -> bool:
        """Whether the statistic must be taken on an LR volume (:func:`lr_volume`)."""
        return self.reference == "lr" and self.measures


def describe_reference(cfg: NormalizeConfig | dict[str, Any] | None, *, short: bool = False) -> str:
    """One line saying which volume a model's normalisation statistic came from in training
    (model cards; ``short``: a clause for ``iconet model``); a mapping without ``reference`` is
    the old ``hr``."""
    if cfg is None:
        cfg = NormalizeConfig()
    elif isinstance(cfg, dict):
        cfg = NormalizeConfig(**{k: v for k, v in cfg.items() if k in NormalizeConfig.__dataclass_fields__})
    if not cfg.measures:
        if short:
            return "fixed values, no statistic"
        return f"fixed values ({cfg.method}: low={cfg.low}, high={cfg.high}): no statistic is taken, train and infer agree"
    if short:
        return ("statistic of the LR volume (reference: lr), as iconet infer takes it" if cfg.reference == "lr" else
                "statistic of the HR volume (reference: hr, older): iconet infer takes it on the LR, inputs run brighter")
    what = f"the {cfg.percentile:g}th percentile" if cfg.method == "percentile" else "the min/max"
    if cfg.reference == "lr":
        return f"reference: lr ({what} of the LR volume in training, validation, eval and infer alike)"
    return (f"reference: hr ({what} of the HR volume in training, the convention of models trained before "
            "`reference` existed; `iconet infer` can only take it on the LR it is given, so inputs reach the "
            "model a few per cent brighter than in training: benchmarks/multidraw.py measures the cost)")


def default_config(modality: str | None) -> NormalizeConfig:
    """Per-modality defaults: MR (and unknown) → 99.5th percentile; CT → window −1000..1000 HU
    (clipped); PT → 99.5th percentile (use ``method="range"`` with SUV values where the
    volume is in SUV)."""
    m = (modality or "MR").upper()
    if m == "CT":
        return NormalizeConfig(method="window", low=-1000.0, high=1000.0)
    return NormalizeConfig(method="percentile", percentile=99.5)


@dataclass(frozen=True)
class Normalization:
    """What was done to a volume: ``y = (x - low) / (high - low)``, optionally clipped.

    ``percentile`` is set for the ``"percentile"`` method (the value ``high`` came from).
    """

    method: str
    low: float
    high: float
    percentile: float | None = None
    clip: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON/YAML-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalization":
        return cls(
            method=str(d["method"]),
            low=float(d["low"]),
            high=float(d["high"]),
            percentile=None if d.get("percentile") is None else float(d["percentile"]),
            clip=bool(d.get("clip", False)),
        )


def lr_volume(
    volume_array: Any,
    degradation: Any,
    axis: int,
    key: str,
    *,
    fit: Literal["crop", "pad"] = "crop",
) -> np.ndarray:
    """The LR volume a ``reference: lr`` statistic is taken on, in the volume's own units.

    Every slice of ``volume_array`` along ``axis`` (float32), centre-cropped (``fit="crop"``)
    or zero-padded (``"pad"``) to multiples of ``2·scale`` as the datasets do, degraded once
    by ``degradation`` (:class:`iconet.data.degrade.Degradation`) in ``"seeded"`` mode: the
    mask (and noise) seeded from ``key`` — the volume's name in training and validation, the
    draw's key in ``iconet eval`` (its draw 0 is the volume's name: the same LR).

    k-space truncation with a mask and bicubic downsampling commute with a positive scale, so
    this is the LR of the raw volume. Noise kinds add noise in *normalised* units: for them the
    volume is divided by its HR statistic first and the LR multiplied back.

    Returns:
        ``(S, h, w)`` float32, slices first.
    """
    import dataclasses

    import torch

    from iconet.data.degrade import crop_to_multiple, pad_to_multiple

    x = np.moveaxis(np.asarray(volume_array, dtype=np.float32), axis, 0)
    hr = torch.from_numpy(np.ascontiguousarray(x))
    m = degradation.multiple
    hr = crop_to_multiple(hr, m) if fit == "crop" else pad_to_multiple(hr, m)
    deg = dataclasses.replace(degradation, mask_mode="seeded")
    unit = 1.0
    if deg.kind in ("gaussian", "poisson"):
        unit = float(np.percentile(x, 99.5)) or 1.0
    lr = deg.degrade(hr / unit if unit != 1.0 else hr, key)["lr"]
    return (lr * unit if unit != 1.0 else lr).numpy().astype(np.float32, copy=False)


def normalize(
    volume_array: Any, cfg: NormalizeConfig | None = None, *, stats_from: Any = None
) -> tuple[np.ndarray, Normalization]:
    """Normalise a whole volume; returns ``(float32 array, Normalization)``.

    Args:
        volume_array: array-like of any real dtype (the whole volume: per-volume statistics).
        cfg: the method; ``None`` means the MRI default (99.5th percentile).
        stats_from: take the statistic (percentile; range min/max) on this array instead of
            ``volume_array``: the LR volume (:func:`lr_volume`) when ``cfg.reference`` is
            ``"lr"``. The caller decides: :func:`normalize` never degrades anything itself.

    Raises:
        ValueError: the array is empty, not finite, or its range is degenerate (e.g. all
            zero: the percentile is 0 and nothing can be divided by it).
    """
    cfg = cfg or NormalizeConfig()
    x = np.asarray(volume_array, dtype=np.float64)
    if x.size == 0:
        raise ValueError("cannot normalise an empty array")
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot normalise an array with NaN or infinite values (clean it first)")
    src = x
    if stats_from is not None:
        src = np.asarray(stats_from, dtype=np.float64)
        if src.size == 0 or not np.all(np.isfinite(src)):
            raise ValueError("cannot take a normalisation statistic on an empty or non-finite array")
    pct: float | None = None
    if cfg.method == "percentile":
        low = 0.0 if cfg.low is None else float(cfg.low)
        pct = float(cfg.percentile)
        high = float(np.percentile(src, pct))
    elif cfg.method == "window":
        low, high = float(cfg.low), float(cfg.high)  # type: ignore[arg-type]
    else:
        low = float(src.min()) if cfg.low is None else float(cfg.low)
        high = float(src.max()) if cfg.high is None else float(cfg.high)
    if not high > low:
        raise ValueError(
            f"degenerate intensity range for {cfg.method!r} normalisation: low={low}, high={high}"
            + (f" (the {pct}th percentile)" if pct is not None else "")
        )
    clip = cfg.method in ("percentile", "window") if cfg.clip is None else bool(cfg.clip)
    norm = Normalization(method=cfg.method, low=low, high=high, percentile=pct, clip=clip)
    y = (x - low) / (high - low)
    if clip:
        y = np.clip(y, 0.0, 1.0)
    return y.astype(np.float32), norm


def denormalize(array: Any, norm: Normalization | dict[str, Any]) -> Any:
    """Undo :func:`normalize`: ``x = y·(high - low) + low``.

    Works on NumPy arrays and torch tensors alike (same type out). Clipped values cannot be
    recovered beyond the clip (they come back as ``low`` or ``high``).
    """
    if isinstance(norm, dict):
        norm = Normalization.from_dict(norm)
    return array * (norm.high - norm.low) + norm.low
