"""2-D slice datasets built from 3-D volumes, and subject-level splits.

:class:`SliceDataset` normalises each volume once (arrays cached in memory as float32),
keeps the slices of the chosen orientation(s) that hold enough foreground, brings every HR
slice to sides that are multiples of ``2·scale`` (centre crop or pad, see
:func:`iconet.data.degrade.crop_to_multiple` for why) and degrades it on the fly with a
:class:`~iconet.data.degrade.Degradation`. With ``patch_size`` set it returns random HR
crops (training); without, whole slices (evaluation).

A sample is a dict::

    lr (C, h, w), clean (C, h, w), hr (C, H, W)          float32, C = 1
    hr_stages [HR_1..HR_S], clean_stages [CLEAN_0..CLEAN_{S-1}]   (see stage_targets)
    volume (str), slice (int), axis (int), origin (row, col) of hr[0, 0] in the slice
    norm (dict: Normalization.as_dict()), degradation (dict: Degradation.degrade params)

Use :func:`collate` with a ``DataLoader``: it stacks tensors and stage lists and keeps
metadata as lists (the default collate cannot take ``None`` values).

Slices are taken in the file's index order (``data[..., k]`` along ``axis``), no reorientation:
for axis 2 of a RAS volume rows run along x and columns along y. The phase-encoding axis
of the mask is the slice's last axis unless the degradation says otherwise.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from iconet.data.degrade import Degradation, crop_to_multiple, pad_to_multiple, seed_from_name
from iconet.data.normalize import Normalization, NormalizeConfig, default_config, lr_volume, normalize
from iconet.data.volume import Volume

AXES: tuple[int, ...] = (0, 1, 2)


@dataclass
class SliceConfig:
    """Which slices a :class:`SliceDataset` yields and how (``iconet.config.from_dict`` builds it).

    Attributes:
        axis: slicing axis of the volume array, 0, 1 or 2, or ``"all"`` for all three.
        patch_size: HR patch side for random crops (training); ``None`` = whole slices
            (evaluation). Must be a multiple of ``2·scale`` (the LR patch is ``patch/scale``).
        fit: ``"crop"`` (centre crop) or ``"pad"`` (centred zero pad) HR slices to multiples of
            ``2·scale``.
        foreground_threshold: a voxel is foreground when its *normalised* value exceeds this.
        foreground_fraction: keep slices whose foreground fraction exceeds this (0.10 = 10 %).
        slice_step: keep every n-th of the foreground slices (docs/design.md §7 uses 2 for evaluation).
        normalization: the method; ``None`` = per-modality default
            (:func:`iconet.data.normalize.default_config`). With ``reference: lr`` the
            statistic is taken on the volume degraded once along the last of :attr:`axes`
            (axis 2 for ``"all"``), mask seeded from its name (:func:`iconet.data.normalize.lr_volume`).
        degrade_whole_slice: with ``patch_size``: degrade the whole slice, then crop the LR,
            CLEAN and stage targets of the patch from it (at an origin on the LR grid), as an
            acquisition of the whole field of view would. Off (default): the HR patch is cropped
            first and degraded alone, so its FFT treats the patch as periodic and puts
            wrap-around ringing along all four patch borders that no whole scan has. Measured
            (benchmarks/design_x2.py, 500 CPU steps): PSNR on whole slices unchanged for
            EDSR and ICONet, SSIM lower, so the default stays off.
    """

    axis: int | str = 2
    patch_size: int | None = None
    fit: Literal["crop", "pad"] = "crop"
    foreground_threshold: float = 0.1
    foreground_fraction: float = 0.10
    slice_step: int = 1
    normalization: NormalizeConfig | None = None
    degrade_whole_slice: bool = False

    def __post_init__(self) -> None:
        if self.axis not in (*AXES, "all"):
            raise ValueError(f"axis must be 0, 1, 2 or 'all', got {self.axis!r}")
        if self.fit not in ("crop", "pad"):
            raise ValueError(f"fit must be 'crop' or 'pad', got {self.fit!r}")
        if self.slice_step < 1:
            raise ValueError(f"slice_step must be >= 1, got {self.slice_step}")
        if not 0 <= self.foreground_fraction < 1:
            raise ValueError(f"foreground_fraction must lie in [0, 1), got {self.foreground_fraction}")
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")

    @property
    def axes(self) -> tuple[int, ...]:
        return AXES if self.axis == "all" else (int(self.axis),)


@dataclass
class _Entry:
    name: str
    array: np.ndarray  # normalised float32 (I, J, K)
    norm: Normalization
    slices: dict[int, list[int]] = field(default_factory=dict)


def foreground_slices(array: np.ndarray, axis: int, threshold: float, fraction: float) -> np.ndarray:
    """Indices along ``axis`` whose fraction of voxels ``> threshold`` is ``> fraction``."""
    other = tuple(a for a in AXES if a != axis)
    frac = (array > threshold).mean(axis=other)
    return np.nonzero(frac > fraction)[0]


class SliceDataset(Dataset):
    """2-D slices of normalised volumes, degraded on the fly.

    Args:
        volumes: :class:`~iconet.data.volume.Volume` objects or paths (read with
            ``iconet.data.io.read_volume``). Names (``Volume.name``) must be unique: they seed
            evaluation masks and identify volumes in metrics.
        degradation: how LR is made (default: :class:`Degradation` ``()`` — k-space, 2×).
        config: :class:`SliceConfig` (default: axial-ish axis 2, whole slices).
        seed: when set, random crops and per-sample mask seeds come from a generator seeded
            by ``(seed, epoch, index)`` — reproducible whatever the worker layout; call
            :meth:`set_epoch` every epoch. ``None`` uses torch's global RNG (which
            ``DataLoader`` seeds per worker).

    Raises:
        ValueError: ``patch_size`` not a multiple of ``2·scale``, duplicate names, no slice
            left after foreground filtering.
    """

    def __init__(
        self,
        volumes: Sequence[Volume | str | Path],
        degradation: Degradation | None = None,
        config: SliceConfig | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.degradation = degradation or Degradation()
        self.config = config or SliceConfig()
        self.seed = seed
        self.epoch = 0
        if self.config.patch_size is not None:
            self.degradation.check_patch_size(self.config.patch_size)
        self._entries: list[_Entry] = []
        self._index: list[tuple[int, int, int]] = []
        seen: set[str] = set()
        for item in volumes:
            vol = item if isinstance(item, Volume) else _read(item)
            name = vol.name
            if name in seen:
                raise ValueError(f"two volumes are named {name!r}; volume names must be unique")
            seen.add(name)
            ncfg = self.config.normalization or default_config(vol.modality)
            # reference "lr": the statistic of the LR volume along the last slicing axis, mask seeded
            # from the volume's name: the LR `iconet eval` makes in its draw 0 and what infer measures
            stats = (lr_volume(vol.data, self.degradation, self.config.axes[-1], name, fit=self.config.fit)
                     if ncfg.needs_lr else None)
            arr, norm = normalize(vol.data, ncfg, stats_from=stats)
            entry = _Entry(name=name, array=arr, norm=norm)
            for ax in self.config.axes:
                idx = foreground_slices(arr, ax, self.config.foreground_threshold, self.config.foreground_fraction)
                idx = idx[:: self.config.slice_step]
                entry.slices[ax] = [int(k) for k in idx]
                self._index.extend((len(self._entries), ax, int(k)) for k in idx)
            self._entries.append(entry)
        if not self._index:
            raise ValueError(
                f"no slice of {len(self._entries)} volume(s) has more than "
                f"{100 * self.config.foreground_fraction:g}% of voxels above "
                f"{self.config.foreground_threshold} (normalised); lower foreground_fraction"
            )

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops and masks of the next epoch (with ``seed`` set)."""
        self.epoch = int(epoch)

    @property
    def volume_names(self) -> list[str]:
        return [e.name for e in self._entries]

    @property
    def normalizations(self) -> dict[str, Normalization]:
        return {e.name: e.norm for e in self._entries}

    def slices_of(self, name: str, axis: int) -> list[int]:
        """Kept slice indices of volume ``name`` along ``axis``, in order."""
        for e in self._entries:
            if e.name == name:
                return list(e.slices.get(axis, []))
        raise KeyError(name)

    def array(self, name: str) -> np.ndarray:
        """The cached normalised volume (float32, read-only view)."""
        for e in self._entries:
            if e.name == name:
                v = e.array.view()
                v.flags.writeable = False
                return v
        raise KeyError(name)

    @property
    def index(self) -> list[tuple[str, int, int]]:
        """``(volume name, axis, slice)`` of every sample, in order."""
        return [(self._entries[v].name, ax, k) for v, ax, k in self._index]

    # ------------------------------------------------------------------ samples
    def _generator(self, i: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(seed_from_name(f"{self.seed}/{self.epoch}/{i}"))

    def _fit(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Crop or pad to multiples of 2·scale; returns the image and the (row, col) in the
        original slice of its pixel (0, 0) (negative when padded)."""
        m = self.degradation.multiple
        H, W = img.shape[-2:]
        if self.config.fit == "crop":
            if H < m or W < m:
                raise ValueError(f"slice of size {(H, W)} is smaller than 2*scale = {m}; use fit='pad'")
            out = crop_to_multiple(img, m)
            return out, ((H - out.shape[-2]) // 2, (W - out.shape[-1]) // 2)
        out = pad_to_multiple(img, m)
        return out, (-((out.shape[-2] - H) // 2), -((out.shape[-1] - W) // 2))

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        v, ax, k = self._index[i]
        entry = self._entries[v]
        # Basic indexing is a view; np.take would copy the whole volume first (0.15 s on 256^3).
        sl = np.ascontiguousarray(entry.array[(slice(None),) * ax + (k,)])
        hr = torch.from_numpy(sl)[None]  # (1, H, W)
        hr, origin = self._fit(hr)
        g = self._generator(i)
        p = self.config.patch_size
        whole = p is not None and self.config.degrade_whole_slice
        if p is not None:
            H, W = hr.shape[-2:]
            if H < p or W < p:  # pad small slices up to the patch (centred, zeros)
                ph, pw = max(p - H, 0), max(p - W, 0)
                hr = torch.nn.functional.pad(hr, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                origin = (origin[0] - ph // 2, origin[1] - pw // 2)
                H, W = hr.shape[-2:]
            s = self.degradation.scale
            # whole slice degraded first: the patch origin lies on the LR grid (a multiple of s)
            step = s if whole else 1
            top = int(torch.randint(0, (H - p) // step + 1, (1,), generator=g)) * step
            left = int(torch.randint(0, (W - p) // step + 1, (1,), generator=g)) * step
            if whole:  # degrade the whole slice, then cut the patch's part of every output
                out = self.degradation.degrade(hr, entry.name, g, noise_key=f"axis{ax}/slice{k}")
                out.update(lr=_crop_at(out["lr"], top, left, p, H), clean=_crop_at(out["clean"], top, left, p, H))
                stages = {key: [_crop_at(t, top, left, p, H) for t in ts]
                          for key, ts in self.degradation.stage_targets(hr).items()}
            hr = hr[:, top : top + p, left : left + p].contiguous()
            origin = (origin[0] + top, origin[1] + left)
        if not whole:
            out = self.degradation.degrade(hr, entry.name, g, noise_key=f"axis{ax}/slice{k}")
            stages = self.degradation.stage_targets(hr)
        return {
            "lr": out["lr"],
            "clean": out["clean"],
            "hr": hr,
            "hr_stages": stages["hr"],
            "clean_stages": stages["clean"],
            "volume": entry.name,
            "slice": k,
            "axis": ax,
            "origin": origin,
            "norm": entry.norm.as_dict(),
            "degradation": out["params"],
        }


def _crop_at(t: torch.Tensor, top: int, left: int, p: int, full: int) -> torch.Tensor:
    """The part of ``t`` (a degraded or stage-target image of a ``full``-row HR slice, at its own
    size) under the HR patch ``[top : top + p, left : left + p]``."""
    f = full // t.shape[-2]  # HR pixels per pixel of t
    return t[..., top // f : (top + p) // f, left // f : (left + p) // f].contiguous()


def _read(path: str | Path) -> Volume:
    from iconet.data.io import read_volume  # lazy: readers are optional at import time

    return read_volume(path)


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (and each stage of ``hr_stages``/``clean_stages``); keep metadata as lists.

    Whole slices of different sizes cannot be stacked: evaluate those with ``batch_size=1``
    (or one axis and volumes of one shape).
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        try:
            if isinstance(vals[0], torch.Tensor):
                out[key] = torch.stack(vals)
            elif isinstance(vals[0], list) and vals[0] and isinstance(vals[0][0], torch.Tensor):
                out[key] = [torch.stack(list(stage)) for stage in zip(*vals)]
            else:
                out[key] = vals
        except RuntimeError as err:
            shapes = sorted({tuple(v.shape) for v in vals if isinstance(v, torch.Tensor)})
            raise ValueError(
                f"cannot stack '{key}' of different sizes {shapes or ''} into one batch; "
                "use batch_size=1 for whole slices"
            ) from err
    return out


def split_subjects(
    names: Sequence[str],
    fractions: Sequence[float],
    seed: int = 0,
    *,
    subject: Callable[[str], str] | None = None,
) -> list[list[str]]:
    """Split ``names`` into ``len(fractions)`` groups by *subject*, deterministically.

    Every name maps to a subject (``subject(name)``, default the name itself); all names of a
    subject land in the same split, so no subject's slices or contrasts leak between
    training and evaluation. Subjects are ordered by ``sha256(f"{seed}/{subject}")`` — the
    order does not depend on the input order, the machine or the Python run, and adding a
    subject does not reshuffle the others — and cut by counts from the fractions (largest
    remainder; each split with a positive fraction gets at least one subject when there are
    enough).

    Args:
        names: volume or subject names (repeats allowed).
        fractions: non-negative, summing to 1 (e.g. ``(0.8, 0.1, 0.1)``).
        seed: changes the shuffle.
        subject: maps a name to its subject id (e.g. ``lambda n: n.rsplit("-", 1)[0]`` for IXI).

    Returns:
        One list per fraction, each holding names in their input order.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(f < 0 for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    key = subject or (lambda n: n)
    subjects = sorted({key(n) for n in names})
    order = sorted(subjects, key=lambda s: hashlib.sha256(f"{seed}/{s}".encode("utf-8")).digest())
    n = len(order)
    raw = [f * n for f in fr]
    counts = [int(math.floor(r)) for r in raw]
    for j in sorted(range(len(fr)), key=lambda j: (-(raw[j] - counts[j]), j))[: n - sum(counts)]:
        counts[j] += 1
    for j, f in enumerate(fr):  # a positive fraction gets at least one subject if possible
        if f > 0 and counts[j] == 0:
            donor = max(range(len(fr)), key=lambda d: counts[d])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[j] += 1
    groups: dict[str, int] = {}
    start = 0
    for j, c in enumerate(counts):
        for s in order[start : start + c]:
            groups[s] = j
        start += c
    out: list[list[str]] = [[] for _ in fr]
    for name in names:
        out[groups[key(name)]].append(name)
    return out
