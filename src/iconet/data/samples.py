"""Real sample data: the small slab shipped with iconet and the two public T1 volumes.

* :func:`sample_path` — ``iconet/samples/colin27_slab.nii.gz``, 8 axial slices of Colin27
  shipped inside the package (see ``samples/README.md`` for provenance and licence).
* :func:`fetch_samples` — fetches the two whole T1 head volumes the project develops on
  from public package registries, checks their SHA-256 and writes them to a folder:

  ====================== ================================================================
  ``pycortex_S1_T1.nii.gz``  PyPI sdist ``pycortex==1.4.0`` (``pip download --no-deps``),
                             member ``pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz``;
                             BSD-2-Clause. Training subject; its held-out validation slab is
                             written to ``s1_holdout/`` beside it (:mod:`iconet.data.holdout`).
  ``colin27_T1.nii.gz``      Debian package ``mricron-data`` (``apt-get download`` +
                             ``dpkg-deb -x``), ``usr/share/mricron/templates/ch2.nii.gz``;
                             BSD-3-Clause. Held-out subject: never train or tune on it.
  ====================== ================================================================

Nothing is installed: pip only downloads the sdist, apt only downloads the ``.deb``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class RemoteSample:
    """Where one sample volume comes from and what it must hash to."""

    filename: str
    sha256: str
    source: str  # "pypi" or "debian"
    package: str  # pip requirement or Debian package name
    archive_glob: str  # the downloaded archive's file name pattern
    member: str  # path of the file inside the archive
    licence: str
    description: str


SAMPLES: dict[str, RemoteSample] = {
    "pycortex_S1_T1.nii.gz": RemoteSample(
        filename="pycortex_S1_T1.nii.gz",
        sha256="1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28",
        source="pypi",
        package="pycortex==1.4.0",
        archive_glob="pycortex-1.4.0.tar.gz",
        member="pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
        licence="BSD-2-Clause",
        description="subject S1, real T1 head scan, 256x256x256, 1 mm, uint8 (training)",
    ),
    "colin27_T1.nii.gz": RemoteSample(
        filename="colin27_T1.nii.gz",
        sha256="a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
        source="debian",
        package="mricron-data",
        archive_glob="mricron-data_*.deb",
        member="usr/share/mricron/templates/ch2.nii.gz",
        licence="BSD-3-Clause",
        description="Colin27 (ch2), average of 27 T1 scans, 181x217x181, 1 mm, uint8 (held out)",
    ),
}

#: the shipped slab (inside the package)
SAMPLE_FILE = "colin27_slab.nii.gz"


class FetchError(RuntimeError):
    """One sample could not be fetched; the message says why and what to do."""


def sample_path() -> Path:
    """Path of the shipped real sample ``iconet/samples/colin27_slab.nii.gz``.

    Eight axial slices (every 4th) from the middle of Colin27 with its real affine
    (spacing 1 × 1 × 4 mm). Requires iconet installed as files (not zipped), which is how
    pip installs it.
    """
    res = resources.files("iconet").joinpath("samples", SAMPLE_FILE)
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped sample is missing (broken install?)")
    return path


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path) -> None:
    """Run an external command; FetchError with its last output line when it fails."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"'{cmd[0]}' not found") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        raise FetchError(f"'{' '.join(cmd)}' failed with status {proc.returncode}: {last}")


def _find_archive(folder: Path, pattern: str) -> Path | None:
    hits = sorted(glob.glob(str(folder / pattern)))
    return Path(hits[-1]) if hits else None


def _download(spec: RemoteSample, archives: Path) -> Path:
    """The downloaded archive of ``spec`` in ``archives`` (downloads it unless present)."""
    found = _find_archive(archives, spec.archive_glob)
    if found is not None:
        return found
    if spec.source == "pypi":
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(archives), spec.package], archives)
    elif spec.source == "debian":
        if shutil.which("apt-get") is None:
            raise FetchError(
                f"apt-get not found: {spec.filename} comes from the Debian package {spec.package}; "
                f"on a non-Debian machine download {spec.package}_*.deb from a Debian mirror into "
                f"{archives} and run again with --archives {archives}"
            )
        try:
            _run(["apt-get", "download", spec.package], archives)
        except FetchError as err:
            raise FetchError(f"{err} (run 'apt-get update' first if the package is unknown)") from None
    else:  # pragma: no cover - constants above
        raise FetchError(f"unknown source {spec.source!r}")
    found = _find_archive(archives, spec.archive_glob)
    if found is None:
        raise FetchError(f"the download left no {spec.archive_glob} in {archives}")
    return found


def _extract(spec: RemoteSample, archive: Path, work: Path) -> bytes:
    """The bytes of ``spec.member`` inside ``archive`` (a tarball or a .deb)."""
    if archive.name.endswith(".deb"):
        if shutil.which("dpkg-deb") is None:
            raise FetchError(f"dpkg-deb not found: cannot unpack {archive.name} (install dpkg)")
        out = work / "deb"
        out.mkdir(exist_ok=True)
        _run(["dpkg-deb", "-x", str(archive), str(out)], work)
        target = out / spec.member
        if not target.is_file():
            raise FetchError(f"{archive.name} has no {spec.member}")
        return target.read_bytes()
    try:
        with tarfile.open(archive) as tar:
            f = tar.extractfile(spec.member)  # reads one member, writes nothing to disk
            if f is None:
                raise KeyError(spec.member)
            return f.read()
    except KeyError:
        raise FetchError(f"{archive.name} has no {spec.member}") from None
    except tarfile.TarError as err:
        raise FetchError(f"{archive.name} is not a readable tarball ({err})") from None


def fetch_one(spec: RemoteSample, dest: Path, archives: Path | None = None) -> Path:
    """Fetch one sample into ``dest``; returns its path. Raises :class:`FetchError`.

    A file already in ``dest`` with the right SHA-256 is kept. The new file is written
    under a temporary name and renamed only once its checksum matches.
    """
    dest = Path(dest)
    target = dest / spec.filename
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iconet-fetch-") as tmp:
        work = Path(tmp)
        archive = _download(spec, Path(archives) if archives is not None else work)
        data = _extract(spec, archive, work)
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise FetchError(
                f"checksum mismatch for {spec.member} from {archive.name}: got sha256 {digest}, "
                f"expected {spec.sha256}; the file was not written"
            )
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        os.replace(part, target)
    return target


def fetch_samples(
    dest: str | Path, names: list[str] | None = None, archives: str | Path | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Fetch the sample volumes (all of :data:`SAMPLES` by default) into ``dest``.

    Args:
        dest: output folder (created).
        names: file names to fetch (keys of :data:`SAMPLES`).
        archives: folder where downloaded archives are kept and looked up first (so a second
            run, or an offline machine with the archives copied in, downloads nothing);
            ``None`` downloads into a temporary folder.

    Once pycortex S1 is in ``dest``, its held-out split for the S1 recipes is written to
    ``dest/s1_holdout/S1_train.nii.gz`` and ``S1_val.nii.gz`` (:mod:`iconet.data.holdout`;
    kept when both are there already); a failure there is reported under ``"s1_holdout"``.

    Returns:
        ``(fetched, failed)``: name → path (the samples asked for), and name → reason.
    """
    fetched: dict[str, Path] = {}
    failed: dict[str, str] = {}
    if archives is not None:
        Path(archives).mkdir(parents=True, exist_ok=True)
    for name in names or list(SAMPLES):
        spec = SAMPLES.get(name)
        if spec is None:
            failed[name] = f"unknown sample; expected one of {', '.join(SAMPLES)}"
            continue
        try:
            fetched[name] = fetch_one(spec, Path(dest), None if archives is None else Path(archives))
        except FetchError as err:
            failed[name] = str(err)
        except OSError as err:
            failed[name] = f"{type(err).__name__}: {err}"
    from iconet.data import holdout  # nibabel: only once a volume was fetched

    s1 = "pycortex_S1_T1.nii.gz"
    if s1 in fetched and SAMPLES[s1].sha256 == holdout.S1_SHA256:  # the split is defined for this volume
        folder = Path(dest) / holdout.FOLDER
        if not all((folder / f"{n}.nii.gz").is_file() for n in (holdout.TRAIN_NAME, holdout.VAL_NAME)):
            try:
                holdout.write_s1_holdout(fetched[s1], folder)
            except (ValueError, OSError) as err:
                failed["s1_holdout"] = f"S1's held-out split ({folder}): {err}"
    return fetched, failed
