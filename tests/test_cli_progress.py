"""Progress bars of the long commands: on a terminal they show (slices, volumes, time left), in a
pipe or with ``--quiet`` nothing but the result lines is printed. And ``--help`` of every command.

The CLI runs in-process. "A terminal" is either a real pseudo-terminal (``os.openpty``, which
reports a size of 0 x 0 until someone sets one, as in many containers and remote shells) or a
text buffer that says it is a terminal (tqdm asks ``isatty()``).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from iconet.cli import build_parser, main
from iconet.data.io import read_volume
from iconet.data.samples import sample_path

FAST = ["--model", "bicubic", "--tile", "0"]  # no memory probe: the bar's phases stay short


class Terminal(io.StringIO):
    """stderr as a terminal of known size would be (tqdm draws its bar when ``isatty()``)."""

    def isatty(self) -> bool:
        return True


def _run(argv: list[str], monkeypatch, capsys, *, terminal: bool) -> tuple[int, str, str]:
    """``main(argv)`` with stderr a terminal or (pytest's capture) a pipe: (status, stdout, stderr)."""
    term = Terminal()
    if terminal:
        monkeypatch.setattr(sys, "stderr", term)
    rc = main(argv)
    cap = capsys.readouterr()
    monkeypatch.undo()
    return rc, cap.out, term.getvalue() if terminal else cap.err


def _slab(tmp_path: Path) -> Path:
    src = tmp_path / "slab.nii.gz"
    shutil.copy(sample_path(), src)  # the package's real Colin27 slab: 8 axial slices
    return src


@pytest.fixture
def every_update(monkeypatch):
    """Bars draw every update: fast batches would otherwise fall within tqdm's 0.1 s between draws."""
    import iconet.progress as progress

    class EveryUpdate(progress.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "mininterval": 0})

    monkeypatch.setattr(progress, "tqdm", EveryUpdate)


def test_infer_bar_counts_slices_on_a_terminal(tmp_path, monkeypatch, capsys, every_update):
    out = tmp_path / "sr.nii.gz"
    rc, stdout, stderr = _run(["infer", str(_slab(tmp_path)), str(out), *FAST, "--batch", "2"],
                              monkeypatch, capsys, terminal=True)
    assert rc == 0 and stdout == f"wrote {out}\n"
    assert "loading model" in stderr and "reading slab.nii.gz" in stderr
    for done in (0, 2, 4, 6, 8):  # one update per batch of 2, with the time left once known
        assert f"| {done}/8 [" in stderr
    assert re.search(r"slab\.nii\.gz: +50%\|.*\| 4/8 \[\d\d:\d\d<\d\d:\d\d", stderr)


@pytest.mark.parametrize("how", ["pipe", "quiet"])
def test_infer_prints_only_its_result_in_a_pipe_or_with_quiet(tmp_path, monkeypatch, capsys, how):
    out = tmp_path / "sr.nii.gz"
    argv = ["infer", str(_slab(tmp_path)), str(out), *FAST] + (["--quiet"] if how == "quiet" else [])
    rc, stdout, stderr = _run(argv, monkeypatch, capsys, terminal=how == "quiet")
    assert rc == 0 and stdout == f"wrote {out}\n" and stderr == ""


@contextmanager
def _sizeless_terminal(monkeypatch) -> Iterator[list[str]]:
    """stderr a fresh pseudo-terminal, which reports a size of 0 x 0; the list receives what was
    drawn on it once the block ends."""
    master, slave = os.openpty()
    assert os.get_terminal_size(slave) == (0, 0)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal was closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    term = open(slave, "w", buffering=1, encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", term)
    drawn: list[str] = []
    try:
        yield drawn
    finally:
        monkeypatch.undo()
        term.close()
        reader.join(timeout=10)
        os.close(master)
        drawn.append(b"".join(chunks).decode("utf-8", "replace"))


def test_infer_bar_shows_on_a_terminal_that_reports_no_size(tmp_path, monkeypatch, capsys, every_update):
    """A fresh pseudo-terminal is 0 x 0: plain tqdm hides its bar there (the silent infer)."""
    out = tmp_path / "sr.nii.gz"
    with _sizeless_terminal(monkeypatch) as drawn:
        rc = main(["infer", str(_slab(tmp_path)), str(out), *FAST, "--batch", "4"])
    text = drawn[0]
    assert rc == 0 and capsys.readouterr().out == f"wrote {out}\n"
    assert "slab.nii.gz" in text and "| 4/8 [" in text and "| 8/8 [" in text


@pytest.fixture
def one_thread():
    """Tiny tensors: more threads only contend on a shared CPU (seconds instead of a minute)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_through_plane_fit_and_apply_bars_show_on_a_terminal_that_reports_no_size(monkeypatch, capsys, every_update,
                                                                                  one_thread):
    """The library's own bars (tqdm with ``dynamic_ncols``, which measured the 0 x 0 size again)."""
    from iconet.engine.isotropic_fit import FitConfig
    from iconet.isotropic import make_isotropic

    small = FitConfig(width=8, heads=2, groups_per_stage=1, blocks_per_group=1, out_rows=32, columns=24, batch=2)
    full = read_volume(sample_path())  # 4-mm slices; a 64 x 64 crop of the head for speed
    corner = full.affine.copy()
    corner[:3, 3] = full.world(np.array([60.0, 80.0, 0.0]))
    slab = full.with_data(full.data[60:124, 80:144], corner)
    with _sizeless_terminal(monkeypatch) as drawn:
        out = make_isotropic(slab, fit_steps=3, fit_config=small, precision="fp32", device="cpu")
    assert re.search(r"fit colin27_slab: +100%\|.*\| 3/3 \[", drawn[0])
    assert re.search(r"apply: +100%\|.*\| 128/128 \[", drawn[0])
    # in a pipe (pytest's capture): nothing on stderr, the same result
    again = make_isotropic(slab, fit_steps=3, fit_config=small, precision="fp32", device="cpu")
    assert capsys.readouterr().err == "" and np.array_equal(again.data, out.data)


def test_training_bar_shows_on_a_terminal_that_reports_no_size(data_root, tmp_path, monkeypatch, every_update,
                                                               one_thread):
    from iconet.engine.trainer import train

    from test_train import make_cfg

    cfg = make_cfg(data_root, tmp_path / "run", "run.steps=2", "run.val_every=0", "run.progress=true")
    with _sizeless_terminal(monkeypatch) as drawn:
        train(cfg)
    assert re.search(r"train: +100%\|.*\| 2/2 \[", drawn[0])


def _two_volumes(tmp_path: Path) -> Path:
    folder = tmp_path / "cases"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        shutil.copy(sample_path(), folder / name / "t1.nii.gz")
    return folder


def test_infer_folder_shows_volumes_and_slices(tmp_path, monkeypatch, capsys, every_update):
    out = tmp_path / "out"
    rc, stdout, stderr = _run(["infer", str(_two_volumes(tmp_path)), str(out), *FAST],
                              monkeypatch, capsys, terminal=True)
    assert rc == 0
    assert stdout.splitlines() == ["ok      a/t1.nii.gz", "ok      b/t1.nii.gz", f"2 of 2 volume(s) written to {out}"]
    assert "volumes:" in stderr and "| 1/2 [" in stderr and "| 2/2 [" in stderr
    assert "t1.nii.gz" in stderr and "| 8/8 [" in stderr  # each volume's slices


def test_infer_folder_is_quiet_in_a_pipe(tmp_path, monkeypatch, capsys):
    rc, stdout, stderr = _run(["infer", str(_two_volumes(tmp_path)), str(tmp_path / "out"), *FAST],
                              monkeypatch, capsys, terminal=False)
    assert rc == 0 and stderr == "" and len(stdout.splitlines()) == 3


def _eval_argv(tmp_path: Path, out: str) -> list[str]:
    first = _slab(tmp_path)
    second = tmp_path / "slab_b.nii.gz"
    shutil.copy(first, second)
    return ["eval", str(first), str(second), "--models", "bicubic", "--degradation", "bicubic", "--out", str(tmp_path / out)]


def test_eval_bar_counts_volume_model_passes_on_a_terminal(tmp_path, monkeypatch, capsys, every_update):
    rc, stdout, stderr = _run(_eval_argv(tmp_path, "e"), monkeypatch, capsys, terminal=True)
    assert rc == 0 and "| bicubic |" in stdout and stdout.rstrip().splitlines()[-1].startswith("wrote ")
    assert "loading models" in stderr and "scoring (volume x draw x model)" in stderr
    assert "| 1.0/2 [" in stderr and "100%" in stderr and "| 2.0/2 [" in stderr  # 2 volumes x 1 draw x 1 model


@pytest.mark.parametrize("how", ["pipe", "quiet"])
def test_eval_prints_only_its_results_in_a_pipe_or_with_quiet(tmp_path, monkeypatch, capsys, how):
    argv = _eval_argv(tmp_path, "e") + (["--quiet"] if how == "quiet" else [])
    rc, stdout, stderr = _run(argv, monkeypatch, capsys, terminal=how == "quiet")
    assert rc == 0 and "| bicubic |" in stdout and stderr == ""


def test_data_info_shows_reading_on_a_terminal_only(monkeypatch, capsys):
    rc, stdout, stderr = _run(["data", "info", str(sample_path())], monkeypatch, capsys, terminal=True)
    assert rc == 0 and "181 x 217 x 8" in stdout and "reading colin27_slab.nii.gz" in stderr
    for extra, terminal in ((["--quiet"], True), ([], False)):
        rc, stdout2, stderr = _run(["data", "info", str(sample_path()), *extra], monkeypatch, capsys, terminal=terminal)
        assert rc == 0 and stdout2 == stdout and stderr == ""


# ----------------------------------------------------------------------------- --help


def _parsers(parser: argparse.ArgumentParser, name: str = "iconet"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in _parsers(build_parser())
               for a in p._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert missing == []


def test_help_shows_no_restructuredtext_marks():
    names = [name for name, _ in _parsers(build_parser())]
    assert {"iconet infer", "iconet eval", "iconet data info", "iconet train"} <= set(names)
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text and not re.search(r":(func|class|mod|meth|attr):`", text), name
    infer = dict(_parsers(build_parser()))["iconet infer"].format_help()
    assert "iconet infer INPUT OUTPUT: super-resolve" in infer and "--series-uid UID" in infer


def test_quiet_is_offered_where_bars_are_shown():
    parsers = dict(_parsers(build_parser()))
    for name in ("iconet infer", "iconet eval", "iconet demo", "iconet data info", "iconet data fetch-samples"):
        assert "--quiet" in parsers[name].format_help(), name


def test_demo_shows_its_elapsed_time_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    import iconet.hub as hub

    empty = tmp_path / "zoo"
    empty.mkdir()
    monkeypatch.setattr(hub, "_zoo_root", lambda: empty)  # the interpolation peers only: fast
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    assert re.search(r"demo: super-resolving 8 Colin27 slices x2.* \d\d:\d\d", term.getvalue())
    monkeypatch.setattr(sys, "stderr", term := Terminal())
    assert main(["demo", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert "demo:" not in term.getvalue() and "metrics table" in capsys.readouterr().out
