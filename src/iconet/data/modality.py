"""What kind of scan a volume is: modality and MR contrast, from its header or its intensities.

Used to keep a model away from data it was not trained for (:mod:`iconet.domain`). The answer
is a best effort with its evidence, never a guess presented as fact:

* modality: the DICOM ``Modality`` attribute when the file has one (``MR``, ``CT``, ``PT``, ...);
  otherwise, from the intensities alone, ``CT`` when the volume looks like Hounsfield units
  (at least :data:`HU_AIR_FRACTION` of the voxels at or below :data:`HU_AIR_LEVEL`: air and
  lung; magnitude MR and PET are never that negative), else unknown. A PET NIfTI cannot be
  told from an MR one by its values.
* MR contrast: from the DICOM echo and repetition times and the scanning sequence (EPI when the
  sequence is echo-planar), with the usual spin-echo rules of thumb (:func:`mr_contrast`);
  unknown without a DICOM header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from iconet.data.volume import Volume

#: intensity (in the volume's units) at or below which a voxel counts as CT air (HU)
HU_AIR_LEVEL = -500.0
#: fraction of voxels at or below HU_AIR_LEVEL that marks a volume as CT-like
HU_AIR_FRACTION = 0.01


@dataclass(frozen=True)
class ScanKind:
    """What a volume is, as far as can be told.

    Attributes:
        modality: DICOM modality code (``"MR"``, ``"CT"``, ``"PT"``, ...) or ``None`` (unknown).
        contrast: MR contrast (``"T1"``, ``"T2"``, ``"PD"``, ``"EPI"``) or ``None`` (unknown).
        evidence: how it was told, e.g. ``"DICOM Modality CT"`` or ``"intensities: 62 % of voxels
            at or below -500 (Hounsfield air)"``.
    """

    modality: str | None
    contrast: str | None
    evidence: str


def mr_contrast(dicom: dict[str, Any]) -> tuple[str | None, str]:
    """``(contrast, evidence)`` of an MR series from its DICOM attributes (``meta["dicom"]``).

    Echo-planar sequences (``ScanningSequence`` holds ``EP``) are ``"EPI"``. Otherwise, by echo
    time TE and repetition time TR (ms): TR < 1000 and TE < 30 → T1; TR ≥ 1500 and TE ≥ 60 →
    T2; TR ≥ 1500 and TE < 30 → PD; anything else (gradient echo, inversion recovery, missing
    times) → unknown.
    """
    seq = str(dicom.get("ScanningSequence", "")).upper()
    if "EP" in seq.replace("\\", " ").split():
        return "EPI", f"ScanningSequence {seq}"
    try:
        te, tr = float(dicom["EchoTime"]), float(dicom["RepetitionTime"])
    except (KeyError, TypeError, ValueError):
        return None, "no echo/repetition time"
    evidence = f"TE {te:g} ms, TR {tr:g} ms"
    if tr < 1000 and te < 30:
        return "T1", evidence
    if tr >= 1500 and te >= 60:
        return "T2", evidence
    if tr >= 1500 and te < 30:
        return "PD", evidence
    return None, evidence


def scan_kind(volume: Volume) -> ScanKind:
    """Modality and contrast of ``volume`` (see the module docstring)."""
    dicom = volume.meta.get("dicom") if isinstance(volume.meta.get("dicom"), dict) else None
    if volume.modality:
        contrast, why = (None, "")
        if volume.modality == "MR" and dicom is not None:
            contrast, why = mr_contrast(dicom)
        evidence = f"DICOM Modality {volume.modality}" + (f"; {why}" if contrast else "")
        return ScanKind(volume.modality, contrast, evidence)
    data = np.asarray(volume.data)
    air = float(np.mean(data <= HU_AIR_LEVEL)) if data.size else 0.0
    if air >= HU_AIR_FRACTION:
        return ScanKind("CT", None, f"intensities: {100 * air:.0f} % of voxels at or below "
                                    f"{HU_AIR_LEVEL:g} (Hounsfield air; min {float(data.min()):g})")
    return ScanKind(None, None, "no modality in the header; intensities not CT-like")
