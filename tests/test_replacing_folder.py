"""iconet.data.writing.replacing_folder: the folder swap behind `iconet export` and
`iconet export-onnx --out` (a complete new folder or the old one, never a mix; no temp left)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iconet.data.writing import replacing_folder


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_new_folder_appears_whole_and_replaces_an_old_one(tmp_path):
    target = tmp_path / "deep" / "model"
    with replacing_folder(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".model.tmp-") and not target.exists()
        (tmp / "a.txt").write_text("1")
    assert _tree(target) == {"a.txt": "1"}
    with replacing_folder(target) as tmp:
        (tmp / "b.txt").write_text("2")
        assert _tree(target) == {"a.txt": "1"}  # untouched until the block ends
    assert _tree(target) == {"b.txt": "2"}  # replaced, not merged
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no .tmp- / .old- left


def test_an_error_or_a_refusal_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with replacing_folder(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise OSError("disk full")

    def refuse() -> None:
        raise ValueError("appeared meanwhile")

    with pytest.raises(ValueError, match="appeared meanwhile"):
        with replacing_folder(target, check=refuse) as tmp:
            (tmp / "new.txt").write_text("x")
    assert _tree(target) == {"keep.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    real_rename = Path.rename

    def rename(self: Path, dest: Path) -> Path:
        # simulated: a rename the OS refuses (hard to cause for real in a test folder)
        if self.name.startswith(".model.tmp-"):
            raise PermissionError("rename refused")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        with replacing_folder(target) as tmp:
            (tmp / "new.txt").write_text("x")
    assert _tree(target) == {"keep.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
