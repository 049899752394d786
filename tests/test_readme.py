"""README.md's examples run and its comments are true.

* The ``## Python API`` block is executed as written, in a temporary folder that holds real
  files under the README's own names (``scan.nii.gz``, ``archive/``), and every result it
  leaves behind is checked against the comment beside it.
* Every ``iconet ...`` command of the README (the ``## Commands`` table, the shell blocks and
  inline code) parses with the real argument parser; the ``$ iconet ...`` transcript runs
  through ``iconet.cli.main`` and prints what the README shows.

The inputs are a crop of the shipped sample (``src/iconet/samples/colin27_slab.nii.gz``, real
Colin27 slices; 63 x 65 x 4 voxels at its 1 x 1 x 4 mm geometry, cut with nibabel so the
geometry is kept) because the whole slab takes minutes through the x4 model on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from iconet.cli import build_parser, main
from iconet.data.samples import sample_path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _section(title: str) -> str:
    """The text of the ``## title`` section (up to the next level-2 heading)."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start: end if end != -1 else None]


def _fences(text: str, *langs: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in langs]


def _crop(path: Path) -> Path:
    """A real crop of the shipped slab (odd in-plane sizes, 4 slices), geometry kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.load(sample_path()).slicer[59:122, 70:135, 2:6], path)
    return path


@contextlib.contextmanager
def _one_thread():
    """torch on one thread meanwhile (the test machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- the Python API block


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    """Run the ``## Python API`` block once; return its namespace and folder."""
    blocks = _fences(_section("Python API"), "python")
    assert len(blocks) == 1, "the Python API section should hold one ```python block"
    code = blocks[0]
    work = tmp_path_factory.mktemp("readme_api")
    scan = _crop(work / "scan.nii.gz")
    for rel in ("archive/scan.nii.gz", "archive/site2/scan.nii.gz"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(scan.read_bytes())
    ns: dict = {"__name__": "readme"}
    with _one_thread(), contextlib.chdir(work):
        exec(compile(code, "README.md (## Python API)", "exec"), ns)
    return code, ns, work


def _claim(code: str, text: str) -> None:
    """The block still states ``text`` (so a changed comment makes this test be revisited)."""
    assert text in code, f"README Python API no longer says {text!r}; update tests/test_readme.py"


def test_available_models_is_what_the_comment_lists(api_run):
    code, ns, _ = api_run
    line = next(l for l in code.splitlines() if l.startswith("iconet.available_models()"))
    listed = ast.literal_eval(line.split("#", 1)[1].strip())
    assert ns["iconet"].available_models() == listed


def test_super_resolve_of_a_volume_halves_the_in_plane_spacing(api_run):
    code, ns, work = api_run
    _claim(code, "a Volume at the SR geometry (spacing d/2 in-plane)")
    from iconet.data.io import read_volume
    from iconet.data.volume import Volume

    vol, sr = ns["vol"], ns["sr"]
    assert isinstance(vol, Volume) and vol.data.ndim == 3 and vol.affine.shape == (4, 4)
    assert isinstance(sr, Volume)
    (i, j, k), (di, dj, dk) = vol.shape, vol.spacing
    assert sr.shape == (2 * i, 2 * j, k)
    np.testing.assert_allclose(sr.spacing, (di / 2, dj / 2, dk))
    assert sr.orientation == vol.orientation and sr.data.dtype == vol.data.dtype
    # the shipped model samples on the k-space grid: voxel (2i, 2j, k) sits where (i, j, k) sat
    assert ns["iconet"].load_model("iconet-t1-x2")[1].grid == "kspace"
    ijk = np.array([[0, 0, 0], [7, 11, 2], [i - 1, j - 1, k - 1]])
    np.testing.assert_allclose(sr.world(ijk * [2, 2, 1]), vol.world(ijk))
    # the SR image resembles the input (same units, an upsampled image of it, not noise)
    lr_up = np.repeat(np.repeat(vol.data.astype(float), 2, 0), 2, 1)
    assert np.corrcoef(lr_up.ravel(), sr.data.astype(float).ravel())[0, 1] > 0.9
    # what write_volume wrote reads back as the same image at the same place
    back = read_volume(work / "scan_sr.nii.gz")
    np.testing.assert_array_equal(back.data, sr.data)
    np.testing.assert_allclose(back.affine, sr.affine)


def test_x4_from_a_path_is_a_volume_at_a_quarter_spacing(api_run):
    code, ns, _ = api_run
    _claim(code, "# a path in, a Volume out")
    from iconet.data.volume import Volume

    vol, sr4, info = ns["vol"], ns["sr4"], ns["info"]
    assert info.scale == 4 and isinstance(sr4, Volume)
    (i, j, k), (di, dj, dk) = vol.shape, vol.spacing
    assert sr4.shape == (4 * i, 4 * j, k)
    np.testing.assert_allclose(sr4.spacing, (di / 4, dj / 4, dk))
    assert sr4.data.dtype == vol.data.dtype


def test_a_2d_slice_comes_back_twice_as_large_in_its_dtype_and_units(api_run):
    code, ns, _ = api_run
    _claim(code, "# a 2-D array (H, W) → (2H, 2W), in the input's dtype and units")
    vol, out, sr = ns["vol"], ns["out"], ns["sr"]
    h, w = vol.data[:, :, 3].shape
    assert isinstance(out, np.ndarray) and out.shape == (2 * h, 2 * w)
    assert out.dtype == vol.data.dtype
    # same units: the slice alone and the slice inside the volume agree to 2 % of the range
    diff = np.abs(out.astype(float) - sr.data[:, :, 3].astype(float)).max()
    assert diff <= 0.02 * float(vol.data.max() - vol.data.min())


def test_the_folder_loop_mirrors_the_folder(api_run):
    _, ns, work = api_run
    from iconet.data.io import read_volume

    written = sorted(p.relative_to(work / "archive_sr") for p in (work / "archive_sr").rglob("*.nii.gz"))
    assert written == [Path("scan.nii.gz"), Path("site2/scan.nii.gz")]
    for rel in written:  # each is the same scan, so each result is the one-file result
        res = read_volume(work / "archive_sr" / rel)
        np.testing.assert_array_equal(res.data, ns["sr"].data)
        np.testing.assert_allclose(res.affine, ns["sr"].affine)


def test_build_model_outputs_are_the_named_shapes(api_run):
    code, ns, _ = api_run
    _claim(code, '{"sr": [x2, x4], "rec": [x1, x2]}')
    from iconet.models import build_model

    y = ns["y"]
    assert isinstance(ns["net"], torch.nn.Module)
    stated = re.search(r'y\["sr"\]\[-1\]: (\([\d, ]+\))', code).group(1)
    assert tuple(y["sr"][-1].shape) == ast.literal_eval(stated)
    assert [tuple(t.shape) for t in y["sr"]] == [(2, 1, 120, 108), (2, 1, 240, 216)]
    assert [tuple(t.shape) for t in y["rec"]] == [(2, 1, 60, 54), (2, 1, 120, 108)]
    # the other names the comment offers build at x4 too
    line = next(l for l in code.splitlines() if l.startswith("net = build_model("))
    for name in re.findall(r'"(\w+)"', line.split("#", 1)[1]):
        assert isinstance(build_model(name, scale=4), torch.nn.Module), name


# ---------------------------------------------------------------- the commands


def _commands() -> list[str]:
    """Every ``iconet ...`` command the README shows: the Commands table's examples, the shell
    blocks (``&&`` chains and pipes split, comments dropped), the ``$`` lines of the console
    block, and inline code of three words or more outside the fences."""
    cmds = []
    for row in _section("Commands").splitlines():
        if row.startswith("| `iconet "):
            cmds.append(row.rstrip(" |").rsplit("|", 1)[1].strip().strip("`"))
    for body in _fences(README, "bash", "sh", "console"):
        for line in body.splitlines():
            if line.startswith("$ "):
                line = line[2:]
            for part in re.split(r"&&|\|", line.split(" #", 1)[0]):
                if part.strip().startswith("iconet "):
                    cmds.append(part.strip())
    for span in re.findall(r"`([^`]+)`", FENCE.sub("", README)):
        span = " ".join(span.split())
        if span.startswith("iconet ") and len(span.split()) >= 3:
            cmds.append(span)
    return list(dict.fromkeys(cmds))


README_COMMANDS = _commands()


def test_the_readme_shows_the_commands_we_expect_to_check():
    from iconet.cli import COMMANDS

    table = [r.split("`")[1].split()[1] for r in _section("Commands").splitlines() if r.startswith("| `iconet ")]
    assert sorted(table) == sorted(COMMANDS)  # one row per sub-command
    for must in ("iconet demo", "iconet infer thick_t2.nii.gz iso.nii.gz --isotropic --save-model models/t2_iso",
                 "iconet data fetch-samples --dest data", "iconet data info slab_sr.nii.gz"):
        assert must in README_COMMANDS


@pytest.mark.parametrize("cmd", README_COMMANDS)
def test_every_readme_command_parses(cmd):
    argv = shlex.split(cmd)[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command does not parse (exit {exc.code}): {cmd}\n{err.getvalue()}")
    assert args.command == argv[0] and callable(args.func)


#: options the prose names that belong to a script, not to ``iconet``
SCRIPT_OPTIONS = {"--check": "benchmarks/tables.py"}


def test_every_option_named_in_the_prose_exists():
    """`--option` spans outside the fences name an option some sub-command has (or, for the
    few in SCRIPT_OPTIONS, the script the prose names there)."""
    def options(parser) -> set[str]:
        found = set(parser._option_string_actions)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= options(sub)
        return found

    named = {m.split()[0] for m in re.findall(r"`(--[a-z][\w-]*[^`]*)`", FENCE.sub("", README))}
    assert named, "expected the prose to name some options"
    for option, script in SCRIPT_OPTIONS.items():
        assert f'"{option}"' in (ROOT / script).read_text(), f"{script} has no {option}"
    missing = named - options(build_parser()) - set(SCRIPT_OPTIONS)
    assert not missing, f"README names options no command has: {sorted(missing)}"


def test_install_extras_named_in_the_readme_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {e for group in re.findall(r'-e "\.\[([\w,]+)\]"', README) for e in group.split(",")}
    assert named and named <= extras, sorted(named - extras)


def test_model_list_and_data_info_on_the_sample(capsys):
    assert main(["model", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("iconet-t1-x2", "iconet-t1-x2-fast", "iconet-t1-x4", "edsr", "t2net", "swinir"):
        assert name in listed
    assert main(["data", "info", str(sample_path())]) == 0
    shape = " x ".join(str(s) for s in nib.load(sample_path()).shape)
    assert re.search(rf"^shape\s+{shape}$", capsys.readouterr().out, re.M)


def _transcript() -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of the console block with the lines printed under each."""
    (body,) = _fences(_section("Commands"), "console")
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_console_transcript_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    """Each ``$ iconet ...`` of the console block but the demo (minutes; tests/test_demo.py)
    runs in a folder holding the README's input names, and prints the README's lines."""
    monkeypatch.chdir(tmp_path)
    src = _crop(tmp_path / "src/iconet/samples/colin27_slab.nii.gz")
    (tmp_path / "scan.nii.gz").write_bytes(src.read_bytes())
    before = (tmp_path / "scan.nii.gz").read_bytes()
    steps = [s for s in _transcript() if s[0] != "iconet demo"]
    assert len(steps) == 3
    for cmd, expected in steps:
        command, _, grep = cmd.partition(" | grep ")
        with _one_thread():
            rc = main(shlex.split(command)[1:])
        assert rc == (2 if expected[-1].startswith("iconet: error: ") else 0), f"$ {cmd}"
        cap = capsys.readouterr()
        lines = (cap.out + cap.err).splitlines()
        if grep:
            lines = [l for l in lines if grep.strip() in l]
        assert lines == expected, f"$ {cmd}"
    assert (tmp_path / "slab_sr.nii.gz").is_file()
    assert nib.load(tmp_path / "slab_sr.nii.gz").shape == (126, 130, 4)
    assert (tmp_path / "scan.nii.gz").read_bytes() == before  # the refused overwrite left it alone
