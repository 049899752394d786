"""NIfTI-1 and NIfTI-2 (``.nii``, ``.nii.gz``) through nibabel, keeping dtype and geometry."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from iconet.data.dtypes import as_native, float_dtype_for
from iconet.data.errors import DataError
from iconet.data.geometry import is_sheared
from iconet.data.validate import check_size
from iconet.data.volume import Volume
from iconet.data.writing import atomic_output

__all__ = ["read_nifti", "write_nifti"]

# NIfTI xyzt_units spatial codes -> factor to millimetres.
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}
_NIFTI1_MAX_SIDE = 32767


def _core_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    s = tuple(int(v) for v in shape)
    while len(s) > 3 and s[-1] == 1:
        s = s[:-1]
    return s


def read_nifti(path: str | Path, *, frame: int | None = None,
               max_bytes: int | None = None) -> Volume:
    """Read a 2-D, 3-D or 4-D (with ``frame``) NIfTI-1/2 image.

    The voxel dtype is the file's (native byte order) unless ``scl_slope``/``scl_inter`` are
    present and not (1, 0): then the scaled values as float32 (float64 for 32/64-bit data).
    The affine is nibabel's (sform if its code > 0, else qform, else pixdim), in millimetres
    (converted if ``xyzt_units`` says metres or microns).
    """
    p = Path(path)
    try:
        img = nib.load(str(p), mmap=False)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise DataError(p, f"not a readable NIfTI file: {e}") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(p, f"is a {type(img).__name__}, not NIfTI-1/2")
    hdr = img.header
    full_shape = tuple(int(v) for v in img.shape)
    shape = _core_shape(full_shape)
    if len(shape) < 2 or len(shape) > 4:
        raise DataError(p, f"is a {len(shape)}-D image of shape {full_shape}; only 2-D, 3-D and "
                           "4-D (with frame=) NIfTI images are supported")
    n_frames = shape[3] if len(shape) == 4 else 1
    if len(shape) == 4:
        if frame is None:
            raise DataError(p, f"is 4-D with {n_frames} frames (shape {full_shape}); "
                               f"choose one with frame=0..{n_frames - 1}")
        if not 0 <= frame < n_frames:
            raise DataError(p, f"has {n_frames} frames; frame={frame} is out of range "
                               f"(valid: 0..{n_frames - 1})")
    elif frame not in (None, 0):
        raise DataError(p, f"has 1 frame; frame={frame} does not exist (valid: 0)")

    proxy = img.dataobj
    raw_dtype = np.dtype(img.get_data_dtype())
    if raw_dtype.kind not in "biuf":
        kind = "RGB" if raw_dtype.names else ("complex" if raw_dtype.kind == "c" else str(raw_dtype))
        raise DataError(p, f"has {kind} voxels (NIfTI datatype {hdr.get_data_dtype()}); only real "
                           "scalar images are supported")
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    scaled = not (slope == 1.0 and inter == 0.0)
    out_dtype = float_dtype_for(raw_dtype) if scaled else raw_dtype.newbyteorder("=")
    spatial = shape[:3] if len(shape) >= 3 else shape
    check_size(p, int(np.prod(spatial)) * out_dtype.itemsize, max_bytes)
    _check_truncated(p, img, full_shape, raw_dtype)
    if p.name.lower().endswith(".gz"):
        img = _verified_gzip_image(p, img, n_frames)
        proxy = img.dataobj

    try:
        if len(shape) == 4:
            index = (slice(None),) * 3 + (frame,) + (0,) * (len(full_shape) - 4)
            data = np.asarray(proxy[index])
        else:
            data = np.asarray(proxy).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise DataError(p, f"truncated or corrupt voxel data: {e}") from e
    data = as_native(data)
    data = data.astype(out_dtype, copy=False)

    unit = hdr.get_xyzt_units()[0]
    affine = np.array(img.affine, dtype=np.float64)
    factor = _UNIT_TO_MM.get(unit, 1.0)
    if factor != 1.0:
        affine[:3, :] *= factor
    sform_code = int(hdr["sform_code"])
    qform_code = int(hdr["qform_code"])
    meta = {
        "format": "nifti",
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "qform_code": qform_code,
        "sform_code": sform_code,
        "affine_source": "sform" if sform_code > 0 else ("qform" if qform_code > 0 else "pixdim"),
        "descrip": _bytes_to_str(hdr["descrip"]),
        "spatial_unit": unit,
        "source_dtype": raw_dtype.newbyteorder("=").str,
        "n_frames": n_frames,
    }
    if len(shape) == 4:
        meta["frame"] = int(frame)  # type: ignore[arg-type]
    if scaled:
        meta["rescale"] = {"slope": slope, "intercept": inter}
    return Volume(data=data, affine=affine, modality=None, meta=meta, source=p)


def _bytes_to_str(v: object) -> str:
    try:
        b = np.asarray(v).item()
        return b.decode("latin-1").split("\x00")[0].strip() if isinstance(b, bytes) else str(b)
    except Exception:  # noqa: BLE001
        return ""


def _verified_gzip_image(p: Path, img: nib.Nifti1Image, n_frames: int) -> nib.Nifti1Image:
    """Decompress the whole ``.nii.gz`` stream, checking every member's CRC-32 and length.

    nibabel reads a gzip stream only as far as the voxels it needs and never reaches the
    trailer, so a damaged CRC, a damaged tail or bit flips the deflate decoder survives went
    unnoticed. A single volume (``n_frames == 1``, all of it is read anyway) is decompressed once
    here and parsed from memory (no extra pass; ``benchmarks/nifti_gzip_check.py`` measured the
    cost on a 256³ head). A 4-D series is checked in a streaming pass (constant memory), then
    nibabel reads the one frame asked for.

    Raises:
        DataError: one line naming the file: truncated or corrupt gzip stream, and why.
    """
    try:
        if n_frames == 1:
            return type(img).from_bytes(gzip.decompress(p.read_bytes()))
        with gzip.open(p, "rb") as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        reason = str(e) or type(e).__name__
        raise DataError(p, f"truncated or corrupt gzip stream ({reason}); the file is damaged, "
                           "copy or export it again") from None
    return img


def _check_truncated(p: Path, img: nib.Nifti1Image, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """An uncompressed .nii must hold vox_offset + all voxels; say how much is missing."""
    if p.name.lower().endswith(".gz"):
        return  # gzip streams are checked to their end by _verified_gzip_image
    offset = int(img.header["vox_offset"])
    need = offset + int(np.prod(shape)) * dtype.itemsize
    have = p.stat().st_size
    if have < need:
        raise DataError(p, f"truncated: header promises {need} bytes (offset {offset} + voxels), "
                           f"the file has {have}")


def write_nifti(volume: Volume, path: str | Path, *, reference: Volume | None = None,
                description: str = "", version: int | None = None) -> Path:
    """Write ``volume`` as NIfTI (``.nii`` or ``.nii.gz``), keeping its dtype.

    qform/sform codes come from ``reference.meta`` (a Volume read from NIfTI), else from
    ``volume.meta``, else 1 (scanner). A sheared affine cannot live in the qform: it is kept in
    the sform (whose code is then at least 1). ``version`` (1 or 2) defaults to the reference's,
    or 2 when a side exceeds NIfTI-1's 32767.
    """
    p = Path(path)
    data = np.asarray(volume.data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype.kind == "c":
        raise DataError(p, "complex voxels cannot be written; take the magnitude first")
    data = as_native(data)
    src = reference if reference is not None else volume
    qcode = int(src.meta.get("qform_code", 1)) if "qform_code" in src.meta else 1
    scode = int(src.meta.get("sform_code", 1)) if "sform_code" in src.meta else 1
    if version is None:
        version = int(src.meta.get("nifti_version", 1)) if "nifti_version" in src.meta else 1
        if max(data.shape) > _NIFTI1_MAX_SIDE:
            version = 2
    if version not in (1, 2):
        raise ValueError(f"NIfTI version must be 1 or 2, got {version}")
    klass = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    affine = np.asarray(volume.affine, dtype=np.float64)
    img = klass(data, None, dtype=data.dtype)
    sheared = is_sheared(affine)
    if sheared and scode == 0:
        scode = max(qcode, 1)
    img.set_sform(affine, code=scode)
    img.set_qform(affine, code=0 if sheared else qcode)
    hdr = img.header
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = description.encode("ascii", "replace")[:79]
    hdr.set_slope_inter(1.0, 0.0)
    with atomic_output(p) as tmp:
        try:
            nib.save(img, str(tmp))
        except Exception as e:  # noqa: BLE001
            raise DataError(p, f"cannot write NIfTI: {e}") from e
    return p
