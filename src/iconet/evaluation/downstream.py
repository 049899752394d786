"""Downstream checks: does SR keep the segmentation of HR? (``iconet eval --downstream [tissue|tumour]``)

Two variants, both a *fixed intensity model fitted on the HR volume alone* and applied
unchanged to HR and to every model's output; both report the Dice of each output's
segmentation against HR's segmentation on the slices the metrics score.

Tissue (``--downstream`` or ``--downstream tissue``; :class:`TissueModel`)
------------------------------------------------------------------------

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

Tumour (``--downstream tumour``, BraTS 2021 data with ``_seg`` labels; :class:`TumourModel`)
-------------------------------------------------------------------------------------------

The expert labels are BraTS 2021's: ``0`` background, ``1`` necrotic / non-enhancing core
(NCR), ``2`` peritumoral edema (ED), ``4`` enhancing tumour (ET); regions WT = {1, 2, 4},
TC = {1, 4}, ET = {4} (:data:`BRATS_LABELS`, :data:`BRATS_REGIONS`).

* **region of interest**: the expert whole-tumour mask WT (labels 1, 2, 4), taken from the
  labels file and sliced and cropped exactly like HR. Everything outside it is label 0, in HR
  and in every output: the model never decides *where* the tumour is.
* **intensity classes**: ``threshold_multiotsu(HR[WT], classes=3)`` gives ``t1 < t2``; WT
  voxels ``<= t1`` are class 1 ``low``, ``(t1, t2]`` class 2 ``mid``, ``> t2`` class 3 ``high``
  (:data:`INTENSITY_CLASSES`). The same two numbers classify every output's WT voxels.
  Three classes on every contrast, so the columns are the same whatever ``--contrast``.

Reported per output (:data:`TUMOUR_KEYS`): ``tumour_dice_low``, ``tumour_dice_mid``,
``tumour_dice_high`` (Dice against HR's segmentation, over the whole scored volume) and
``tumour_dice_mean``. HR scores 1 by construction.

Reported once per volume (:meth:`TumourModel.reference`, keys ``expert_dice_<region>``): the
Dice of **HR's** classes against the expert labels, with this fixed mapping
(:data:`TUMOUR_REFERENCE`), chosen from how BraTS defines its sub-regions:

=========  =======================================  =============================================
contrast   class(es) → expert label(s)              why
=========  =======================================  =============================================
``t1ce``   high → ET (4); mid → ED (2);             ET is defined by gadolinium enhancement (the
           low → NCR (1)                            brightest tissue in WT on T1-Gd); NCR is
                                                    hypointense on T1-Gd; ED lies between.
``flair``  high → ED (2); low + mid → TC (1, 4)     the FLAIR-hyperintense envelope is what BraTS
                                                    annotates as ED / WT; the core (necrosis,
                                                    enhancing rim) is darker than the edema.
``t2``     as ``flair``                             weaker: necrosis is often T2-bright as well.
``t1``     low → TC (1, 4); mid + high → ED (2)     weakest: no enhancement; the core is the most
                                                    T1-hypointense part, edema mildly so.
=========  =======================================  =============================================

The hyperintense FLAIR/T2 class is compared with ED, not with WT: WT is the region the model
works in, so every voxel it labels is in WT and a Dice against WT would only measure what
fraction of WT falls in the class. This line says how good the fixed model is as a tumour
model at all (expect modest numbers); it is not a score of any SR output.

Limits
------
Both are intensity models, not clinical segmentations: no bias-field correction, no spatial
prior, no partial-volume model, no skull stripping. On a head volume that is not brain
extracted (the shipped Colin27 sample) the "CSF" class also holds skull and dark
extracranial tissue and "WM" holds bright scalp fat. What they measure is how well an output
keeps the HR's intensity classes at the HR's own thresholds — blurring moves voxels across
tissue borders, aliasing and noise move them across thresholds — which is the part of the
"SR helps diagnosis" claim an intensity model can check. Because the models are fitted on HR,
HR scores Dice 1 by construction; read the outputs against each other (and against the
``bicubic`` peer: include it in ``--models``), not against 1.

The tumour variant in particular is **not a tumour segmenter**: it works inside the expert's
own whole-tumour outline and only asks whether SR keeps HR's three intensity classes there
(e.g. on T1-Gd, whether the enhancing rim stays as bright as in HR and the necrotic core as
dark). A trained BraTS segmenter run on SR outputs is not built.
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


def _three_class_thresholds(values: np.ndarray, what: str) -> tuple[float, float]:
    """The two multi-Otsu thresholds splitting ``values`` into three intensity classes."""
    from skimage.filters import threshold_multiotsu

    n = np.unique(values).size
    if n < 3:
        raise ValueError(f"{what} has {n} distinct intensities; three intensity classes need at least 3")
    t1, t2 = (float(t) for t in threshold_multiotsu(values, classes=3))
    return t1, t2


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

        r = _float64(hr)
        if r.size == 0 or not np.all(np.isfinite(r)):
            raise ValueError("the HR volume for the tissue model is empty or not finite")
        whole = MetricProtocol(**{**vars(protocol), "crop": None, "slice_axis": 0})
        fg = foreground_mask(r, whole).reshape(r.shape)
        if protocol.data_range == "fixed":
            bg = (protocol.range_low or 0.0) + protocol.mask_threshold * float(protocol.data_range_value)  # type: ignore[arg-type]
        else:
            bg = protocol.mask_threshold * float(r.max())
        return cls(float(bg), _three_class_thresholds(r[fg], "the HR foreground"))

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




# --------------------------------------------------------------------------------------------
# Tumour variant (BraTS 2021 labels)
# --------------------------------------------------------------------------------------------

#: BraTS 2021 label → sub-region (0 is background).
BRATS_LABELS: dict[int, str] = {1: "ncr", 2: "ed", 4: "et"}

#: BraTS evaluation regions → their labels.
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}

#: intensity class of :class:`TumourModel` → name; 0 is outside the whole-tumour mask.
INTENSITY_CLASSES: dict[int, str] = {1: "low", 2: "mid", 3: "high"}

#: per-volume row keys written by :func:`tumour_scores`.
TUMOUR_KEYS: tuple[str, ...] = (*(f"tumour_dice_{n}" for n in INTENSITY_CLASSES.values()), "tumour_dice_mean")

#: contrast → {region name: (intensity classes, expert labels)} for :meth:`TumourModel.reference`
#: (why each: see the module docstring).
TUMOUR_REFERENCE: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] = {
    "t1ce": {"ncr": ((1,), (1,)), "ed": ((2,), (2,)), "et": ((3,), (4,))},
    "flair": {"tc": ((1, 2), (1, 4)), "ed": ((3,), (2,))},
    "t2": {"tc": ((1, 2), (1, 4)), "ed": ((3,), (2,))},
    "t1": {"tc": ((1,), (1, 4)), "ed": ((2, 3), (2,))},
}


def brats_labels(labels: Any) -> np.ndarray:
    """The label array as ``int16``, checked: integer-valued, only BraTS 2021 labels 0, 1, 2, 4.

    Raises:
        ValueError: non-integer values, or other labels (BraTS 2023 writes ET as 3, not 4).
    """
    a = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"tumour labels must be numeric, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise ValueError("tumour labels must be whole numbers (0, 1, 2, 4)")
    found = {int(v) for v in np.unique(a)}
    other = sorted(found - {0, *BRATS_LABELS})
    if other:
        raise ValueError(f"tumour labels hold {other}; BraTS 2021 labels are 0, 1 (NCR), 2 (ED), 4 (ET)")
    return a.astype(np.int16)


def whole_tumour(labels: Any) -> np.ndarray:
    """Boolean mask of the BraTS whole tumour, WT = labels {1, 2, 4}."""
    return np.isin(brats_labels(labels), BRATS_REGIONS["wt"])


@dataclass(frozen=True)
class TumourModel:
    """Two intensity thresholds fixed from HR inside the expert whole-tumour mask.

    Build with :meth:`fit`; :meth:`segment` applies the same thresholds to any array, inside a
    given WT mask. Not a tumour segmenter (see the module docstring).

    Attributes:
        thresholds: ``(t1, t2)``, 3-class multi-Otsu of the HR intensities inside WT.
        contrast: ``t1``, ``t1ce``, ``t2`` or ``flair``: picks the mapping of
            :meth:`reference` (:data:`TUMOUR_REFERENCE`); the thresholds do not depend on it.
    """

    thresholds: tuple[float, float]
    contrast: str

    @classmethod
    def fit(cls, hr: Any, labels: Any, contrast: str) -> "TumourModel":
        """Fit on the HR array and its BraTS labels (same shape, same slices).

        Raises:
            ValueError: unknown contrast, shapes differ, no WT voxel, fewer than 3 distinct
                intensities inside WT, or labels that are not BraTS 2021's.
        """

        contrast = str(contrast).lower()
        if contrast not in TUMOUR_REFERENCE:
            raise ValueError(f"unknown contrast {contrast!r} for the tumour model; expected t1, t1ce, t2 or flair")
        r = _float64(hr)
        if r.size == 0 or not np.all(np.isfinite(r)):
            raise ValueError("the HR volume for the tumour model is empty or not finite")
        roi = whole_tumour(labels)
        if roi.shape != r.shape:
            raise ValueError(f"the labels have shape {roi.shape}, the HR volume {r.shape}")
        if not roi.any():
            raise ValueError("no whole-tumour voxel (labels 1, 2, 4) in the scored slices")
        return cls(_three_class_thresholds(r[roi], "the HR whole tumour"), contrast)

    def segment(self, volume_array: Any, roi: Any) -> np.ndarray:
        """Labels (``uint8``, same shape): 0 outside ``roi`` (the WT mask), else 1 low, 2 mid, 3 high."""
        a = _float64(volume_array)
        m = np.asarray(roi, dtype=bool)
        if m.shape != a.shape:
            raise ValueError(f"the whole-tumour mask has shape {m.shape}, the array {a.shape}")
        if not np.all(np.isfinite(a[m])):
            raise ValueError("cannot segment an array with NaN or infinite values")
        # right=True: x <= t1 → 1, t1 < x <= t2 → 2, x > t2 → 3 (inside WT only)
        classes = np.digitize(a, list(self.thresholds), right=True).astype(np.uint8) + 1
        return np.where(m, classes, 0).astype(np.uint8)

    def reference(self, hr: Any, labels: Any) -> dict[str, float]:
        """``expert_dice_<region>``: Dice of HR's class(es) against the expert label(s).

        The mapping is :data:`TUMOUR_REFERENCE` for this model's contrast; computed on the
        arrays given (the scored slices), once per volume.
        """
        lab = brats_labels(labels)
        seg = self.segment(hr, np.isin(lab, BRATS_REGIONS["wt"]))
        out: dict[str, float] = {}
        for region, (classes, expert) in TUMOUR_REFERENCE[self.contrast].items():
            p, r = np.isin(seg, classes), np.isin(lab, expert)
            den = int(p.sum()) + int(r.sum())
            out[f"expert_dice_{region}"] = 2.0 * int((p & r).sum()) / den if den else math.nan
        return out

    def mapping(self) -> str:
        """``"NCR (1) ↔ low; ED (2) ↔ mid; ET (4) ↔ high"`` for this model's contrast."""
        return "; ".join(
            f"{region.upper()} ({', '.join(map(str, expert))}) ↔ {'+'.join(INTENSITY_CLASSES[c] for c in classes)}"
            for region, (classes, expert) in TUMOUR_REFERENCE[self.contrast].items()
        )

    def describe(self) -> str:
        """The line printed under the Dice table (the rule, not this volume's numbers)."""
        return (
            f"Downstream: tumour Dice of each SR output against HR's segmentation by a fixed intensity model "
            f"fitted on HR per volume inside the expert whole-tumour label (WT = BraTS labels 1, 2, 4; "
            f"low/mid/high = 3-class multi-Otsu of the HR {self.contrast} intensities in WT; applied in WT only; "
            "not a tumour segmenter)"
        )


def tumour_scores(pred: Any, model: TumourModel, roi: np.ndarray, ref_labels: np.ndarray) -> dict[str, float]:
    """``tumour_dice_low``, ``_mid``, ``_high``, ``_mean`` of ``pred`` segmented by ``model`` in ``roi``."""
    per = dice_per_class(model.segment(pred, roi), ref_labels, INTENSITY_CLASSES)
    return {**{f"tumour_dice_{k}": v for k, v in per.items()}, "tumour_dice_mean": mean_dice(per)}


#: column header of each Dice key in ``table.md``.
DICE_HEADERS: dict[str, str] = {
    "dice_csf": "Dice CSF", "dice_gm": "Dice GM", "dice_wm": "Dice WM", "dice_mean": "mean Dice",
    "tumour_dice_low": "Dice low", "tumour_dice_mid": "Dice mid", "tumour_dice_high": "Dice high",
    "tumour_dice_mean": "mean Dice",
}


__all__ = [
    "BRATS_LABELS", "BRATS_REGIONS", "DICE_HEADERS", "DICE_KEYS", "INTENSITY_CLASSES", "TISSUES", "TUMOUR_KEYS",
    "TUMOUR_REFERENCE", "TissueModel", "TumourModel", "brats_labels", "dice_per_class", "downstream_scores",
    "mean_dice", "tumour_scores", "whole_tumour",
]
