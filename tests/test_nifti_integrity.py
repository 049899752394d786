"""A damaged .nii.gz is refused with one line naming the file, wherever the damage is.

nibabel stops reading a gzip stream once it has the voxels it needs, so a broken CRC-32 or
length in the trailer (and damage that the deflate decoder survives) used to pass unnoticed and
be super-resolved. The reader now checks the whole stream. The input is the package's real
Colin27 slab (a single-member gzip written by nibabel) and nibabel's own 4-D example.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from iconet.cli import main
from iconet.data.errors import DataError
from iconet.data.io import read_volume
from iconet.data.samples import sample_path

SEED = 19


def _deflate_span(comp: bytes) -> tuple[int, int]:
    """(start, end) of the raw deflate data of a single-member gzip file (header and trailer
    excluded), found by decoding, not assumed."""
    flags = comp[3]
    pos = 10
    if flags & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(comp[pos:pos + 2], "little")
    for bit in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            pos = comp.index(b"\x00", pos) + 1
    if flags & 0x02:  # FHCRC
        pos += 2
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    d.decompress(comp[pos:])
    assert d.eof and len(d.unused_data) == 8, "expected one gzip member and its 8-byte trailer"
    return pos, len(comp) - 8


def _corruptions(comp: bytes) -> list[tuple[str, bytes]]:
    """Trailer CRC, trailer length, and seeded byte flips across the middle of the deflate data."""
    out = []
    for name, at in (("crc", len(comp) - 8), ("crc-last-byte", len(comp) - 5), ("isize", len(comp) - 4)):
        b = bytearray(comp)
        b[at] ^= 0xFF
        out.append((name, bytes(b)))
    start, end = _deflate_span(comp)
    rng = np.random.default_rng(SEED)
    lo, hi = start + (end - start) // 10, end - (end - start) // 10  # away from the block edges
    for at in sorted(rng.choice(np.arange(lo, hi), size=12, replace=False).tolist()):
        b = bytearray(comp)
        b[at] ^= int(rng.integers(1, 256))
        out.append((f"deflate@{at}", bytes(b)))
    b = bytearray(comp)
    b[(start + end) // 2:(start + end) // 2 + 16] = bytes(16)  # a zeroed run
    out.append(("zeroed-run", bytes(b)))
    out.append(("cut-trailer", comp[:-3]))
    return out


@pytest.fixture(scope="module")
def slab() -> bytes:
    return sample_path().read_bytes()


def test_the_sample_is_what_the_corruptions_assume(slab, tmp_path):
    assert slab[:2] == b"\x1f\x8b"
    start, end = _deflate_span(slab)
    assert 0 < start < end
    # nibabel alone reads a broken CRC without a word: the check is iconet's
    bad = bytearray(slab)
    bad[-8] ^= 0xFF
    p = tmp_path / "crc.nii.gz"
    p.write_bytes(bytes(bad))
    assert np.asarray(nib.load(p).dataobj).shape == (181, 217, 8)


def test_every_corruption_is_refused_in_one_line_naming_the_file(slab, tmp_path):
    intact = tmp_path / "intact.nii.gz"
    intact.write_bytes(slab)
    ref = read_volume(intact)
    assert ref.shape == (181, 217, 8)
    assert np.array_equal(ref.data, np.asarray(nib.load(sample_path()).dataobj))
    refused = []
    for name, data in _corruptions(slab):
        p = tmp_path / f"bad_{name.replace('@', '_')}.nii.gz"
        p.write_bytes(data)
        with pytest.raises(DataError) as e:
            read_volume(p)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{p}: "), msg
        assert "corrupt" in msg or "truncated" in msg, msg
        refused.append(name)
    assert len(refused) == 17


def test_cli_refuses_a_broken_crc_in_one_line(slab, tmp_path, capsys):
    p = tmp_path / "scan.nii.gz"
    bad = bytearray(slab)
    bad[-6] ^= 0x5A
    p.write_bytes(bytes(bad))
    assert main(["data", "info", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(p) in err and "gzip" in err


def test_4d_series_is_checked_too(tmp_path):
    src = Path(data_path) / "example4d.nii.gz"
    comp = src.read_bytes()
    good = tmp_path / "good4d.nii.gz"
    good.write_bytes(comp)
    frame0 = read_volume(good, frame=0)
    assert np.array_equal(frame0.data, np.asarray(nib.load(src).dataobj)[..., 0])
    bad = bytearray(comp)
    bad[-8] ^= 0xFF  # only the trailer: frame 0 decompresses fine
    p = tmp_path / "bad4d.nii.gz"
    p.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="corrupt gzip stream") as e:
        read_volume(p, frame=0)
    assert str(e.value).startswith(f"{p}: ")
