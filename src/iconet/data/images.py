"""Plain images without scanner geometry: PNG, TIFF (grayscale, 8/16 bit) and NPY arrays.

Axis convention: an image of ``H`` rows and ``W`` columns becomes ``data`` of shape
``(H, W, 1)`` (row index on axis 0); a multi-page TIFF of ``P`` pages becomes ``(H, W, P)``; a
2-D or 3-D ``.npy`` array is taken as is. The affine is ``diag(spacing)`` (unit spacing unless
``spacing=`` is given), origin 0: these formats carry no position or orientation, which the
Volume records as ``meta["geometry"] = "none"``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iconet.data.dtypes import as_native
from iconet.data.errors import DataError
from iconet.data.validate import check_ndim, check_size
from iconet.data.volume import Volume
from iconet.data.writing import DEFAULT_DESCRIPTION, GeometryNotStored, atomic_output, geometry_note

__all__ = ["read_png", "read_tiff", "read_npy", "write_png", "write_npy", "write_tiff"]

_PNG_SCALING_KEY = "iconet-scaling"


def _affine(spacing: Sequence[float] | None, path: Path) -> np.ndarray:
    if spacing is None:
        return np.eye(4)
    s = np.asarray(tuple(spacing), dtype=np.float64)
    if s.shape != (3,) or np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise DataError(path, f"spacing must be 3 positive numbers, got {tuple(spacing)}")
    return np.diag([*s, 1.0])


def _volume(data: np.ndarray, path: Path, spacing: Sequence[float] | None, fmt: str,
            **meta: object) -> Volume:
    return Volume(data=data, affine=_affine(spacing, path), modality=None,
                  meta={"format": fmt, "geometry": "none" if spacing is None else "spacing", **meta},
                  source=path)


def read_png(path: str | Path, *, max_bytes: int | None = None,
             spacing: Sequence[float] | None = None) -> Volume:
    """A grayscale 8- or 16-bit PNG as a ``(H, W, 1)`` volume (uint8 / uint16)."""
    from PIL import Image

    p = Path(path)
    try:
        with Image.open(p) as im:
            mode = im.mode
            size = im.size
            text = dict(getattr(im, "text", {}) or {})
            if mode in ("RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr", "LAB", "HSV"):
                raise DataError(p, f"is a colour or palette PNG (mode {mode}); only grayscale "
                                   "images are supported (convert it to grayscale first)")
            check_size(p, size[0] * size[1] * (2 if mode.startswith("I") else 1), max_bytes)
            im.load()
            arr = np.asarray(im)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on broken files
        raise DataError(p, f"unreadable PNG: {type(e).__name__}: {e}") from e
    if mode == "1":
        arr = arr.astype(np.uint8)
    elif mode in ("I", "I;16", "I;16B", "I;16L"):
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(p, f"32-bit integer PNG values outside 0..65535 (mode {mode})")
        arr = arr.astype(np.uint16)
    elif mode == "F":
        arr = arr.astype(np.float32)
    elif mode != "L":
        raise DataError(p, f"unsupported PNG mode {mode}")
    meta: dict[str, object] = {"png_mode": mode}
    if _PNG_SCALING_KEY in text:
        meta["png_scaling"] = text[_PNG_SCALING_KEY]
    return _volume(as_native(arr), p, spacing, "png", **meta)


def read_tiff(path: str | Path, *, max_bytes: int | None = None,
              spacing: Sequence[float] | None = None) -> Volume:
    """A grayscale TIFF (one page ``(H, W, 1)`` or a stack of pages ``(H, W, P)``), dtype kept."""
    import tifffile

    p = Path(path)
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            page = tif.pages[0]
            spp = int(getattr(page, "samplesperpixel", 1))
            photometric = getattr(page, "photometric", None)
            pname = getattr(photometric, "name", str(photometric))
            if spp != 1 or pname in ("RGB", "PALETTE", "YCBCR", "CMYK", "SEPARATED", "CIELAB"):
                raise DataError(p, f"is a colour TIFF ({pname}, {spp} samples per pixel); only "
                                   "grayscale images are supported")
            shape = tuple(int(s) for s in series.shape)
            check_size(p, int(np.prod(shape)) * np.dtype(series.dtype).itemsize, max_bytes)
            arr = series.asarray()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataError(p, f"unreadable TIFF: {type(e).__name__}: {e}") from e
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim == 2:
        data = arr
    elif arr.ndim == 3:
        data = np.moveaxis(arr, 0, -1)  # (pages, H, W) -> (H, W, pages)
    else:
        raise DataError(p, f"is a {arr.ndim}-D TIFF of shape {arr.shape}; only single images and "
                           "page stacks are supported")
    if data.dtype.kind == "c":
        raise DataError(p, "holds complex values; only real grayscale images are supported")
    return _volume(np.ascontiguousarray(as_native(data)), p, spacing, "tiff")


def read_npy(path: str | Path, *, max_bytes: int | None = None,
             spacing: Sequence[float] | None = None) -> Volume:
    """A 2-D or 3-D ``.npy`` array, axes as stored. Pickled object arrays are refused."""
    p = Path(path)
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise DataError(p, f"not a plain numeric .npy array ({e})") from e
    except Exception as e:  # noqa: BLE001
        raise DataError(p, f"unreadable .npy file: {type(e).__name__}: {e}") from e
    check_ndim(arr.shape, p, what="array")
    if arr.dtype.kind not in "biuf":
        raise DataError(p, f"has dtype {arr.dtype}; only real numeric arrays are supported")
    check_size(p, int(arr.nbytes), max_bytes)
    shape = tuple(arr.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    try:
        data = np.array(arr, copy=True).reshape(shape)
    except (OSError, ValueError) as e:
        raise DataError(p, f"truncated or corrupt .npy data: {e}") from e
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    return _volume(as_native(data), p, spacing, "npy")


def _geometry_warning(volume: Volume, path: Path) -> None:
    """Warn (:class:`GeometryNotStored`, attributed to the caller's line outside iconet) what
    the file at ``path`` (PNG, TIFF, NPY) leaves out of ``volume``'s geometry (:func:`geometry_note`)."""
    note = geometry_note(volume, path)
    if note is None:
        return
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the caller of this function
    while frame is not None and frame.f_globals.get("__name__", "").startswith("iconet."):
        level, frame = level + 1, frame.f_back
    warnings.warn(note, GeometryNotStored, stacklevel=level)


def _png_plane(volume: Volume, path: Path) -> np.ndarray:
    data = np.asarray(volume.data)
    if data.shape[2] != 1:
        raise DataError(path, f"PNG holds one 2-D slice, the volume has {data.shape[2]} slices "
                              f"(shape {data.shape}); write .tif, .npy, .nii.gz or a DICOM folder")
    return data[:, :, 0]


def write_png(volume: Volume, path: str | Path, *, scale: str | tuple[float, float] | None = None,
              bits: int | None = None, description: str = DEFAULT_DESCRIPTION) -> Path:
    """Write a single-slice volume as a grayscale PNG.

    Without ``scale`` the values must be integers in 0..255 (8-bit) or 0..65535 (16-bit) and
    are stored exactly; anything else is refused with the range found. ``scale="minmax"`` maps
    [min, max] and ``scale=(low, high)`` maps [low, high] (clipped) linearly onto the full
    range of ``bits`` (16 unless given); the mapping is written into the PNG as the text field
    ``iconet-scaling`` (``value = stored * slope + intercept``).
    """
    from PIL import Image, PngImagePlugin

    p = Path(path)
    plane = _png_plane(volume, p)
    if plane.dtype.kind == "c":
        raise DataError(p, "complex values cannot be written to PNG; take the magnitude first")
    if plane.dtype == np.bool_:
        plane = plane.astype(np.uint8)
    if bits not in (None, 8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", " ".join(description.split()))
    if plane.dtype.kind == "f" and not np.all(np.isfinite(plane)):
        raise DataError(p, f"has {int(np.count_nonzero(~np.isfinite(plane)))} NaN/Inf pixels, "
                           "which PNG cannot store")
    if scale is None:
        lo, hi = float(plane.min()), float(plane.max())
        integral = plane.dtype.kind in "iu" or bool(np.all(plane == np.round(plane)))
        nbits = bits or (8 if hi <= 255 else 16)
        top = 255 if nbits == 8 else 65535
        if not integral or lo < 0 or hi > top:
            what = "non-integer" if not integral else f"range {lo:g}..{hi:g}"
            raise DataError(p, f"values ({what}) do not fit a {nbits}-bit PNG (0..{top}) exactly; "
                               "pass scale='minmax' or scale=(low, high) to map them (the mapping "
                               "is recorded in the file), or write .tif/.npy/.nii.gz")
        stored = plane.astype(np.uint8 if nbits == 8 else np.uint16)
    else:
        nbits = bits or 16
        top = 255 if nbits == 8 else 65535
        if isinstance(scale, str):
            if scale != "minmax":
                raise ValueError(f"scale must be 'minmax' or (low, high), got {scale!r}")
            lo, hi = float(plane.min()), float(plane.max())
        else:
            lo, hi = (float(v) for v in scale)
            if not hi > lo:
                raise ValueError(f"scale=(low, high) needs high > low, got {scale}")
        slope = (hi - lo) / top if hi > lo else 1.0
        stored_f = np.clip(np.rint((plane.astype(np.float64) - lo) / slope), 0, top)
        stored = stored_f.astype(np.uint8 if nbits == 8 else np.uint16)
        info.add_text(_PNG_SCALING_KEY, f"value = stored * {slope!r} + {lo!r} "
                                        f"(window {lo!r}..{hi!r}, {nbits} bit)")
    with atomic_output(p) as tmp:
        try:
            Image.fromarray(np.ascontiguousarray(stored)).save(tmp, format="PNG", pnginfo=info)
        except Exception as e:  # noqa: BLE001
            raise DataError(p, f"cannot write PNG: {e}") from e
    _geometry_warning(volume, p)
    return p


def write_npy(volume: Volume, path: str | Path) -> Path:
    """Write the voxel array as ``.npy`` (dtype and axes as in ``volume.data``)."""
    p = Path(path)
    with atomic_output(p) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(volume.data), allow_pickle=False)
    _geometry_warning(volume, p)
    return p


def write_tiff(volume: Volume, path: str | Path, *, description: str = DEFAULT_DESCRIPTION) -> Path:
    """Write a grayscale TIFF: one page per slice (``(H, W, P)`` -> ``P`` pages), dtype kept."""
    import tifffile

    p = Path(path)
    data = np.asarray(volume.data)
    if data.dtype.kind == "c":
        raise DataError(p, "complex values cannot be written to TIFF; take the magnitude first")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    pages = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    if pages.shape[0] == 1:
        pages = pages[0]
    with atomic_output(p) as tmp:
        try:
            tifffile.imwrite(tmp, pages, photometric="minisblack",
                             description=" ".join(description.split()), metadata=None)
        except Exception as e:  # noqa: BLE001
            raise DataError(p, f"cannot write TIFF: {e}") from e
    _geometry_warning(volume, p)
    return p
