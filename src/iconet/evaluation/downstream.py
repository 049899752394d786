"""Downstream check: does SR keep the tissue segmentation of HR? (``iconet eval --downstream``)

The model
---------
A fixed, three-class intensity model fitted on the HR volume alone, then applied unchanged to
HR and to every model's output:

* **background / foreground**: the metric protocol's foreground rule
  (:func:`iconet.evaluation.metrics.foreground_mask`): HR above ``mask_threshold × max(HR
  volume)`` (5 % by default; for ``data_range="fixed"`` protocols ``range_low +
  mask_threshold × data_range_value``). The threshold is a number fixed from HR, so an
  output voxel that falls below it is background.
* **tissue classes**: ``skimage.filters.threshold_multiotsu(HR[foreground], classes=3)`` gives
  two thresholds ``t1 < t2``; foreground voxels ``<= t1`` are class 1, ``(t1, t2]`` class 2,
  ``> t2`` class 3.

Labels (:data:`TISSUES`): ``0`` background, ``1`` CSF, ``2`` grey matter (GM), ``3`` white
matter (WM). The names assume **T1 contrast ordering, CSF < GM < WM**; on T2/FLAIR/PD, CT or
PET the three classes are just dark / middle / bright foreground, and the names are wrong.

Dice (:func:`dice_per_class`) of an output's segmentation against the segmentation of HR, per
class and over the whole scored volume (every slice the metrics score); the mean Dice is the
mean over the classes present (:func:`mean_dice`).

Limits
------
This is an intensity model, not a clinical segmentation: no bias-field correction, no spatial
prior, no partial-volume model, no skull stripping. On a head volume that is not brain
extracted (the shipped Colin27 sample) the "CSF" class also holds skull and dark
extracranial tissue and "WM" holds bright scalp fat. What it measures is how well an output
keeps the HR's intensity classes at the HR's own thresholds — blurring moves voxels across
tissue borders, aliasing and noise move them across thresholds — which is the part of the
"SR helps diagnosis" claim an intensity model can check. Because the model is fitted on HR,
HR scores Dice 1 by construction; read the outputs against each other (and against the
``bicubic`` peer: include it in ``--models``), not against 1.

Pathology labels (e.g. BraTS tumour sub-regions) need a trained segmenter and are not built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from iconet.evaluation.metrics import FASTMRI, MetricProtocol, foreground_mask

#: label → tissue name (T1 contrast ordering: CSF < GM < WM); 0 is background.
TISSUES: dict[int, str] = {1: "csf", 2: "gm", 3: "wm"}

#: per-volume row keys written by :func:`downstream_scores`.
DICE_KEYS: tuple[str, ...] = (*(f"dice_{n}" for n in TISSUES.values()), "dice_mean")


def _float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"expected a real numeric array, got dtype {a.dtype}")
    return a.astype(np.float64)


@dataclass(frozen=True)
class TissueModel:
    """Background threshold and two tissue thresholds, all fixed from one HR volume.

    Build with :meth:`fit`; :meth:`segment` applies the same thresholds to any array.

    Attributes:
        background: voxels ``<= background`` are label 0 (the protocol's foreground threshold).
        thresholds: ``(t1, t2)`` from multi-Otsu on the HR foreground.
        description: one line for the table footer.
    """

    background: float
    thresholds: tuple[float, float]

    @classmethod
    def fit(cls, hr: Any, protocol: MetricProtocol = FASTMRI) -> "TissueModel":
        """Fit on the HR volume, in the same units (and layout) as the arrays to segment.

        ``protocol`` fixes the foreground rule (its ``crop`` and ``mask`` are not used: the
        model is fitted on the whole array given, and ``mask="none"`` protocols still define a
        foreground threshold).

        Raises:
            ValueError: HR has no foreground, or too few distinct foreground intensities for
                three classes.
        """
        from skimage.filters import threshold_multiotsu

        r = _float64(hr)
        if r.size == 0 or not np.all(np.isfinite(r)):
            raise ValueError("the HR volume for the tissue model is empty or not finite")
        whole = MetricProtocol(**{**vars(protocol), "crop": None, "slice_axis": 0})
        fg = foreground_mask(r, whole).reshape(r.shape)
        if protocol.data_range == "fixed":
            bg = (protocol.range_low or 0.0) + protocol.mask_threshold * float(protocol.data_range_value)  # type: ignore[arg-type]
        else:
            bg = protocol.mask_threshold * float(r.max())
        values = r[fg]
        if np.unique(values).size < 3:
            raise ValueError(
                f"the HR foreground has {np.unique(values).size} distinct intensities; "
                "three tissue classes need at least 3"
            )
        t1, t2 = (float(t) for t in threshold_multiotsu(values, classes=3))
        return cls(float(bg), (t1, t2))

    def segment(self, volume_array: Any) -> np.ndarray:
        """Labels (``uint8``, same shape): 0 background, 1 CSF, 2 GM, 3 WM (see :data:`TISSUES`)."""
        a = _float64(volume_array)
        if not np.all(np.isfinite(a)):
            raise ValueError("cannot segment an array with NaN or infinite values")
        t1, t2 = self.thresholds
        # right=True: x <= bg → 0, bg < x <= t1 → 1, t1 < x <= t2 → 2, x > t2 → 3
        return np.digitize(a, [self.background, t1, t2], right=True).astype(np.uint8)

    def describe(self) -> str:
        """The line printed under the Dice table (the rule, not this volume's numbers)."""
        return (
            "Downstream: tissue Dice of each SR output against HR's segmentation by a fixed intensity model "
            "fitted on HR per volume (background = the protocol's foreground threshold; CSF/GM/WM = "
            "3-class multi-Otsu of the HR foreground; T1 ordering CSF < GM < WM; not a clinical segmentation)"
        )


def dice_per_class(pred_labels: Any, ref_labels: Any, classes: Mapping[int, str] | Iterable[int] = TISSUES) -> dict[Any, float]:
    """Dice ``2|P∩R| / (|P| + |R|)`` of each class over the whole arrays.

    Args:
        pred_labels, ref_labels: integer label arrays of the same shape.
        classes: label → name (the result is keyed by name), or labels (keyed by label).

    A class absent from both arrays has no Dice: ``nan`` (left out by :func:`mean_dice`).
    """
    p, r = np.asarray(pred_labels), np.asarray(ref_labels)
    if p.shape != r.shape:
        raise ValueError(f"label shapes differ: pred {p.shape}, ref {r.shape}")
    for name, a in (("pred", p), ("ref", r)):
        if a.dtype.kind not in "biu":
            raise ValueError(f"{name} labels must be integers, got dtype {a.dtype}")
    items = classes.items() if isinstance(classes, Mapping) else ((c, c) for c in classes)
    out: dict[Any, float] = {}
    for label, key in items:
        pm, rm = p == label, r == label
        den = int(pm.sum()) + int(rm.sum())
        out[key] = 2.0 * int((pm & rm).sum()) / den if den else math.nan
    return out


def mean_dice(per_class: Mapping[Any, float]) -> float:
    """Mean of the finite per-class Dice values (``nan`` if there is none)."""
    vals = [float(v) for v in per_class.values() if math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else math.nan


def downstream_scores(pred: Any, model: TissueModel, ref_labels: np.ndarray) -> dict[str, float]:
    """``dice_csf``, ``dice_gm``, ``dice_wm``, ``dice_mean`` of ``pred`` segmented by ``model``."""
    per = dice_per_class(model.segment(pred), ref_labels, TISSUES)
    return {**{f"dice_{k}": v for k, v in per.items()}, "dice_mean": mean_dice(per)}


__all__ = ["DICE_KEYS", "TISSUES", "TissueModel", "dice_per_class", "downstream_scores", "mean_dice"]
