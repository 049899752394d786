"""A folder of scans processed scan by scan into an output folder of the same shape.

What ``iconet infer FOLDER OUT`` does with a folder, for a Python user doing the same with
their own loop::

    from iconet.data.folders import is_volume_folder, plan_folder, shard

    if is_volume_folder(src):
        for item in shard(plan_folder(src, dst), rank, world):
            out = super_resolve_volume(model, read_volume(item.source), ...)
            item.output.parent.mkdir(parents=True, exist_ok=True)
            write_volume(out["sr"], item.output, reference=...)

:func:`is_volume_folder` tells a folder of volumes from one DICOM series folder,
:func:`plan_folder` lists its volumes with the output path of each, and :func:`shard` gives one
process of a ``torchrun`` group its share. Nothing is read but file names and the 132-byte
DICOM preamble of extension-less files (:func:`~iconet.data.layouts.find_volumes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from iconet.data.errors import DataError
from iconet.data.layouts import VOLUME_FORMATS, find_volumes

T = TypeVar("T")


class FolderItem(NamedTuple):
    """One volume of a folder and where its result goes.

    Attributes:
        source: the volume: a file of :data:`~iconet.data.layouts.VOLUME_FORMATS` or a folder
            of DICOM files (one series, or several: pick one with ``series_uid``).
        relative: its path relative to the input folder, which is also its path under the
            output folder; a DICOM series made of the input folder's own files is named after
            the input folder (``OUT/<input folder name>``).
        output: ``dst / relative``.
    """

    source: Path
    relative: Path
    output: Path


def is_volume_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of volumes (it holds a sub-folder or a file of
    :data:`~iconet.data.layouts.VOLUME_FORMATS`) rather than a single DICOM series folder (whose
    files are ``.dcm`` or extension-less). ``False`` for a file or a missing path."""
    return path.is_dir() and any(p.is_dir() or p.name.lower().endswith(VOLUME_FORMATS) for p in path.iterdir())


def plan_folder(src: Path, dst: Path) -> list[FolderItem]:
    """Every volume under the folder ``src``, with its output path under ``dst``.

    The volumes are those :func:`~iconet.data.layouts.find_volumes` finds with every format
    iconet reads (:data:`~iconet.data.layouts.VOLUME_FORMATS`), plus each folder of DICOM files,
    sub-folders included and hidden ones skipped, in its order (sorted by relative path).
    Nothing is created or checked under ``dst``.

    Returns:
        One :class:`FolderItem` per volume; an empty list where ``src`` holds none (or is not a
        folder).
    """
    try:
        cases = find_volumes(src, VOLUME_FORMATS, layout="infer")
    except DataError:
        return []
    items = []
    for case in cases:
        path = case.images["image"]
        rel = path.relative_to(src)
        rel = rel if rel.parts else Path(src.resolve().name)
        items.append(FolderItem(path, rel, dst / rel))
    return items


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """The share of ``items`` that process ``rank`` of ``world`` handles: every ``world``-th
    item from position ``rank`` (``items[rank::world]``), so the shares of ranks ``0 ..
    world-1`` are disjoint, cover ``items`` and differ in length by at most one. Under
    ``torchrun`` pass ``RANK`` and ``WORLD_SIZE``; a single process is rank 0 of 1 (all items).

    Raises:
        ValueError: ``world < 1`` or ``rank`` outside ``0 .. world-1``.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of {world}: a rank is 0 to world size - 1, and the world size is at least 1")
    return list(items[rank::world])


__all__ = ["FolderItem", "is_volume_folder", "plan_folder", "shard"]
