"""The ecosystem's image types in and out of :func:`iconet.super_resolve`.

:func:`to_volume` turns an image of another library into a :class:`~iconet.data.volume.Volume`
with its geometry, and :func:`from_volume` gives the SR Volume back as the same type, with the
SR geometry (:func:`iconet.data.geometry.upscaled_affine`). Supported:

* MONAI ``MetaTensor``: ``(I, J, K)``, or channel-first ``(1, I, J, K)`` as MONAI's transforms
  make it (one channel); a 2-D image ``(H, W)`` / ``(1, H, W)`` when its affine is ``3 x 3``.
  ``.affine`` maps voxels to world coordinates in the space ``meta["space"]`` names: ``RAS``
  (MONAI's default, as NIfTI and iconet) or ``LPS`` (ITK/DICOM, e.g. ``LoadImage(reader="ITKReader",
  affine_lps_to_ras=False)``), converted to RAS on the way in and back on the way out. The result
  is a ``MetaTensor`` of the same layout, dtype and device, with the input's meta and the SR affine.
* torchio ``ScalarImage`` ``(1, W, H, D)`` (affine in RAS, as torchio's): a ``ScalarImage`` back;
  a ``Subject`` holding exactly one image, a ``ScalarImage``: a new ``Subject`` with the other
  entries kept and that image super-resolved. A ``LabelMap`` is refused (labels are not
  intensities) and so is a multi-channel image.
* nibabel images (``Nifti1Image``, ``Nifti2Image``, ``MGHImage``, any ``SpatialImage`` with an
  affine): voxels as iconet reads them from a file (scaled by ``scl_slope``/``scl_inter`` into
  float32, else the stored dtype), the affine as nibabel gives it (the image's own units). The
  result is an image of the same class whose header is the input's (qform/sform codes,
  intent, units) with the SR affine and dtype.

Anything else that is not an array, a tensor, a Volume or a path is refused by
:func:`refuse` with the list of what is taken.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iconet.data.geometry import lps_to_ras, ras_to_lps
from iconet.data.volume import Volume

#: what super_resolve takes, for the message of :func:`refuse`
TAKEN = ("a NumPy array or torch tensor (2-D slice or 3-D volume), an iconet Volume, a file path, "
         "a MONAI MetaTensor, a torchio ScalarImage or Subject, or a nibabel image")


def _module(name: str) -> Any | None:
    """An already imported module (an object of a library's type exists only if it was imported)."""
    return sys.modules.get(name)


def _is_metatensor(obj: Any) -> bool:
    mt = _module("monai.data.meta_tensor")
    return mt is not None and isinstance(obj, mt.MetaTensor)


def _torchio_kind(obj: Any) -> str | None:
    tio = _module("torchio")
    if tio is None:
        return None
    if isinstance(obj, tio.Subject):
        return "subject"
    if isinstance(obj, tio.Image):
        return "image"
    return None


def _is_nibabel(obj: Any) -> bool:
    si = _module("nibabel.spatialimages")
    return si is not None and isinstance(obj, si.SpatialImage)


def is_ecosystem_image(obj: Any) -> bool:
    """Whether ``obj`` is a MONAI MetaTensor, a torchio Image/Subject or a nibabel image."""
    return _is_metatensor(obj) or _torchio_kind(obj) is not None or _is_nibabel(obj)


def refuse(obj: Any) -> TypeError:
    """The error for an image type super_resolve does not take (one line naming what it takes)."""
    kind = type(obj)
    return TypeError(f"super_resolve cannot read a {kind.__module__}.{kind.__qualname__}; it takes {TAKEN}")


# --------------------------------------------------------------------------- tensors


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a NumPy array (bfloat16, which NumPy lacks, as float32)."""
    if hasattr(t, "as_tensor"):  # a MetaTensor: its plain tensor
        t = t.as_tensor()
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _tensor_like(data: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data)).to(device=like.device, dtype=like.dtype)


def _lps(meta: dict[str, Any]) -> bool:
    return str(meta.get("space", "RAS")).upper() == "LPS"


def _metatensor_volume(t: Any) -> Volume:
    if t.is_batch:
        raise ValueError(f"a batched MetaTensor of shape {tuple(t.shape)}; pass one image (e.g. batch[0])")
    affine = np.asarray(t.affine.detach().cpu().numpy(), dtype=np.float64)
    if affine.ndim != 2 or affine.shape[0] != affine.shape[1] or affine.shape[0] not in (3, 4):
        raise ValueError(f"a MetaTensor with an affine of shape {affine.shape}; expected 3x3 (2-D) or 4x4 (3-D)")
    spatial = affine.shape[0] - 1
    shape = tuple(t.shape)
    channels = shape[: len(shape) - spatial]
    if len(shape) < spatial or len(channels) > 1 or (channels and channels[0] != 1):
        raise ValueError(f"a MetaTensor of shape {shape} with a {spatial}-D affine; expected one image: "
                         f"{'(H, W) or (1, H, W)' if spatial == 2 else '(I, J, K) or (1, I, J, K)'}")
    if spatial == 2:  # a 2-D affine: embed it, the slice axis at unit spacing
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = full
    if _lps(t.meta):
        affine = lps_to_ras(affine)
    data = _numpy(t).reshape(shape[len(channels):])
    source = t.meta.get("filename_or_obj")
    return Volume(data, affine, meta={"name": "MetaTensor"},
                  source=Path(source) if isinstance(source, (str, Path)) and source else None)


def _metatensor_back(t: Any, sr: Volume) -> Any:
    from monai.data import MetaTensor

    spatial = t.affine.shape[-1] - 1
    affine = ras_to_lps(sr.affine) if _lps(t.meta) else sr.affine
    data = sr.data
    if spatial == 2:
        data = data[:, :, 0]
        affine = np.delete(np.delete(affine, 2, axis=0), 2, axis=1)
    lead = tuple(t.shape[: t.ndim - spatial])
    meta = {k: v for k, v in t.meta.items() if k != "affine"}
    out = _tensor_like(data.reshape(lead + data.shape), t.as_tensor())
    return MetaTensor(out, affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


# --------------------------------------------------------------------------- torchio


def _torchio_image(subject_or_image: Any) -> tuple[Any, str | None]:
    """The one ScalarImage of a Subject (and its key), or the image itself (key ``None``)."""
    import torchio as tio

    if isinstance(subject_or_image, tio.Subject):
        images = subject_or_image.get_images_dict(intensity_only=False)
        if len(images) != 1:
            raise ValueError(f"a torchio Subject with {len(images)} images ({', '.join(images) or 'none'}); "
                             "pass one ScalarImage, e.g. subject['t1']")
        key, image = next(iter(images.items()))
    else:
        key, image = None, subject_or_image
    if not isinstance(image, tio.ScalarImage):
        raise ValueError(f"a torchio {type(image).__name__}: super-resolution takes intensities (a ScalarImage), "
                         "not labels")
    return image, key


def _torchio_volume(obj: Any) -> Volume:
    image, _ = _torchio_image(obj)
    if image.data.shape[0] != 1:
        raise ValueError(f"a torchio image with {image.data.shape[0]} channels (shape {tuple(image.data.shape)}); "
                         "super-resolve one channel at a time")
    return Volume(_numpy(image.data[0]), np.asarray(image.affine, dtype=np.float64), meta={"name": "ScalarImage"},
                  source=Path(image.path) if isinstance(image.path, (str, Path)) else None)


def _torchio_back(obj: Any, sr: Volume) -> Any:
    import torchio as tio

    image, key = _torchio_image(obj)
    out = tio.ScalarImage(tensor=_tensor_like(sr.data[None], image.data), affine=sr.affine)
    if key is None:
        return out
    return tio.Subject({**dict(obj.items()), key: out})


# --------------------------------------------------------------------------- nibabel


def _nibabel_volume(img: Any) -> Volume:
    from iconet.data.dtypes import as_native, float_dtype_for

    if img.affine is None:
        raise ValueError(f"a nibabel {type(img).__name__} without an affine; give it one (or pass an array "
                         "with spacing=)")
    shape = tuple(int(v) for v in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise ValueError(f"a {len(shape)}-D nibabel image of shape {tuple(img.shape)}; pass one 2-D or 3-D "
                         "image (e.g. img.slicer[..., 0] for the first frame)")
    proxy = img.dataobj
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    data = np.asarray(proxy).reshape(shape)
    if slope != 1.0 or inter != 0.0:  # as iconet reads a scaled file: float32 (float64 for wide types)
        data = data.astype(float_dtype_for(np.dtype(img.get_data_dtype())), copy=False)
    name = img.get_filename()
    return Volume(as_native(data), np.asarray(img.affine, dtype=np.float64), meta={"name": type(img).__name__},
                  source=Path(name) if name else None)


def _nibabel_back(img: Any, sr: Volume) -> Any:
    data = sr.data[:, :, 0] if len(img.shape) == 2 else sr.data
    header = img.header.copy()
    header.set_data_dtype(data.dtype)
    out = type(img)(data, sr.affine, header=header)
    if hasattr(out.header, "set_qform"):  # NIfTI: keep the input's qform/sform codes
        qcode, scode = int(img.header["qform_code"]), int(img.header["sform_code"])
        out.set_qform(sr.affine, code=qcode)
        out.set_sform(sr.affine, code=scode)
    if hasattr(out.header, "set_slope_inter"):
        try:
            out.header.set_slope_inter(None, None)  # the data are stored as they are
        except Exception:  # noqa: BLE001 - formats without scaling fields (MGH)
            pass
    return out


# --------------------------------------------------------------------------- dispatch


def to_volume(obj: Any) -> Volume:
    """The Volume of an ecosystem image (see the module docstring).

    Raises:
        ValueError: an image super-resolution cannot take (batch, several channels or images,
            labels, no affine), in one line.
        TypeError: ``obj`` is not an ecosystem image (:func:`refuse`).
    """
    if _is_metatensor(obj):
        return _metatensor_volume(obj)
    if _torchio_kind(obj) is not None:
        return _torchio_volume(obj)
    if _is_nibabel(obj):
        return _nibabel_volume(obj)
    raise refuse(obj)


def from_volume(original: Any, sr: Volume) -> Any:
    """``sr`` as the type of ``original`` (the ecosystem image :func:`to_volume` read)."""
    if _is_metatensor(original):
        return _metatensor_back(original, sr)
    if _torchio_kind(original) is not None:
        return _torchio_back(original, sr)
    if _is_nibabel(original):
        return _nibabel_back(original, sr)
    raise refuse(original)


__all__ = ["TAKEN", "from_volume", "is_ecosystem_image", "refuse", "to_volume"]
