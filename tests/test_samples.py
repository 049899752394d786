"""Shipped sample and `iconet data` (fetch-samples from real archives with the download
simulated, info on real NIfTI and DICOM files). No network."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from iconet.cli import data as cli_data
from iconet.data import samples

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


def _sdist(folder: Path, payload: bytes) -> Path:
    """A real gzip tarball named like pycortex's sdist, holding ``payload`` as its S1 volume."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pycortex-1.4.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(samples.SAMPLES[S1].member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def _deb(folder: Path, payload: bytes) -> Path:
    """A real Debian package ``mricron-data`` built with dpkg-deb, holding ``payload`` as ch2."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is needed to build and unpack a .deb")
    root = folder / "mricron-data"
    member = root / samples.SAMPLES[COLIN].member
    member.parent.mkdir(parents=True)
    member.write_bytes(payload)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: mricron-data\nVersion: 1.2\nArchitecture: all\n"
        "Maintainer: iconet tests <tests@example.org>\nDescription: test build\n"
    )
    path = folder / "mricron-data_1.2_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(path)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return path


class Mirror:
    """subprocess.run for fetch-samples with the network simulated (CI cannot reach PyPI or
    Debian): ``pip download`` and ``apt-get download`` copy the real archives in ``served``;
    every other command (dpkg-deb) runs for real. ``downloads`` records the download commands."""

    def __init__(self, served: Path) -> None:
        self.served = served
        self.downloads: list[list[str]] = []
        self.run = subprocess.run  # the real one, for everything that needs no network

    def __call__(self, cmd, cwd=None, **kw):
        if "pip" in cmd:
            self.downloads.append(list(cmd))
            shutil.copy(self.served / "pycortex-1.4.0.tar.gz", Path(cmd[cmd.index("-d") + 1]))
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[:2] == ["apt-get", "download"]:
            self.downloads.append(list(cmd))
            shutil.copy(self.served / "mricron-data_1.2_all.deb", Path(cwd))
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return self.run(cmd, cwd=cwd, **kw)


def serve(monkeypatch, served: Path, payload: bytes) -> Mirror:
    """fetch-samples downloads, from now on, real archives (built in ``served``) holding ``payload``
    as both volumes (also used by tests/test_recipes.py)."""
    _sdist(served, payload)
    _deb(served, payload)
    real_which = shutil.which
    # part of the simulated network: apt-get itself may be absent on the test machine
    monkeypatch.setattr(samples.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get"
                        else real_which(name))
    fake = Mirror(served)
    monkeypatch.setattr(samples.subprocess, "run", fake)
    return fake


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Serves the shipped slab (a real NIfTI, not the whole volume either sample is) as both."""
    return serve(monkeypatch, tmp_path / "served", samples.sample_path().read_bytes())


def test_checksum_mismatch_reports_and_exits_nonzero(tmp_path, capsys, mirror):
    rc = _cli(["data", "fetch-samples", "--dest", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"FAILED  {S1}: checksum mismatch" in err and f"FAILED  {COLIN}: checksum mismatch" in err
    assert samples.sha256_of(samples.sample_path()) in err  # what was got, read back from both archives
    assert "could not fetch 2 of 2" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert any("pip" in c and "pycortex==1.4.0" in c and "--no-deps" in c for c in mirror.downloads)
    assert ["apt-get", "download", "mricron-data"] in mirror.downloads


def _offline(monkeypatch, tmp_path: Path) -> Path:
    """An empty PATH folder, and a pip that may look nowhere (no index, no links, no config)."""
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_missing_tool_reported(tmp_path, monkeypatch, capsys):
    _offline(monkeypatch, tmp_path)  # no apt-get on PATH; the real pip finds no pycortex
    rc = _cli(["data", "fetch-samples", "--dest", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"FAILED  {COLIN}: apt-get not found" in err and "mricron-data" in err
    assert f"FAILED  {S1}:" in err and "No matching distribution found for pycortex==1.4.0" in err


def test_tool_not_installed_at_all(tmp_path, monkeypatch):
    bin_dir = _offline(monkeypatch, tmp_path)
    apt = bin_dir / "apt-get"  # found on PATH, but its interpreter is missing: exec fails
    apt.write_text("#!/nonexistent/interpreter\n")
    apt.chmod(0o755)
    assert shutil.which("apt-get") == str(apt)
    fetched, failed = samples.fetch_samples(tmp_path / "out", names=[COLIN, "nope.nii.gz"])
    assert fetched == {}
    assert "'apt-get' not found" in failed[COLIN] and "unknown sample" in failed["nope.nii.gz"]


def test_fetch_success_writes_checked_file_and_reuses_archives(tmp_path, monkeypatch, capsys, mirror):
    slab = samples.sample_path()
    for name in (S1, COLIN):  # the constants are the whole volumes' hashes; the slab stands in
        spec = replace(samples.SAMPLES[name], sha256=samples.sha256_of(slab))
        monkeypatch.setitem(samples.SAMPLES, name, spec)
    dest, archives = tmp_path / "out", tmp_path / "archives"
    assert _cli(["data", "fetch-samples", "--dest", str(dest), "--archives", str(archives)]) == 0
    assert "ok" in capsys.readouterr().out
    want = nib.load(slab)
    for name in (S1, COLIN):  # unpacked from a real tarball and a real .deb (dpkg-deb -x)
        assert (dest / name).read_bytes() == slab.read_bytes()
        got = nib.load(dest / name)
        np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(want.dataobj))
        np.testing.assert_array_equal(got.affine, want.affine)
    assert sorted(p.name for p in archives.iterdir()) == ["mricron-data_1.2_all.deb", "pycortex-1.4.0.tar.gz"]
    (dest / S1).unlink()
    n = len(mirror.downloads)
    fetched, failed = samples.fetch_samples(dest, names=[S1], archives=archives)
    assert failed == {} and fetched[S1].read_bytes() == slab.read_bytes()
    assert len(mirror.downloads) == n  # archive reused: no new download


def test_checksums_match_the_shared_copies():
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("no shared/data beside the repository")
    for name, spec in samples.SAMPLES.items():
        assert samples.sha256_of(shared / name) == spec.sha256


# ----------------------------------------------------------------------------- info


def test_info_prints_what_nibabel_reads_from_the_shipped_sample(capsys):
    slab = samples.sample_path()
    data = np.asanyarray(nib.load(slab).dataobj)
    assert _cli(["data", "info", str(slab)]) == 0
    out = capsys.readouterr().out
    rng = f"range        {data.min():g} .. {data.max():g} (99.5th percentile {np.percentile(data, 99.5):g})"
    for words in ("181 x 217 x 8", "uint8", "1 x 1 x 4 mm", "RAS", "modality     unknown", rng):
        assert words in out


def test_info_prints_what_pydicom_reads_from_a_dicom_file(capsys):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    assert _cli(["data", "info", path]) == 0
    out = capsys.readouterr().out
    spacing = f"{float(ds.PixelSpacing[1]):g} x {float(ds.PixelSpacing[0]):g} x {float(ds.SliceThickness):g} mm"
    for words in (f"{ds.Columns} x {ds.Rows} x 1", str(pixels.dtype), spacing, f"modality     {ds.Modality}",
                  f"range        {pixels.min():g} .. {pixels.max():g}"):
        assert words in out
