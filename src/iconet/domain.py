"""The domain a trained model knows, and the check that keeps it away from other scans.

An exported model's ``config.yaml`` carries a ``domain`` section (written by ``iconet export``
from the training recipe; stated by hand for the shipped models)::

    domain:
      modality: MR          # DICOM modality code of the training scans, or "unknown"
      contrast: T1          # MR contrast, or "unknown"
      intensity: magnitude  # "magnitude" (non-negative MR magnitude), "HU", "PET units", "any"
      trained_on: ...       # free text: subjects, resolution

:func:`check_input` compares it with what a scan is (:func:`iconet.data.modality.scan_kind`):
a scan of another modality — or CT-like Hounsfield values for a model of magnitude images — is
refused with one line that names the model's domain and what to do instead, unless the user
accepts the mismatch knowingly (``--allow-domain-mismatch``, ``allow_domain_mismatch=True``).
A recognisably different MR contrast is not refused (contrast is intensity, and a T1 model
still sharpens a T2) but is reported as a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iconet.data.modality import scan_kind
from iconet.data.volume import Volume

UNKNOWN = "unknown"
#: what to do instead, as the command line says it
CLI_HINT = ("use --model bicubic, fine-tune a model on your own scans (iconet train RECIPE with "
            "model.init=MODEL), or pass --allow-domain-mismatch to run it anyway")
#: the same for the Python API
API_HINT = ("use model='bicubic', fine-tune a model on your own scans (iconet train RECIPE with "
            "model.init=MODEL), or pass allow_domain_mismatch=True to run it anyway")
#: layouts whose scans have a known modality (HECKTOR's is its contrast: CT or PT)
_LAYOUT_MODALITY = {"ixi": "MR", "brats2021": "MR", "fastmri": "MR"}


class DomainMismatch(ValueError):
    """A scan outside the domain the model was trained for (one-line message)."""


def describe(domain: Mapping[str, Any] | None) -> str:
    """``"MR T1 (magnitude)"``-style summary of a domain section (``"unknown domain"`` if none)."""
    if not domain:
        return "unknown domain"
    parts = [str(domain.get(k) or UNKNOWN) for k in ("modality", "contrast")]
    text = " ".join(p for p in parts if p != UNKNOWN) or "unknown modality"
    intensity = domain.get("intensity")
    return f"{text} ({intensity})" if intensity and intensity != UNKNOWN else text


def training_domain(data: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """The ``domain`` section ``iconet export`` writes, from a training config's ``data`` and
    ``model`` sections: ``data.modality`` (else the layout's modality, else unknown),
    ``data.contrast``, and the intensity convention (``magnitude`` when the model clamps at
    the input's floor, i.e. was trained on non-negative magnitude images; ``HU`` for CT)."""
    layout = str(data.get("layout") or "")
    contrast = data.get("contrast")
    modality = data.get("modality") or _LAYOUT_MODALITY.get(layout)
    if layout == "hecktor" and contrast:
        modality, contrast = str(contrast).upper(), None
    modality = str(modality).upper() if modality else UNKNOWN
    if modality == "CT":
        intensity = "HU"
    elif model.get("nonnegative"):
        intensity = "magnitude"
    else:
        intensity = "any"
    return {"modality": modality, "contrast": str(contrast) if contrast else UNKNOWN, "intensity": intensity}


def check_input(domain: Mapping[str, Any] | None, volume: Volume, *, model: str, source: str,
                allow: bool = False, hint: str = CLI_HINT) -> list[str]:
    """Refuse ``volume`` if it lies outside ``domain``; return notes worth telling the user.

    Args:
        domain: the model's ``domain`` section (``None`` or unknown modality: only the intensity
            convention is checked).
        volume: the scan.
        model: the model's name, for the message.
        source: the scan's path or name, for the message.
        allow: accept a mismatch knowingly: no error, the mismatch comes back as a note.
        hint: what to do instead (:data:`CLI_HINT` or :data:`API_HINT`).

    Raises:
        DomainMismatch: the scan's modality differs from the model's (or a CT-like scan meets a
            model of magnitude images), and ``allow`` is false.
    """
    if not domain:
        return []
    kind = scan_kind(volume)
    want = str(domain.get("modality") or UNKNOWN).upper()
    notes: list[str] = []
    mismatch = None
    if kind.modality and want != UNKNOWN.upper() and kind.modality != want:
        mismatch = f"this is {kind.modality} ({kind.evidence})"
    elif kind.modality == "CT" and domain.get("intensity") == "magnitude":
        mismatch = f"this looks like a CT ({kind.evidence})"
    if mismatch:
        line = f"{source}: {mismatch}, but {model} was trained on {describe(domain)} only"
        if not allow:
            raise DomainMismatch(f"{line}; {hint}")
        notes.append(f"{line}; running it anyway (domain mismatch allowed)")
    want_contrast = str(domain.get("contrast") or UNKNOWN)
    if kind.contrast and want_contrast != UNKNOWN and kind.contrast.upper() != want_contrast.upper():
        notes.append(f"{source}: this MR series looks {kind.contrast} ({kind.evidence}); {model} was trained "
                     f"on {want_contrast} only, so its output is outside the domain it was scored on")
    return notes
