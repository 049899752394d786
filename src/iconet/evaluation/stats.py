"""Means and 95 % intervals over (volume, mask draw) units, and paired differences between models.

``iconet eval`` scores every model on K seeded mask draws of every volume. The draws of one
volume share its anatomy, so they are not independent of each other; the volumes are. The
interval therefore depends on how many volumes there are:

* **one volume, K ≥ 2 draws**: Student-t interval over the K draw values (df = K − 1). It
  says how much the score moves with the undersampling mask on *this* volume, nothing about
  other subjects.
* **V ≥ 2 volumes**: Student-t interval over the V per-volume means (each the mean of that
  volume's draws; df = V − 1): the cluster-level interval, with volumes as the independent
  units and the draw spread inside each volume mean. With few volumes it is wide, as it should be.
* **one unit** (one volume, one draw): no interval (``low`` and ``high`` are ``nan``).

A paired difference (model − reference on the same volumes and the same draws) takes the same
interval over the per-unit differences; a lead is *claimed* only where that interval excludes 0.
The mean is the plain mean over all units (equal to the mean of volume means: every volume has
the same K).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided ``level`` interval, with the units it came from."""

    mean: float
    low: float
    high: float
    n_volumes: int
    n_draws: int
    method: str

    @property
    def n(self) -> int:
        return self.n_volumes * self.n_draws

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (self.low > 0 or self.high < 0)


def method_text(n_volumes: int, n_draws: int) -> str:
    """The interval rule used for ``n_volumes`` volumes of ``n_draws`` draws each (one phrase)."""
    if n_volumes * n_draws < 2:
        return "one volume and one draw: no interval"
    if n_volumes == 1:
        return f"95 % t-interval over the {n_draws} draws of the one volume (df {n_draws - 1}; mask spread only)"
    return (f"95 % t-interval over the {n_volumes} per-volume means of {n_draws} draw{'s' if n_draws > 1 else ''} "
            f"(volumes are the independent units; df {n_volumes - 1})")


def _t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + LEVEL / 2, df))


def interval(values: Mapping[str, Sequence[float]]) -> Interval:
    """Mean and 95 % interval of a metric given per volume as its draws' values (see the module).

    Every volume must have the same number of draws. Non-finite values (PSNR = inf of a perfect
    output) give their mean and a ``nan`` interval.
    """
    if not values:
        raise ValueError("interval() needs at least one volume")
    draws = {len(v) for v in values.values()}
    if len(draws) != 1 or 0 in draws:
        raise ValueError(f"every volume needs the same, non-zero number of draws, got {sorted(draws)}")
    k, n_vol = draws.pop(), len(values)
    arr = np.array([[float(x) for x in v] for v in values.values()], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(arr.mean())
    method = method_text(n_vol, k)
    if not np.all(np.isfinite(arr)) or arr.size < 2:
        return Interval(mean, math.nan, math.nan, n_vol, k, method)
    units = arr[0] if n_vol == 1 else arr.mean(axis=1)
    half = _t_quantile(units.size - 1) * float(units.std(ddof=1)) / math.sqrt(units.size)
    return Interval(mean, mean - half, mean + half, n_vol, k, method)


def paired(model: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]]) -> Interval:
    """The interval of ``model − reference`` over the same (volume, draw) units."""
    if set(model) != set(reference):
        raise ValueError(f"paired(): the two models were scored on different volumes ({sorted(model)} vs {sorted(reference)})")
    diffs = {}
    for v in model:
        a, b = model[v], reference[v]
        if len(a) != len(b):
            raise ValueError(f"paired(): volume {v!r} has {len(a)} draws for one model and {len(b)} for the other")
        diffs[v] = [float(x) - float(y) for x, y in zip(a, b)]
    return interval(diffs)


def claim(diff: Interval, higher_is_better: bool = True) -> str:
    """``"lead"`` when the paired interval lies above 0 (below, for a lower-is-better metric),
    ``"trails"`` when it lies on the other side, ``"no claim"`` when it holds 0 or is undefined."""
    if not diff.excludes_zero():
        return "no claim"
    above = diff.low > 0
    return "lead" if above == higher_is_better else "trails"


def format_interval(iv: Interval, digits: int = 2, *, signed: bool = False) -> str:
    """``"24.10 [23.80, 24.40]"``; one unit: the mean alone with ``(n = 1)``; non-finite: the mean."""
    sign = "+" if signed else ""
    head = f"{iv.mean:{sign}.{digits}f}" if math.isfinite(iv.mean) else str(iv.mean)
    if iv.n < 2:
        return f"{head} (n = 1)"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return head
    return f"{head} [{iv.low:{sign}.{digits}f}, {iv.high:{sign}.{digits}f}]"


__all__ = ["LEVEL", "Interval", "claim", "format_interval", "interval", "method_text", "paired"]
