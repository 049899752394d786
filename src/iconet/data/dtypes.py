"""Array types the readers hand out: native byte order, and the float type a rescale needs.

A leaf of ``iconet.data`` (numpy only), shared by the format readers and :mod:`iconet.api_types`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_native", "float_dtype_for", "restore_dtype"]


def as_native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (same kind and size): big-endian files are common."""
    if a.dtype.byteorder not in ("=", "|") and a.dtype.byteorder != ("<" if np.little_endian else ">"):
        return a.astype(a.dtype.newbyteorder("="))
    return a


def float_dtype_for(source: np.dtype) -> np.dtype:
    """Float type that holds a rescaled ``source``: float32 for <= 16-bit, else float64."""
    source = np.dtype(source)
    if source.kind == "f":
        return np.dtype(np.float64) if source.itemsize >= 8 else np.dtype(np.float32)
    return np.dtype(np.float32) if source.itemsize <= 2 else np.dtype(np.float64)


def restore_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast to ``dtype``: integers are rounded and clipped to the type's range (never wrapped)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return np.asarray(array).astype(dtype)
