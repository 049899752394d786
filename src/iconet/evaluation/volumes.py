"""The test volumes of an evaluation, as ``iconet eval`` reads them, for :func:`~iconet.evaluation.runner.evaluate`.

Three sources:

* :func:`read_test_volumes`: volume files, DICOM series folders and folders of them;
* :func:`read_brats_volumes`: one contrast of every BraTS 2021 case under some folders, with the
  cases' expert labels when asked;
* a training recipe (``.yaml``): :func:`recipe_protocol` reads the degradation and normalisation
  it trained with, :func:`recipe_volumes` its held-out test share (else its validation subjects).

Every reader returns true volumes with distinct names (the names key the rows, draws and
labels of an evaluation): a 2-D image (a PNG, one DICOM slice) or two volumes of the same name
raise ValueError. :func:`eval_normalization` gives the normalisation an evaluation uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iconet.data.degrade import Degradation
    from iconet.data.normalize import NormalizeConfig
    from iconet.data.volume import Volume


def holds_volumes(path: Path) -> bool:
    """Whether :func:`read_test_volumes` reads ``path`` as a folder of volumes rather than as one
    volume (a file, a DICOM series folder): the rule of ``iconet infer``,
    :func:`iconet.data.folders.is_volume_folder` (it holds a sub-folder or a file of any format
    iconet reads)."""
    from iconet.data.folders import is_volume_folder

    return is_volume_folder(path)


def require_distinct(volumes: Sequence[Volume]) -> None:
    """Refuse a 2-D image (it is not a volume) and two volumes of the same name (ValueError)."""
    from iconet.data.validate import require_volume

    for v in volumes:
        require_volume(v)
    names = [v.name for v in volumes]
    if len(set(names)) != len(names):
        raise ValueError(f"test volumes must have distinct names, got {names}")


def read_test_volumes(paths: Sequence[Path], series_uid: str | None = None) -> list[Volume]:
    """The volumes of ``paths``, in their order: a volume file or DICOM series folder gives one;
    a folder of volumes (:func:`holds_volumes`) gives every volume of it and below, the ones
    ``iconet infer`` would process (:func:`iconet.data.folders.plan_folder`: files of every
    format iconet reads and DICOM folders, by relative path; one that holds none raises).

    Args:
        series_uid: the series to read from a DICOM folder holding several; a folder of volumes
            with it raises ValueError.

    Raises:
        ValueError (:class:`~iconet.data.errors.DataError` for unreadable files): see above, and
        :func:`require_distinct`.
    """
    from iconet.data.io import read_volume
    from iconet.data.layouts import VOLUME_FORMATS, find_volumes

    vols = []
    for path in paths:
        if holds_volumes(path):
            if series_uid is not None:
                raise ValueError(f"{path}: series_uid picks a series of one DICOM folder, but this is a folder of volumes")
            vols += [read_volume(c.images["image"]) for c in find_volumes(path, VOLUME_FORMATS, layout="plain")]
        else:
            vols.append(read_volume(path, series_uid=series_uid))
    require_distinct(vols)
    return vols


def read_brats_volumes(paths: Sequence[Path], contrast: str, labels: bool = False) -> tuple[list[Volume], dict[str, Volume]]:
    """The ``contrast`` volume (``t1``, ``t1ce``, ``t2``, ``flair``) of every BraTS 2021 case
    under ``paths`` (case folders ``BraTS2021_*``, sorted by subject per path), and with
    ``labels`` each case's ``_seg`` labels keyed by the volume's name (else an empty dict).

    Raises:
        ValueError: with ``labels``, a case without its labels file; see also
        :func:`require_distinct`. DataError: no BraTS case of that contrast under a path.
    """
    from iconet.data.io import read_volume
    from iconet.data.layouts import find_cases

    cases = [c for path in paths for c in find_cases(path, "brats2021", contrasts=contrast)]
    if labels:
        for c in cases:
            if c.label is None:
                raise ValueError(f"{c.subject}: no labels file {c.subject}_seg.nii.gz beside "
                                 f"{c.images[contrast].name} (--downstream tumour needs it)")
    vols, segs = [], {}
    for c in cases:
        vol = read_volume(c.images[contrast])
        vols.append(vol)
        if labels:
            segs[vol.name] = read_volume(c.label)
    require_distinct(vols)
    return vols, segs


@dataclass
class RecipeProtocol:
    """What a training recipe fixes for scoring its model.

    Attributes:
        path: the recipe file.
        degradation: the recipe's degradation, with its masks seeded from each volume's name
            (``mask_mode="seeded"``) instead of drawn at random: every model sees the same LR.
        normalization: the recipe's ``data.normalization``.
        data: the recipe's ``data`` section (root, layout, split), where its volumes are.
    """

    path: Path
    degradation: Degradation
    normalization: NormalizeConfig
    data: Any


def recipe_protocol(path: Path) -> RecipeProtocol:
    """Read a training recipe (``.yaml``, :func:`~iconet.engine.config.load_train_config`);
    no volume is read. Raises ConfigError for a bad recipe."""
    from iconet.engine.config import load_train_config

    cfg = load_train_config(path)
    deg = dataclasses.replace(cfg.degradation, mask_mode="seeded")
    return RecipeProtocol(Path(path), deg, cfg.data.normalization, cfg.data)


def recipe_volumes(protocol: RecipeProtocol) -> tuple[str, list[Volume]]:
    """The volumes a recipe is scored on and which share they are: ``("test", ...)``, its
    held-out share (the third part of ``data.split``), else ``("validation", ...)``, its
    validation subjects (:func:`~iconet.engine.data.find_split`), sorted by subject.

    Raises:
        DataError / ConfigError: the recipe's data folder is missing or holds no volumes of its
        layout; see also :func:`require_distinct`.
    """
    from iconet.data.io import read_volume
    from iconet.engine.data import find_split

    split = find_split(protocol.data)
    share, subjects = ("test", split.test) if split.test else ("validation", split.val)
    volumes = [read_volume(path) for path in subjects.values()]
    require_distinct(volumes)
    return share, volumes


def eval_normalization(recipe: RecipeProtocol | None = None, on: str | None = None) -> NormalizeConfig:
    """The normalisation of an evaluation: the recipe's, else the default (the 99.5th
    percentile of each draw's LR volume, what ``iconet infer`` takes), with its statistic taken
    on ``on`` (``"lr"`` or ``"hr"``) when given."""
    from iconet.data.normalize import NormalizeConfig

    cfg = (recipe.normalization if recipe else None) or NormalizeConfig(reference="lr")
    return dataclasses.replace(cfg, reference=on) if on else cfg


__all__ = ["RecipeProtocol", "eval_normalization", "holds_volumes", "read_brats_volumes", "read_test_volumes",
           "recipe_protocol", "recipe_volumes", "require_distinct"]
