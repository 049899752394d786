"""Find the cases of public data sets in their on-disk layouts (no pixel is read here).

Each finder walks a root folder (recursively, so the archive's own top folders may stay) and
returns a list of :class:`Case` sorted by subject. Layouts:

=============  ==========================================================================
``ixi``        ``IXI002-Guys-0828-T2.nii.gz`` (any folder); subject ``IXI002-Guys-0828``;
               contrasts ``T1``, ``T2``, ``PD`` (also ``MRA``).
``brats2021``  ``BraTS2021_00000/BraTS2021_00000_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``;
               label ``_seg`` (optional).
``hecktor``    ``CHUM-001__CT.nii.gz``, ``CHUM-001__PT.nii.gz``; label ``CHUM-001.nii.gz``
               anywhere under the root (optional; ``labelsTr/`` in HECKTOR 2022).
``fastmri``    ``file1000001.h5`` single-coil files (a ``kspace`` dataset of 3 dims:
               slices × rows × columns); the image key is ``"kspace"``.
``plain``      every NIfTI file (``*.nii``, ``*.nii.gz``) and every folder holding DICOM files
               (``*.dcm`` or extension-less files with the ``DICM`` preamble): one case each.
               ``formats=`` adds other single-file formats (:data:`VOLUME_FORMATS`).
=============  ==========================================================================

:func:`find_volumes` is the walker behind ``plain``; ``iconet infer`` uses it with every format
it reads (:data:`VOLUME_FORMATS`) to find the volumes of a folder.

Missing or empty roots and roots without the files asked for raise
:class:`~iconet.data.errors.DataError` naming the root, the layout and the pattern expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iconet.data.errors import DataError

LAYOUTS: tuple[str, ...] = ("ixi", "brats2021", "hecktor", "fastmri", "plain")

#: single-file formats of the plain layout by default (lower-case name endings)
NIFTI_FORMATS: tuple[str, ...] = (".nii.gz", ".nii")
#: every single-file format :func:`~iconet.data.io.read_volume` reads (DICOM files are grouped
#: into their folder's series instead)
VOLUME_FORMATS: tuple[str, ...] = (".nii.gz", ".nii", ".npy", ".png", ".tif", ".tiff", ".h5")

_NII = r"\.nii(?:\.gz)?"
_IXI = re.compile(rf"^(IXI\d+-[A-Za-z]+-\d+)-(T1|T2|PD|MRA){_NII}$")
_BRATS = re.compile(rf"^(BraTS[A-Za-z0-9_-]*?\d+)_(t1|t1ce|t2|flair|seg){_NII}$")
_HECKTOR = re.compile(rf"^([A-Za-z]+-\d+)__(CT|PT){_NII}$")
_FASTMRI = re.compile(r"^(file[\w-]*)\.h5$")


@dataclass
class Case:
    """One subject of a data set.

    Attributes:
        subject: subject id (never split across training and evaluation).
        images: contrast / modality → file (or DICOM folder), e.g. ``{"T2": Path(...)}``.
        label: segmentation file, if the layout has one.
        meta: layout extras (e.g. ``{"series_uids": [...]}`` for a DICOM folder).
    """

    subject: str
    images: dict[str, Path]
    label: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _check_root(root: str | Path, layout: str, expected: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(root, f"folder not found (looking for a {layout} layout: {expected})")
    if not root.is_dir():
        raise DataError(root, f"not a folder (looking for a {layout} layout: {expected})")
    return root


def _files(root: Path) -> Iterable[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("."))


def _as_tuple(x: str | Sequence[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def _complete(
    found: dict[str, dict[str, Path]], wanted: tuple[str, ...], root: Path, layout: str, pattern: str
) -> list[str]:
    """Subjects having every wanted contrast; DataError if none."""
    subjects = sorted(s for s, imgs in found.items() if all(c in imgs for c in wanted))
    if not subjects:
        what = "/".join(wanted)
        partial = f"; {len(found)} subject(s) lack some of {what}" if found else ""
        raise DataError(root, f"no {layout} {what} files ({pattern}) in this folder or below{partial}")
    return subjects


def find_ixi(root: str | Path, contrast: str | Sequence[str] = "T2") -> list[Case]:
    """IXI: ``IXI<nnn>-<site>-<nnnn>-<contrast>.nii.gz``; subjects lacking a contrast are skipped."""
    wanted = tuple(c.upper() for c in _as_tuple(contrast))
    for c in wanted:
        if c not in ("T1", "T2", "PD", "MRA"):
            raise ValueError(f"unknown IXI contrast {c!r}; expected T1, T2, PD or MRA")
    pattern = " / ".join(f"IXI*-{c}.nii.gz" for c in wanted)
    root = _check_root(root, "IXI", pattern)
    found: dict[str, dict[str, Path]] = {}
    for p in _files(root):
        m = _IXI.match(p.name)
        if m and m.group(2) in wanted:
            found.setdefault(m.group(1), {})[m.group(2)] = p
    subjects = _complete(found, wanted, root, "IXI", pattern)
    return [Case(s, {c: found[s][c] for c in wanted}) for s in subjects]


def find_brats2021(root: str | Path, contrasts: str | Sequence[str] = ("t1", "t1ce", "t2", "flair")) -> list[Case]:
    """BraTS 2021: ``BraTS2021_<id>/BraTS2021_<id>_<contrast>.nii.gz``; ``_seg`` is the label."""
    wanted = tuple(c.lower() for c in _as_tuple(contrasts))
    for c in wanted:
        if c not in ("t1", "t1ce", "t2", "flair"):
            raise ValueError(f"unknown BraTS contrast {c!r}; expected t1, t1ce, t2 or flair")
    pattern = " / ".join(f"BraTS2021_*/BraTS2021_*_{c}.nii.gz" for c in wanted)
    root = _check_root(root, "BraTS2021", pattern)
    found: dict[str, dict[str, Path]] = {}
    labels: dict[str, Path] = {}
    for p in _files(root):
        m = _BRATS.match(p.name)
        if not m:
            continue
        if m.group(2) == "seg":
            labels[m.group(1)] = p
        elif m.group(2) in wanted:
            found.setdefault(m.group(1), {})[m.group(2)] = p
    subjects = _complete(found, wanted, root, "BraTS2021", pattern)
    return [Case(s, {c: found[s][c] for c in wanted}, labels.get(s)) for s in subjects]


def find_hecktor(root: str | Path, modalities: str | Sequence[str] = ("CT", "PT")) -> list[Case]:
    """HECKTOR: ``<centre>-<nnn>__CT.nii.gz`` and ``__PT.nii.gz``; label ``<centre>-<nnn>.nii.gz``."""
    wanted = tuple(c.upper() for c in _as_tuple(modalities))
    for c in wanted:
        if c not in ("CT", "PT"):
            raise ValueError(f"unknown HECKTOR modality {c!r}; expected CT or PT")
    pattern = " / ".join(f"*__{c}.nii.gz" for c in wanted)
    root = _check_root(root, "HECKTOR", pattern)
    found: dict[str, dict[str, Path]] = {}
    others: dict[str, Path] = {}
    for p in _files(root):
        m = _HECKTOR.match(p.name)
        if m:
            if m.group(2) in wanted:
                found.setdefault(m.group(1), {})[m.group(2)] = p
        elif re.match(rf"^[A-Za-z]+-\d+{_NII}$", p.name):
            others[re.sub(_NII + "$", "", p.name)] = p
    subjects = _complete(found, wanted, root, "HECKTOR", pattern)
    return [Case(s, {c: found[s][c] for c in wanted}, others.get(s)) for s in subjects]


def find_fastmri(root: str | Path) -> list[Case]:
    """fastMRI single-coil: ``file*.h5`` holding a 3-D ``kspace`` dataset (multi-coil → DataError)."""
    import h5py  # only this layout needs it

    pattern = "file*.h5 with a single-coil 'kspace' dataset"
    root = _check_root(root, "fastMRI", pattern)
    cases = []
    for p in _files(root):
        m = _FASTMRI.match(p.name)
        if not m:
            continue
        try:
            with h5py.File(p, "r") as f:
                if "kspace" not in f:
                    raise DataError(p, "no 'kspace' dataset: not a fastMRI raw-data file")
                shape = tuple(f["kspace"].shape)
                acquisition = f.attrs.get("acquisition")
        except OSError as err:
            raise DataError(p, f"cannot open as HDF5 ({err})") from None
        if len(shape) != 3:
            raise DataError(
                p, f"kspace has shape {shape}: multi-coil data; the fastMRI layout expects single-coil "
                "(slices, rows, columns)"
            )
        meta: dict[str, Any] = {"kspace_shape": shape}
        if acquisition is not None:
            meta["acquisition"] = acquisition.decode() if isinstance(acquisition, bytes) else str(acquisition)
        cases.append(Case(m.group(1), {"kspace": p}, None, meta))
    if not cases:
        raise DataError(root, f"no fastMRI files ({pattern}) in this folder or below")
    return sorted(cases, key=lambda c: c.subject)


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() == ".dcm":
        return True
    if p.suffix:
        return False
    try:
        with p.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _stem(p: Path, formats: tuple[str, ...]) -> str:
    """The file name without the format ending it matched (``.nii.gz`` counts as one)."""
    low = p.name.lower()
    for ending in sorted(formats, key=len, reverse=True):
        if low.endswith(ending):
            return p.name[: -len(ending)]
    return p.stem


def _hidden(p: Path, root: Path) -> bool:
    """Whether ``p`` or a folder between ``root`` and it is hidden (``.git``, ``.ipynb_checkpoints``)."""
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def find_volumes(root: str | Path, formats: Sequence[str] = NIFTI_FORMATS, *, layout: str = "plain") -> list[Case]:
    """Every volume under ``root``: one case per file of ``formats`` and per folder of DICOM files.

    Args:
        root: the folder to walk (recursively; hidden files and folders are skipped).
        formats: lower-case name endings of the single-file volumes to take, e.g.
            ``(".nii.gz", ".nii")`` (the default) or :data:`VOLUME_FORMATS`.
        layout: the name used in error messages.

    Returns:
        Cases sorted by subject, each with ``images == {"image": path}``. The subject is the
        path relative to ``root`` without its format ending (``"sub1/T1"``), or the DICOM
        folder's relative path (``"."`` for ``root`` itself). DICOM files (``*.dcm`` or
        extension-less files with the ``DICM`` preamble) are grouped by folder: a folder
        holding several series is one case whose ``meta["series_uids"]`` lists them (read one
        with ``read_volume(folder, series_uid=...)``); ``meta["n_files"]`` counts its files.

    Raises:
        DataError: ``root`` is missing, not a folder, or holds none of these files.
    """
    formats = tuple(f.lower() for f in formats)
    listed = ", ".join(f"*{f}" for f in formats)
    pattern = f"{listed} or folders of DICOM files" if formats else "folders of DICOM files"
    root = _check_root(root, layout, pattern)
    cases: list[Case] = []
    dicom_dirs: dict[Path, list[Path]] = {}
    for p in _files(root):
        if _hidden(p, root):
            continue
        if p.name.lower().endswith(formats):
            rel = p.relative_to(root).parent / _stem(p, formats)
            cases.append(Case(rel.as_posix(), {"image": p}))
        elif _is_dicom(p):
            dicom_dirs.setdefault(p.parent, []).append(p)
    for folder, files in dicom_dirs.items():
        meta: dict[str, Any] = {"n_files": len(files)}
        uids = _series_uids(files)
        if uids:
            meta["series_uids"] = uids
        cases.append(Case(folder.relative_to(root).as_posix(), {"image": folder}, None, meta))
    if not cases:
        raise DataError(root, f"no {layout}-folder image files ({pattern}) in this folder or below")
    return sorted(cases, key=lambda c: c.subject)


def find_plain(root: str | Path, formats: Sequence[str] = NIFTI_FORMATS) -> list[Case]:
    """A plain folder: one case per NIfTI file and per folder of DICOM files.

    Subjects are paths relative to the root without extension (``"sub1/T1"``, or the DICOM
    folder's relative path, ``"."`` for the root itself). A DICOM folder holding several
    series is one case; its ``meta["series_uids"]`` lists them (read one with
    ``read_volume(folder, series_uid=...)``). ``formats`` takes other single-file formats too
    (e.g. :data:`VOLUME_FORMATS`); see :func:`find_volumes`.
    """
    return find_volumes(root, formats, layout="plain")


def _series_uids(files: list[Path]) -> list[str]:
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return []
    uids: set[str] = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader later
            continue
        uid = getattr(ds, "SeriesInstanceUID", None)
        if uid:
            uids.add(str(uid))
    return sorted(uids)


def find_cases(root: str | Path, layout: str, **options: Any) -> list[Case]:
    """Dispatch to the finder of ``layout`` (one of :data:`LAYOUTS`) with its ``options``
    (``contrast`` for ixi, ``contrasts`` for brats2021, ``modalities`` for hecktor)."""
    finders = {
        "ixi": find_ixi,
        "brats2021": find_brats2021,
        "hecktor": find_hecktor,
        "fastmri": find_fastmri,
        "plain": find_plain,
    }
    key = layout.lower()
    if key not in finders:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return finders[key](root, **options)
