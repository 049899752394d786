"""``iconet.evaluation.volumes``: the test volumes and protocol of an evaluation, read by the library
functions directly, score row for row what ``iconet eval`` scores from the same files."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from iconet.cli import main
from iconet.data.degrade import Degradation
from iconet.data.io import read_volume, write_volume
from iconet.data.samples import sample_path
from iconet.evaluation.runner import EvalResult, evaluate, load_candidate
from iconet.evaluation.volumes import (
    eval_normalization,
    holds_volumes,
    read_brats_volumes,
    read_test_volumes,
    recipe_protocol,
    recipe_volumes,
    require_distinct,
)

from test_downstream_brats import _tumour_case

BICUBIC = ["--models", "bicubic", "--degradation", "bicubic", "--quiet"]


def _slab(path: Path, flip: bool = False) -> Path:
    """The package's real Colin27 slab (8 axial slices) at ``path``, flipped along i if asked."""
    img = nib.load(sample_path())
    data = np.asarray(img.dataobj)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data[::-1].copy() if flip else data, img.affine), path)
    return path


#: the one column that differs between two runs: a wall-clock time
TIMED = "ms_per_slice"


def _cli_rows(argv: list[str], out: Path) -> list[dict[str, str]]:
    """``iconet eval ARGV --out OUT``'s per_volume.csv rows, its timing column left out."""
    assert main(["eval", *argv, "--out", str(out)]) == 0
    with open(out / "per_volume.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != TIMED} for row in csv.DictReader(f)]


def _as_csv(result: EvalResult) -> list[dict[str, str]]:
    """The rows as ``iconet eval`` writes them to per_volume.csv (str of each value, "" for none),
    the timing column left out."""
    fields = [k for k in dict.fromkeys(k for row in result.rows for k in row) if k != TIMED]
    return [{k: "" if row.get(k) is None else str(row[k]) for k in fields} for row in result.rows]


def _bicubic(scale: int, grid: str):
    return [load_candidate("bicubic", scale, grid)]


def test_read_test_volumes_scores_as_the_command(tmp_path):
    first = _slab(tmp_path / "a.nii.gz")
    folder = tmp_path / "more"
    _slab(folder / "b.nii.gz", flip=True)
    write_volume(read_volume(first).with_data(read_volume(first).data[:, ::-1].copy()), folder / "sub" / "c")  # DICOM
    volumes = read_test_volumes([first, folder])
    assert [v.name for v in volumes] == ["a", "b", "c"]
    deg = Degradation(kind="bicubic", scale=2)
    result = evaluate(_bicubic(2, deg.grid), volumes, deg, normalization=eval_normalization())
    assert _as_csv(result) == _cli_rows([str(first), str(folder), *BICUBIC], tmp_path / "e")


def test_holds_volumes_decides_folder_or_series(tmp_path, capsys):
    folder = tmp_path / "folder"
    _slab(folder / "a.nii.gz")
    series = tmp_path / "series"
    write_volume(read_volume(folder / "a.nii.gz"), series)
    assert holds_volumes(folder) and not holds_volumes(series) and not holds_volumes(folder / "a.nii.gz")
    # a series folder is one volume, by either path
    (vol,) = read_test_volumes([series])
    deg = Degradation(kind="bicubic", scale=2)
    result = evaluate(_bicubic(2, deg.grid), [vol], deg, normalization=eval_normalization())
    assert _as_csv(result) == _cli_rows([str(series), *BICUBIC], tmp_path / "e")
    # --series-uid on a folder of volumes: refused by both
    with pytest.raises(ValueError, match="folder of volumes"):
        read_test_volumes([folder], series_uid="1.2.3")
    assert main(["eval", str(folder), "--series-uid", "1.2.3", *BICUBIC, "--out", str(tmp_path / "f")]) == 2
    assert "--series-uid picks a series of one DICOM folder, but this is a folder of volumes" in capsys.readouterr().err


def test_a_folder_of_volumes_is_what_infer_would_process(tmp_path):
    """eval and infer tell a folder of volumes from a series folder by one rule and list the same
    volumes: a folder of ``.npy`` volumes was once a DICOM series to eval and a folder to infer."""
    from iconet.data.folders import is_volume_folder, plan_folder

    data = read_volume(_slab(tmp_path / "a.nii.gz")).data
    npy_only = tmp_path / "npy"
    npy_only.mkdir()
    np.save(npy_only / "x.npy", data)
    mixed = tmp_path / "mixed"
    _slab(mixed / "a.nii.gz")
    np.save(mixed / "B.NPY", data[::-1].copy())
    write_volume(read_volume(mixed / "a.nii.gz"), mixed / "sub" / "series")
    series = tmp_path / "series"
    write_volume(read_volume(mixed / "a.nii.gz"), series)
    assert holds_volumes(npy_only) and holds_volumes(mixed) and is_volume_folder(npy_only)
    assert not holds_volumes(series) and not holds_volumes(mixed / "a.nii.gz")
    for folder in (npy_only, mixed):
        read = read_test_volumes([folder])
        planned = [read_volume(item.source) for item in plan_folder(folder, tmp_path / "out")]
        assert [v.name for v in read] == [v.name for v in planned]
        assert all(np.array_equal(a.data, b.data) for a, b in zip(read, planned))
    assert len(read_test_volumes([mixed])) == 3
    # a folder of volumes that holds none is refused, not read as an empty list
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        read_test_volumes([tmp_path / "empty"])


def test_require_distinct_refuses_what_the_command_refuses(tmp_path, capsys):
    same = [_slab(tmp_path / "x" / "t1.nii.gz"), _slab(tmp_path / "y" / "t1.nii.gz")]
    with pytest.raises(ValueError) as err:
        require_distinct([read_volume(p) for p in same])
    assert str(err.value) == "test volumes must have distinct names, got ['t1', 't1']"
    assert main(["eval", *map(str, same), *BICUBIC, "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err == f"iconet: error: {err.value}\n"
    png = tmp_path / "slice.png"
    vol = read_volume(same[0])
    write_volume(vol.with_data(vol.data[..., :1].astype(np.uint8)), png)
    with pytest.raises(ValueError) as err:
        require_distinct([read_volume(png)])
    assert "is a 2-D image" in str(err.value)
    assert main(["eval", str(png), *BICUBIC, "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err == f"iconet: error: {err.value}\n"


def test_eval_normalization_scores_as_the_command(tmp_path):
    vol = _slab(tmp_path / "a.nii.gz")
    deg = Degradation(kind="kspace", scale=2)
    hr = eval_normalization(None, "hr")
    assert (hr.reference, eval_normalization().reference) == ("hr", "lr")
    result = evaluate(_bicubic(2, deg.grid), [read_volume(vol)], deg, normalization=hr, draws=2)
    rows = _cli_rows([str(vol), "--models", "bicubic", "--draws", "2", "--normalize-on", "hr", "--quiet"], tmp_path / "e")
    assert _as_csv(result) == rows
    lr = evaluate(_bicubic(2, deg.grid), [read_volume(vol)], deg, normalization=eval_normalization(), draws=2)
    assert _as_csv(lr) != rows  # the statistic matters: the switch is not a no-op


def test_read_brats_volumes_scores_as_the_command(tmp_path, capsys):
    root = tmp_path / "BraTS2021"
    case = root / "BraTS2021_00001"
    case.mkdir(parents=True)
    data, labels, affine = _tumour_case((95, 110), 1)
    nib.save(nib.Nifti1Image(data, affine), case / f"{case.name}_t1ce.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), case / f"{case.name}_seg.nii.gz")
    volumes, segs = read_brats_volumes([root], "t1ce", labels=True)
    assert [v.name for v in volumes] == list(segs) == ["BraTS2021_00001_t1ce"]
    assert read_brats_volumes([root], "t1ce")[1] == {}
    deg = Degradation(kind="bicubic", scale=2)
    result = evaluate(_bicubic(2, deg.grid), volumes, deg, normalization=eval_normalization(),
                      downstream="tumour", labels=segs, contrast="t1ce")
    rows = _cli_rows([str(root), "--layout", "brats2021", "--contrast", "t1ce", "--downstream", "tumour", *BICUBIC],
                     tmp_path / "e")
    assert _as_csv(result) == rows and any(r["branch"] == "labels" for r in rows)
    (case / f"{case.name}_seg.nii.gz").unlink()
    with pytest.raises(ValueError) as err:
        read_brats_volumes([root], "t1ce", labels=True)
    assert main(["eval", str(root), "--layout", "brats2021", "--contrast", "t1ce", "--downstream", "tumour",
                 *BICUBIC, "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == f"iconet: error: {err.value}\n"


def _recipe(path: Path, data_root: Path, split: list[float]) -> Path:
    path.write_text(yaml.safe_dump({
        "model": {"name": "iconet", "scale": 4, "width": 8, "heads": 2, "groups_per_stage": 1, "blocks_per_group": 1},
        "data": {"root": str(data_root), "layout": "plain", "split": split, "patch_size": 32},
        "degradation": {"kind": "kspace", "scale": 4, "mask_mode": "random"},
    }))
    return path


def test_recipe_protocol_and_volumes_score_as_the_command(tmp_path, data_root):
    recipe = _recipe(tmp_path / "recipe.yaml", data_root, [0.4, 0.3, 0.3])
    protocol = recipe_protocol(recipe)
    assert (protocol.degradation.scale, protocol.degradation.mask_mode) == (4, "seeded")
    share, volumes = recipe_volumes(protocol)
    assert share == "test" and len(volumes) == 1
    result = evaluate(_bicubic(4, protocol.degradation.grid), volumes, protocol.degradation,
                      normalization=eval_normalization(protocol), draws=2)
    assert _as_csv(result) == _cli_rows([str(recipe), "--models", "bicubic", "--draws", "2", "--quiet"], tmp_path / "e")
    # without a test share: the validation subjects
    share, volumes = recipe_volumes(recipe_protocol(_recipe(tmp_path / "two.yaml", data_root, [0.6, 0.4])))
    assert share == "validation" and len(volumes) >= 1
