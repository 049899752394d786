"""Shipped sample and `iconet data` (fetch-samples with faked downloads, info). No network."""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import types
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from iconet.cli import data as cli_data
from iconet.data import samples
from iconet.data.volume import Volume

S1 = "pycortex_S1_T1.nii.gz"
COLIN = "colin27_T1.nii.gz"


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="iconet")
    cli_data.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- shipped sample


def test_shipped_sample_is_small_real_and_geometric():
    path = samples.sample_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    img = nib.load(path)
    assert img.shape == (181, 217, 8) and img.get_data_dtype() == np.uint8
    assert "".join(nib.aff2axcodes(img.affine)) == "RAS"
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 4.0))
    assert not np.allclose(img.affine, np.eye(4))  # real scanner geometry, not a default
    np.testing.assert_allclose(img.affine[:3, 3], (-90.0, -125.0, -4.0))
    data = np.asanyarray(img.dataobj)
    assert (data > 0.1 * np.percentile(data, 99.5)).mean(axis=(0, 1)).min() > 0.10  # foreground


def test_sample_readme_states_provenance():
    text = (samples.sample_path().parent / "README.md").read_text()
    for words in ("mricron-data", "ch2.nii.gz", "BSD-3-Clause", "67, 71, 75"):
        assert words in text


# ----------------------------------------------------------------------------- fetch-samples


class FakeRun:
    """Stands in for subprocess.run: 'downloads' archives holding the given member bytes."""

    def __init__(self, payload: bytes = b"not a nifti", fail: str | None = None) -> None:
        self.payload = payload
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, cmd, cwd=None, **kw):
        self.calls.append(list(cmd))
        if self.fail:
            return subprocess.CompletedProcess(cmd, 1, "", f"some noise\n{self.fail}\n")
        if "pip" in cmd:
            dest = Path(cmd[cmd.index("-d") + 1])
            with tarfile.open(dest / "pycortex-1.4.0.tar.gz", "w:gz") as tar:
                info = tarfile.TarInfo(samples.SAMPLES[S1].member)
                info.size = len(self.payload)
                tar.addfile(info, io.BytesIO(self.payload))
        elif cmd[:2] == ["apt-get", "download"]:
            (Path(cwd) / "mricron-data_1.2_all.deb").write_bytes(b"!<arch>\n")
        elif cmd[:2] == ["dpkg-deb", "-x"]:
            member = Path(cmd[3]) / samples.SAMPLES[COLIN].member
            member.parent.mkdir(parents=True)
            member.write_bytes(self.payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setattr(samples.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_checksum_mismatch_reports_and_exits_nonzero(tmp_path, monkeypatch, capsys, tools):
    fake = FakeRun(b"tampered bytes")
    monkeypatch.setattr(samples.subprocess, "run", fake)
    rc = _cli(["data", "fetch-samples", "--dest", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"FAILED  {S1}: checksum mismatch" in err and f"FAILED  {COLIN}: checksum mismatch" in err
    assert hashlib.sha256(b"tampered bytes").hexdigest() in err
    assert "could not fetch 2 of 2" in err
    assert not (tmp_path / "out" / S1).exists() and not (tmp_path / "out" / COLIN).exists()
    assert any("pip" in c and "pycortex==1.4.0" in c and "--no-deps" in c for c in fake.calls)
    assert ["apt-get", "download", "mricron-data"] in fake.calls


def test_missing_tool_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(samples.shutil, "which", lambda name: None)
    monkeypatch.setattr(samples.subprocess, "run", FakeRun(fail="ERROR: No matching distribution found"))
    rc = _cli(["data", "fetch-samples", "--dest", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"FAILED  {COLIN}: apt-get not found" in err and "mricron-data" in err
    assert f"FAILED  {S1}:" in err and "No matching distribution" in err


def test_tool_not_installed_at_all(tmp_path, monkeypatch, tools):
    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(samples.subprocess, "run", missing)
    fetched, failed = samples.fetch_samples(tmp_path, names=[COLIN, "nope.nii.gz"])
    assert fetched == {}
    assert "'apt-get' not found" in failed[COLIN] and "unknown sample" in failed["nope.nii.gz"]


def test_fetch_success_writes_checked_file_and_reuses_archives(tmp_path, monkeypatch, capsys, tools):
    payload = b"pretend this is the real volume"
    for name in (S1, COLIN):
        spec = replace(samples.SAMPLES[name], sha256=hashlib.sha256(payload).hexdigest())
        monkeypatch.setitem(samples.SAMPLES, name, spec)
    fake = FakeRun(payload)
    monkeypatch.setattr(samples.subprocess, "run", fake)
    dest, archives = tmp_path / "out", tmp_path / "archives"
    assert _cli(["data", "fetch-samples", "--dest", str(dest), "--archives", str(archives)]) == 0
    assert (dest / S1).read_bytes() == payload and (dest / COLIN).read_bytes() == payload
    assert "ok" in capsys.readouterr().out
    (dest / S1).unlink()
    n = len(fake.calls)
    fetched, failed = samples.fetch_samples(dest, names=[S1], archives=archives)
    assert failed == {} and fetched[S1].read_bytes() == payload
    assert len(fake.calls) == n  # archive reused: no new download


def test_checksums_match_the_shared_copies():
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("no shared/data beside the repository")
    for name, spec in samples.SAMPLES.items():
        assert samples.sha256_of(shared / name) == spec.sha256


# ----------------------------------------------------------------------------- info


def test_info_prints_geometry(monkeypatch, capsys):
    def read_volume(path, *, frame=None, series_uid=None, nan_policy="error", max_bytes=None):
        img = nib.load(path)
        return Volume(np.asanyarray(img.dataobj), img.affine, modality="MR", source=Path(path))

    fake = types.ModuleType("iconet.data.io")
    fake.read_volume = read_volume  # the real reader is written in parallel; its contract is used
    monkeypatch.setitem(sys.modules, "iconet.data.io", fake)
    assert _cli(["data", "info", str(samples.sample_path())]) == 0
    out = capsys.readouterr().out
    for words in ("181 x 217 x 8", "uint8", "1 x 1 x 4 mm", "RAS", "MR", "range        0 .. "):
        assert words in out
