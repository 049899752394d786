"""fastMRI HDF5 files (knee / brain, single- and multi-coil) as volumes.

Layout (fastMRI's public files): ``kspace`` complex64 ``(slices, H, W)`` (single-coil) or
``(slices, coils, H, W)`` (multi-coil); optional ``reconstruction_esc`` (single-coil target) /
``reconstruction_rss`` (multi-coil target), float32 ``(slices, h, w)``; optional
``ismrmrd_header`` (XML, a dataset in the real files; an attribute is accepted too); attributes
such as ``max``, ``norm``, ``acquisition``, ``patient_id``.

Slices go on the last axis of the Volume: ``data[:, :, s]`` is slice ``s`` (``H`` rows on axis
0). Without a reconstruction the image is the root-sum-of-squares over coils of the magnitude
of the centred orthonormal inverse FFT (:func:`iconet.ops.fft.ifft2c`), at the full k-space
size (no readout-oversampling crop). Spacing comes from the ISMRMRD header when present
(rows = encoding ``x``, columns = ``y``, slices = ``z`` field of view), else 1 mm; there is no
position or orientation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iconet.data.errors import DataError
from iconet.data.validate import check_size
from iconet.data.volume import Volume

__all__ = ["read_fastmri", "rss_from_kspace", "parse_ismrmrd_fov"]

RECONSTRUCTIONS = ("reconstruction_esc", "reconstruction_rss")
_ATTRS = ("max", "norm", "acquisition", "patient_id")


def _text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.item() if v.size == 1 else v.tobytes()
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def parse_ismrmrd_fov(xml: str | bytes) -> dict[str, tuple[tuple[float, float, float], tuple[int, int, int]]]:
    """``{"encodedSpace": (fov_mm_xyz, matrix_xyz), "reconSpace": ...}`` from an ISMRMRD header.

    Spaces that are missing are left out; an unparsable header gives ``{}``.
    """
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", "replace")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def child(node: ET.Element | None, name: str) -> ET.Element | None:
        if node is None:
            return None
        for c in node:
            if local(c.tag) == name:
                return c
        return None

    enc = child(root, "encoding")
    out: dict[str, tuple[tuple[float, float, float], tuple[int, int, int]]] = {}
    for space in ("encodedSpace", "reconSpace"):
        s = child(enc, space)
        fov, mat = child(s, "fieldOfView_mm"), child(s, "matrixSize")
        try:
            f = tuple(float(child(fov, a).text) for a in "xyz")  # type: ignore[union-attr,arg-type]
            m = tuple(int(child(mat, a).text) for a in "xyz")  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError):
            continue
        out[space] = (f, m)  # type: ignore[assignment]
    return out


def rss_from_kspace(kspace: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over coils of ``|ifft2c(kspace)|``: ``(coils, H, W)`` complex
    (``coils = 1`` for single-coil, where it is just the magnitude) -> float32 ``(H, W)``."""
    import torch

    from iconet.ops.fft import ifft2c

    k = torch.from_numpy(np.ascontiguousarray(kspace))
    if not torch.is_complex(k):
        raise ValueError("k-space must be complex")
    img = ifft2c(k.to(torch.complex64))
    return torch.sqrt((img.abs() ** 2).sum(dim=0)).numpy().astype(np.float32, copy=False)


def read_fastmri(path: str | Path, *, dataset: str | None = None, max_bytes: int | None = None,
                 spacing: Sequence[float] | None = None) -> Volume:
    """Read a fastMRI ``.h5`` file as a float32 ``(H, W, slices)`` volume.

    Args:
        dataset: ``"reconstruction_esc"``, ``"reconstruction_rss"`` or ``"kspace"``; by
            default the reconstruction matching the file (``esc`` for single-coil k-space,
            ``rss`` for multi-coil), else whichever exists, else RSS from ``kspace``.
        spacing: override the voxel size (mm); default from the ISMRMRD header, else 1.
    """
    import h5py

    p = Path(path)
    try:
        hf = h5py.File(p, "r")
    except Exception as e:  # noqa: BLE001
        raise DataError(p, f"unreadable HDF5 file: {type(e).__name__}: {e}") from e
    with hf:
        keys = sorted(hf.keys())
        kspace = hf.get("kspace")
        if kspace is not None and not isinstance(kspace, h5py.Dataset):
            kspace = None
        multicoil = kspace is not None and kspace.ndim == 4
        if dataset is None:
            prefer = ("reconstruction_rss", "reconstruction_esc") if multicoil else RECONSTRUCTIONS
            dataset = next((d for d in prefer if isinstance(hf.get(d), h5py.Dataset)), None)
            if dataset is None and kspace is not None:
                dataset = "kspace"
        if dataset is None:
            raise DataError(p, f"is not a fastMRI file: no 'kspace' or reconstruction dataset "
                               f"(it holds: {', '.join(keys) or 'nothing'})")
        if dataset not in (*RECONSTRUCTIONS, "kspace") or not isinstance(hf.get(dataset), h5py.Dataset):
            raise DataError(p, f"has no dataset {dataset!r} (it holds: {', '.join(keys)})")
        header = None
        if "ismrmrd_header" in hf:
            header = _text(hf["ismrmrd_header"][()])
        elif "ismrmrd_header" in hf.attrs:
            header = _text(hf.attrs["ismrmrd_header"])
        meta: dict[str, Any] = {"format": "fastmri", "fastmri_dataset": dataset,
                                "multicoil": bool(multicoil)}
        for a in _ATTRS:
            if a in hf.attrs:
                meta[a] = _plain(hf.attrs[a])
        try:
            if dataset == "kspace":
                data = _rss_volume(hf["kspace"], p, max_bytes)
                space = "encodedSpace"
            else:
                ds = hf[dataset]
                if ds.ndim != 3:
                    raise DataError(p, f"{dataset} has shape {ds.shape}; expected (slices, H, W)")
                check_size(p, int(np.prod(ds.shape)) * 4, max_bytes)
                arr = np.asarray(ds[()])
                if arr.dtype.kind == "c":
                    raise DataError(p, f"{dataset} is complex; expected magnitude images")
                data = np.ascontiguousarray(np.moveaxis(arr.astype(np.float32, copy=False), 0, -1))
                space = "reconSpace"
        except (OSError, KeyError) as e:
            raise DataError(p, f"truncated or corrupt HDF5 data in {dataset!r}: {e}") from e
    affine = np.eye(4)
    if spacing is not None:
        s = np.asarray(tuple(spacing), dtype=np.float64)
        if s.shape != (3,) or np.any(s <= 0):
            raise DataError(p, f"spacing must be 3 positive numbers, got {tuple(spacing)}")
        affine = np.diag([*s, 1.0])
        meta["geometry"] = "spacing"
    elif header is not None and space in (fov := parse_ismrmrd_fov(header)):
        (fx, fy, fz), (_, _, mz) = fov[space]
        H, W = data.shape[:2]
        affine = np.diag([fx / H, fy / W, fz / max(mz, 1), 1.0])
        meta["geometry"] = f"spacing from ISMRMRD {space}"
    else:
        meta["geometry"] = "none"
    return Volume(data=data, affine=affine, modality="MR", meta=meta, source=p)


def _rss_volume(ks: Any, p: Path, max_bytes: int | None) -> np.ndarray:
    if ks.ndim not in (3, 4):
        raise DataError(p, f"kspace has shape {ks.shape}; expected (slices, H, W) or "
                           "(slices, coils, H, W)")
    if np.dtype(ks.dtype).kind != "c":
        raise DataError(p, f"kspace has dtype {ks.dtype}; expected complex values")
    n, H, W = ks.shape[0], ks.shape[-2], ks.shape[-1]
    check_size(p, n * H * W * 4, max_bytes)
    out = np.empty((H, W, n), dtype=np.float32)
    for s in range(n):  # one slice at a time: multi-coil k-space is large
        k = np.asarray(ks[s])
        if k.ndim == 2:
            k = k[None]
        out[:, :, s] = rss_from_kspace(k)
    return out
