"""The results tables in README.md and docs/ are what benchmarks/results/*.json give (benchmarks/tables.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import tables  # noqa: E402


def test_every_table_is_current() -> None:
    """Fails when a results JSON changed (or a table was edited by hand) without `python benchmarks/tables.py`."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tables.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr


def test_every_table_is_placed_somewhere() -> None:
    """No table is generated for nobody: each name has a marker in one of the files."""
    text = "".join((REPO / f).read_text() for f in tables.FILES if (REPO / f).exists())
    assert [n for n in tables.TABLES if f"<!-- table:{n} -->" not in text] == []


def test_a_hand_edited_table_is_rewritten() -> None:
    """A number typed over a generated one is put back; the text around the markers is kept."""
    r = tables.load("quality.json")["groups"]["kspace_x2"]["models"]["kspace_x2_iconet"]["sr"]
    psnr, ssim = f"{r['psnr'][0]:.2f}", f"{r['ssim'][0]:.4f}"
    good = tables.rebuild("before\n<!-- table:quality_x2 -->\n<!-- /table -->\nafter\n", "x.md")
    shipped = next(ln for ln in good.splitlines() if "iconet-t1-x2`**" in ln)
    assert f"| {psnr} | {ssim} |" in shipped  # the shipped x2 model's row carries its JSON scores
    edited = good.replace(shipped, shipped.replace(psnr, "99.99"))
    assert edited != good and tables.rebuild(edited, "x.md") == good
    assert good.startswith("before\n") and good.endswith("<!-- /table -->\nafter\n")


def test_unknown_table_and_unclosed_marker_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        tables.rebuild("<!-- table:nope -->\n<!-- /table -->\n", "x.md")
    with pytest.raises(ValueError, match="without its"):
        tables.rebuild("<!-- table:quality_x2 -->\n", "x.md")
