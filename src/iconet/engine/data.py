"""Training data from a recipe: find the cases, split by subject, build the slice datasets.

Data code only: it knows volumes, layouts and degradations, never a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iconet.config import ConfigError
from iconet.data.datasets import SliceConfig, SliceDataset, split_subjects
from iconet.data.degrade import Degradation
from iconet.data.layouts import find_cases
from iconet.data.volume import Volume
from iconet.engine.config import DataConfig, TrainConfig

_CONTRAST_OPTION = {"ixi": "contrast", "brats2021": "contrasts", "hecktor": "modalities"}


@dataclass
class Split:
    """Subject id → image file of each split (sorted by subject). ``test`` is the held-out
    share of a three-way ``data.split`` (empty otherwise): never read by training."""

    train: dict[str, Path]
    val: dict[str, Path]
    test: dict[str, Path] = field(default_factory=dict)


def find_split(cfg: DataConfig) -> Split:
    """Find the cases and split them by subject.

    Raises:
        DataError (a ValueError): root missing or holding no volumes of that layout.
        ConfigError: unknown subjects asked for, several images per case without
            ``data.contrast``, empty training or validation split.
    """
    opts = {}
    if cfg.contrast is not None and cfg.layout in _CONTRAST_OPTION:
        opts[_CONTRAST_OPTION[cfg.layout]] = cfg.contrast
    cases = find_cases(cfg.root, cfg.layout, **opts)
    images: dict[str, Path] = {}
    for case in cases:
        if len(case.images) != 1:
            raise ConfigError(
                f"data.contrast is needed for layout {cfg.layout}: cases hold {sorted(case.images)}"
            )
        images[case.subject] = next(iter(case.images.values()))
    subjects = sorted(images)
    for key in ("train_subjects", "val_subjects"):
        unknown = [s for s in getattr(cfg, key) if s not in images]
        if unknown:
            shown = ", ".join(subjects[:8]) + (" ..." if len(subjects) > 8 else "")
            raise ConfigError(f"data.{key}: no subject {unknown[0]!r} in {cfg.root} ({cfg.layout}); found: {shown}")
    test: list[str] = []
    if cfg.train_subjects or cfg.val_subjects:
        train = list(cfg.train_subjects) or [s for s in subjects if s not in cfg.val_subjects]
        val = list(cfg.val_subjects) or [s for s in subjects if s not in cfg.train_subjects]
    else:
        parts = split_subjects(subjects, cfg.split, cfg.split_seed)
        train, val = parts[:2]
        test = parts[2] if len(parts) > 2 else []
    if not val:
        raise ConfigError(
            f"the validation split is empty ({len(subjects)} subject(s) in {cfg.root}); "
            "set data.val_subjects or a larger data.split[1]"
        )
    if not train:
        raise ConfigError(f"the training split is empty ({len(subjects)} subject(s) in {cfg.root}); set data.train_subjects")
    return Split({s: images[s] for s in sorted(train)}, {s: images[s] for s in sorted(val)},
                 {s: images[s] for s in sorted(test)})


def _volume(subject: str, path: Path) -> Volume:
    from iconet.data.io import read_volume

    vol = read_volume(path)
    # C order: NIfTI arrays come Fortran-ordered, and np.take of one slice of a Fortran-ordered
    # volume (SliceDataset.__getitem__) copies the whole volume (0.15 s for 256^3) every sample
    data = np.ascontiguousarray(vol.data)
    return dataclasses.replace(vol, data=data, source=None, meta={**vol.meta, "name": subject, "path": str(path)})


def build_datasets(cfg: TrainConfig, split: Split) -> tuple[SliceDataset, SliceDataset, list[int]]:
    """Training dataset, validation dataset and the validation indices kept (after
    ``slices_per_volume``: evenly spaced per volume and axis, ends included)."""
    d = cfg.data
    common = dict(fit=d.fit, normalization=d.normalization, foreground_threshold=d.foreground_threshold,
                  foreground_fraction=d.foreground_fraction)
    train = SliceDataset(
        [_volume(s, p) for s, p in split.train.items()],
        cfg.degradation,
        SliceConfig(axis=d.axis, patch_size=d.patch_size, degrade_whole_slice=d.degrade_whole_slice, **common),  # type: ignore[arg-type]
        seed=cfg.run.seed,
    )
    val_deg: Degradation = dataclasses.replace(cfg.degradation, mask_mode="seeded")
    val = SliceDataset(
        [_volume(s, p) for s, p in split.val.items()],
        val_deg,
        SliceConfig(axis=d.axis if d.val_axis is None else d.val_axis, patch_size=None,
                    slice_step=d.val_slice_step, **common),  # type: ignore[arg-type]
        seed=cfg.run.seed,
    )
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (name, ax, _k) in enumerate(val.index):
        groups.setdefault((name, ax), []).append(i)
    keep: list[int] = []
    cap = d.slices_per_volume
    for idx in groups.values():
        if cap is None or len(idx) <= cap:
            keep.extend(idx)
        elif cap == 1:
            keep.append(idx[len(idx) // 2])
        else:
            keep.extend(idx[round(j * (len(idx) - 1) / (cap - 1))] for j in range(cap))
    return train, val, sorted(set(keep))


