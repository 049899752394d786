"""What every format writer shares: the atomic output, the default description, and the note
for formats that store no geometry.

A leaf of ``iconet.data``: it imports no reader or writer, so the format modules (``nifti``,
``dicom_write``, ``images``) and the dispatcher :mod:`iconet.data.io` that imports them on demand
can all use it without an import cycle (``tests/test_import_graph.py``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from iconet.data.errors import DataError
from iconet.data.validate import extension
from iconet.data.volume import Volume

__all__ = ["DEFAULT_DESCRIPTION", "DataNote", "GeometryDefaulted", "GeometryNotStored", "atomic_output", "geometry_note",
           "replacing_folder"]

#: The description a writer puts into the header when the caller gives none.
DEFAULT_DESCRIPTION = "iconet derived image"


class DataNote(UserWarning):
    """Something the user should know about data that was read or written, though nothing
    failed. A Python caller sees it once per message (the default warnings filter); the
    command line prints it as one ``note: <message>`` line, without Python's source location."""


class GeometryNotStored(DataNote):
    """A volume was written to PNG, TIFF or NPY, which store no geometry: the message
    (:func:`geometry_note`) gives the volume's own spacing, which is not written."""


class GeometryDefaulted(DataNote):
    """A file lacked the tags that place it in scanner space (DICOM ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing): unit spacing and an axial orientation were assumed,
    and the message names the file and the missing tags."""


def geometry_note(volume: Volume, path: str | Path) -> str | None:
    """What writing ``volume`` to ``path`` (a format without geometry) leaves out, in one line,
    or ``None`` when nothing is lost: the volume had no geometry either (read from PNG, TIFF or
    NPY without ``spacing=``, ``meta["geometry"] == "none"``; its unit spacing is not a
    measurement) or an identity affine.

    A single slice (``(H, W, 1)``) gives ``"<path> stores no geometry; the 0.5 x 0.5 mm pixel
    spacing (4 mm slice), orientation and position are not written"``; a volume gives its
    three voxel sizes. Geometry the source lacked and that was defaulted is named.
    """
    if volume.meta.get("geometry") == "none" or np.allclose(volume.affine, np.eye(4)):
        return None
    sp = [f"{v:.4g}" for v in volume.spacing]
    if volume.shape[2] == 1:
        what = f"the {sp[0]} x {sp[1]} mm pixel spacing ({sp[2]} mm slice)"
    else:
        what = f"the {' x '.join(sp)} mm voxel spacing"
    missing = volume.meta.get("geometry_missing")
    defaulted = f" (the source had no {', '.join(map(str, missing))}: those values are defaults)" if missing else ""
    return f"{path} stores no geometry; {what}, orientation and position are not written{defaulted}"


@contextmanager
def atomic_output(path: str | Path, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary name keeps the extension (``.nii.gz`` included), so libraries that choose
    the encoding from the name still do the right thing. On error the temporary output is
    removed and ``path`` is left as it was. ``folder=True`` creates a temporary folder; an
    existing target folder must be empty (it is replaced), a file is replaced atomically.
    """
    p = Path(path)
    if p.exists() and p.is_dir() != folder:
        kind = "a folder" if p.is_dir() else "a file"
        raise DataError(p, f"exists and is {kind}; refusing to replace it")
    if folder and p.is_dir() and any(p.iterdir()):
        raise DataError(p, "folder exists and is not empty; write a series into a new or empty "
                           "folder (mixing series in one folder makes them ambiguous)")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(p, f"cannot create its folder: {e.strerror or e}") from e
    ext = extension(p)
    stem = p.name[: len(p.name) - len(ext)] if ext else p.name
    tmp = parent / f".{stem}.tmp-{uuid.uuid4().hex[:12]}{ext}"
    try:
        if folder:
            tmp.mkdir()
        yield tmp
        if folder and p.is_dir():
            p.rmdir()  # empty (checked above)
        os.replace(tmp, p)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


@contextmanager
def replacing_folder(path: str | Path, *, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a new empty hidden folder next to ``path`` (``.NAME.tmp-XXXXXXXX``, parents
    created); when the block ends without error, swap it into ``path``'s place.

    Before the swap ``check()`` runs, the last chance to refuse (e.g. a target that appeared
    while the block ran). An existing ``path`` is renamed aside (``.NAME.old-XXXXXXXX``), the
    new folder renamed in, and the old one removed; if the second rename fails the old folder
    is renamed back. On any error the new folder is removed and ``path`` is as it was.

    Unlike :func:`atomic_output` with ``folder=True`` this replaces a folder that is not
    empty: the caller decides (in ``check`` and before) which folders may be replaced.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp, old = p.parent / f".{p.name}.tmp-{tag}", p.parent / f".{p.name}.old-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        if check is not None:
            check()
        if p.exists():
            p.rename(old)
            try:
                tmp.rename(p)
            except BaseException:
                old.rename(p)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
