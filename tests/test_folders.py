"""``iconet.data.folders``: the folder planner and the rank sharding that ``iconet infer FOLDER OUT``
runs on, called directly and compared with what the command writes from the same folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from iconet.cli import main
from iconet.data.folders import FolderItem, is_volume_folder, plan_folder, shard
from iconet.data.io import read_volume, write_volume
from iconet.data.samples import sample_path


@pytest.fixture()
def archive(tmp_path) -> Path:
    """A folder holding a DICOM series in its own files, a NIfTI, a NumPy volume in a sub-folder,
    another DICOM series folder and a hidden copy (skipped): a crop of the package's Colin27 slab."""
    img = nib.load(sample_path())
    lr = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:48, :56, :3], img.affine), lr)
    vol = read_volume(lr)
    src = tmp_path / "archive"
    write_volume(vol, src)  # DICOM files of the folder itself
    (src / "sub").mkdir()
    (src / "a.nii.gz").write_bytes(lr.read_bytes())
    np.save(src / "sub" / "b.npy", vol.data.astype(np.float32))
    write_volume(vol, src / "sub" / "series")
    (src / ".cache").mkdir()
    (src / ".cache" / "c.nii.gz").write_bytes(lr.read_bytes())
    return src


def _written(out: Path) -> set[Path]:
    """The volumes under ``out``: files, and DICOM series folders as one each."""
    series = {p.parent for p in out.rglob("*.dcm")}
    return series | {p for p in out.rglob("*") if p.is_file() and p.suffix != ".dcm"}


def test_plan_folder_names_the_outputs_the_command_writes(archive, tmp_path, capsys):
    out = tmp_path / "out"
    plan = plan_folder(archive, out)
    assert [(i.source, i.relative) for i in plan] == [
        (archive, Path("archive")),  # the folder's own series, named after the folder
        (archive / "a.nii.gz", Path("a.nii.gz")),
        (archive / "sub" / "b.npy", Path("sub/b.npy")),
        (archive / "sub" / "series", Path("sub/series")),
    ]
    assert all(i.output == out / i.relative for i in plan) and not out.exists()  # nothing made
    assert main(["infer", str(archive), str(out), "--model", "bicubic", "--quiet"]) == 0
    assert _written(out) == {i.output for i in plan}
    assert capsys.readouterr().out.splitlines() == (
        [f"ok      {i.relative.as_posix()}" for i in plan] + [f"4 of 4 volume(s) written to {out}"])
    assert plan_folder(archive / "a.nii.gz", out) == [] and plan_folder(tmp_path / "none", out) == []


def test_shard_is_the_share_each_rank_of_the_command_writes(archive, tmp_path, capsys, monkeypatch):
    plan = plan_folder(archive, tmp_path / "out")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        out = tmp_path / "out"
        assert main(["infer", str(archive), str(out), "--model", "bicubic", "--quiet"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"2 of 2 volume(s) written to {out} (rank {rank} of 2)"
        assert _written(out) == {i.output for r in range(rank + 1) for i in shard(plan, r, 2)}
    shares = [shard(plan, r, 3) for r in range(3)]
    assert sorted(i for s in shares for i in s) == sorted(plan) and [len(s) for s in shares] == [2, 1, 1]
    assert shard(plan, 0, 1) == plan
    for rank, world in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match=f"rank {rank} of {world}"):
            shard(plan, rank, world)


def test_is_volume_folder_picks_the_folder_run_or_the_single_series(archive, tmp_path, capsys):
    series = archive / "sub" / "series"
    assert is_volume_folder(archive) and not is_volume_folder(series)
    assert not is_volume_folder(archive / "a.nii.gz") and not is_volume_folder(tmp_path / "none")
    out = tmp_path / "one"
    assert main(["infer", str(series), str(out), "--model", "bicubic", "--quiet"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"  # one volume, not a folder run
    assert read_volume(out).shape == (96, 112, 3)
    assert plan_folder(series, out) == [FolderItem(series, Path("series"), out / "series")]
