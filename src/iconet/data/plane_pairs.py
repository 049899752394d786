"""Training pairs for a through-plane model, cut from the scan's own in-plane slices (SMORE).

A thick-slice scan is sharp within each slice. Blurring an in-plane slice along one of its
axes with the slice profile and sampling it at the slice spacing gives exactly the degradation
the through-plane axis suffered; a model that undoes it there undoes it across the slices. Each
pair is a patch of one in-plane slice, with rows along the degraded in-plane axis and columns
along the other:

* ``input`` — the thick samples, resampled onto the model's input grid (rows every
  ``input_spacing`` mm; exactly the thick samples when that is the slice spacing);
* ``hr[k]`` — the in-plane slice sampled on the grid of stage ``k + 1``'s output (rows every
  ``input_spacing / 2^(k+1)`` mm), ``hr[-1]`` the model's output grid;
* ``clean[k]`` — the in-plane slice sampled (no blur) on the input grid of stage ``k + 1``: the
  artifact-free prior the reconstruction branch is taught to give.

Input row ``q`` sits ``q·input_spacing`` mm past the first thick sample, output row ``i``
``i·input_spacing/scale`` mm past it: the geometry :mod:`iconet.isotropic` applies the model
with. Where a position falls on a whole in-plane voxel the value is taken as is; elsewhere it is
interpolated (cubic B-spline, :func:`~iconet.data.through_plane.sample_axis`).

Patches stay inside the slice, so no border is invented. A fraction ``focus`` of the patches is
drawn where the slice has structure (probability proportional to the local mean of its gradient
magnitude, any contrast or sign), the rest uniformly: air around a head teaches nothing, and a
fit on a time budget cannot spend steps on it. Everything is drawn from a
``numpy.random.Generator``: the same seed gives the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iconet.data.through_plane import blur_axis, sample_axis
from iconet.ops.scale import num_stages

_MARGIN = 2  # thick samples beyond the input rows on each side (cubic B-spline taps)


@dataclass(frozen=True)
class PairGeometry:
    """How thick samples relate to the model's grids (all spacings in mm).

    Attributes:
        slice_spacing: mm between thick samples.
        fwhm: FWHM of the Gaussian slice profile.
        input_spacing: mm between the model's input rows.
        scale: the model's upscaling factor (a power of two).
        rows: input rows per patch; columns: columns per patch.
        output_spacing: mm between the rows of the volume made isotropic. When it is not the
            model's output spacing (``input_spacing / scale``), pairs also hold ``final``: the
            slice on that grid, from the first output row on, for a loss after resampling.
        focus: fraction of patches drawn where the slices have structure (module docstring).
    """

    slice_spacing: float
    fwhm: float
    input_spacing: float
    scale: int
    rows: int
    columns: int
    output_spacing: float | None = None
    focus: float = 0.0

    @property
    def stages(self) -> int:
        return num_stages(self.scale)


class InPlanePairs:
    """Pairs from the in-plane slices of a normalised thick-slice volume.

    Args:
        volume: ``(N, A, B)`` float array, the slices along axis 0 (already normalised).
        spacing: ``(d_A, d_B)`` in mm, the in-plane spacings.
        geometry: see :class:`PairGeometry`.
        slices: which slices to cut pairs from (default: all), e.g. to hold some out.

    Pairs degrade axis ``A`` (columns along ``B``) or axis ``B`` (columns along ``A``), each of
    the two whenever it is long enough for a patch.
    """

    def __init__(self, volume: np.ndarray, spacing: tuple[float, float], geometry: PairGeometry,
                 slices: list[int] | None = None) -> None:
        self.g = geometry
        out = geometry.input_spacing / geometry.scale
        #: output rows of the model per row of ``final`` (None: the model's rows are final)
        self.final_step = None if geometry.output_spacing is None or \
            abs(geometry.output_spacing / out - 1) < 1e-9 else geometry.output_spacing / out
        vol = np.asarray(volume, dtype=np.float32)
        if vol.ndim != 3:
            raise ValueError(f"expected an (N, A, B) volume, got shape {vol.shape}")
        self.slices = list(range(vol.shape[0])) if slices is None else [int(s) for s in slices]
        if not self.slices:
            raise ValueError("no slices to cut training pairs from")
        self.views: list[tuple[np.ndarray, np.ndarray, float]] = []  # (hr, blurred, spacing): rows degraded
        self._focus: list[tuple[np.ndarray, tuple[int, int, int], int]] = []  # (cumulative weights, shape, stride)
        structure = _structure(vol[self.slices]) if geometry.focus > 0 else None
        for axis, d in ((1, spacing[0]), (2, spacing[1])):
            hr = np.moveaxis(vol[self.slices], axis, 1)  # (n, rows: degraded axis, columns)
            if hr.shape[2] < geometry.columns or self._span(d) > hr.shape[1] - 1:
                continue
            self.views.append((hr, blur_axis(hr, 1, geometry.fwhm / d), float(d)))
            if structure is not None:
                self._focus.append(self._anchors(np.moveaxis(structure, axis, 1), d))
        if not self.views:
            raise ValueError(
                f"in-plane slices of {vol.shape[1]}x{vol.shape[2]} voxels are too small for training patches of "
                f"{geometry.rows} rows every {geometry.input_spacing:g} mm and {geometry.columns} columns")

    def _starts(self, length: int, d: float) -> tuple[int, int]:
        """First and last in-plane voxel where a patch's input row 0 may sit (margins inside)."""
        g = self.g
        margin = (_MARGIN + 1) * g.slice_spacing / d
        return math.ceil(margin), math.floor(length - 1 - margin - (g.rows - 1) * g.input_spacing / d)

    def _anchors(self, structure: np.ndarray, d: float) -> tuple[np.ndarray, tuple[int, int, int], int]:
        """Cumulative sampling weights of every (slice, start row, first column) of a view:
        the structure at the patch's centre. Strided by 2 on large slices (memory)."""
        n, length, width = structure.shape
        lo, hi = self._starts(length, d)
        half_r = int(round((self.g.rows - 1) * self.g.input_spacing / d / 2))
        stride = 1 if n * (hi - lo + 1) * (width - self.g.columns + 1) <= 4_000_000 else 2
        w = structure[:, lo + half_r:hi + half_r + 1:stride, self.g.columns // 2:width - self.g.columns // 2 + 1:stride]
        w = w[:, :, : (width - self.g.columns) // stride + 1]
        return np.cumsum(w.ravel(), dtype=np.float64), w.shape, stride

    def _span(self, d: float) -> float:
        """In-plane voxels one patch needs along the degraded axis, margins included."""
        g = self.g
        return ((g.rows - 1) * g.input_spacing + 2 * (_MARGIN + 1) * g.slice_spacing) / d

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, list[np.ndarray]]:
        """``batch`` pairs: ``{"input": [(B,1,h,w)], "hr": [...], "clean": [...]}`` (float32),
        and ``"final": [(B,1,n,w)]`` when the output grid is not the model's."""
        out: dict[str, list[list[np.ndarray]]] = {"input": [[]], "hr": [[] for _ in range(self.g.stages)],
                                                 "clean": [[] for _ in range(self.g.stages)]}
        if self.final_step is not None:
            out["final"] = [[]]
        for _ in range(batch):
            v = int(rng.integers(len(self.views)))
            anchor = None
            if self._focus and rng.random() < self.g.focus:
                cum, shape, stride = self._focus[v]
                z, r, c = np.unravel_index(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), shape)
                lo, _ = self._starts(self.views[v][0].shape[1], self.views[v][2])
                anchor = (int(z), lo + stride * int(r), stride * int(c))
            pair = self._one(rng, *self.views[v], anchor=anchor)
            out["input"][0].append(pair["input"])
            for k in range(self.g.stages):
                out["hr"][k].append(pair["hr"][k])
                out["clean"][k].append(pair["clean"][k])
            if "final" in pair:
                out["final"][0].append(pair["final"])
        return {key: [np.stack(items)[:, None] for items in lists] for key, lists in out.items()}

    def _one(self, rng: np.random.Generator, hr: np.ndarray, blurred: np.ndarray, d: float,
             anchor: tuple[int, int, int] | None = None) -> dict:
        """One pair; ``anchor`` = (slice, start row, first column) in the unflipped slice, else uniform."""
        g = self.g
        n, length, width = hr.shape
        step_lr, step_in = g.slice_spacing / d, g.input_spacing / d
        span = (g.rows - 1) * step_in
        lo, hi = self._starts(length, d)
        if anchor is None:
            z, start, c0 = int(rng.integers(n)), int(rng.integers(lo, hi + 1)), int(rng.integers(width - g.columns + 1))
        else:
            z, start, c0 = anchor
        strip_hr = hr[z, :, c0:c0 + g.columns]
        strip_bl = blurred[z, :, c0:c0 + g.columns]
        # Either direction along both axes is a valid pair (the strip is flipped before sampling;
        # the window keeps covering the same voxels).
        if rng.integers(2):
            strip_hr, strip_bl = strip_hr[::-1], strip_bl[::-1]
            start = min(max(int(math.floor(length - 1 - span - start)), lo), hi)
        if rng.integers(2):
            strip_hr, strip_bl = strip_hr[:, ::-1], strip_bl[:, ::-1]
        # Input row 0 (at in-plane voxel `start`) lies `phase` thick samples past a thick sample:
        # 0 when input rows are the thick samples, else the fraction that row q of a scan has.
        ratio = step_in / step_lr
        phase = 0.0 if abs(ratio - 1) < 1e-9 else float((int(rng.integers(1 << 20)) * ratio) % 1.0)
        m_count = int(math.ceil(span / step_lr + phase)) + 2 * _MARGIN + 1
        lr_first = start - (phase + _MARGIN) * step_lr
        lr = sample_axis(strip_bl, 0, lr_first, step_lr, m_count)
        x = sample_axis(lr, 0, phase + _MARGIN, ratio, g.rows)
        hrs, cleans = [], []
        for k in range(g.stages):
            f = 2 ** k
            cleans.append(sample_axis(strip_hr, 0, start, step_in / f, g.rows * f))
            hrs.append(sample_axis(strip_hr, 0, start, step_in / (2 * f), g.rows * 2 * f))
        pair = {"input": x, "hr": hrs, "clean": cleans}
        if self.final_step is not None:
            n_final = int(math.floor((g.rows * g.scale - 1) / self.final_step + 1e-9)) + 1
            pair["final"] = sample_axis(strip_hr, 0, start, self.final_step * step_in / g.scale, n_final)
        return pair


def _structure(vol: np.ndarray) -> np.ndarray:
    """Local mean gradient magnitude of each in-plane slice of ``vol (N, A, B)`` (Sobel, then a
    Gaussian of 4 voxels), plus 1e-6 so that no patch is impossible."""
    from scipy import ndimage

    g = np.hypot(ndimage.sobel(vol, axis=1), ndimage.sobel(vol, axis=2))
    return ndimage.gaussian_filter(g, (0, 4, 4)) + 1e-6


__all__ = ["InPlanePairs", "PairGeometry"]
