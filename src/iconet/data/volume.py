"""The one image type of iconet: voxels plus where they sit in scanner space."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 3-D image with its geometry.

    Attributes:
        data: voxel array of shape ``(I, J, K)`` in the file's index order (NIfTI convention;
            a 2-D image is ``(I, J, 1)``). Its dtype is the source's (uint8, int16, float32, ...).
        affine: ``(4, 4)`` float64 matrix mapping voxel indices ``(i, j, k, 1)`` to world
            coordinates in millimetres, RAS+ (NIfTI convention; DICOM's LPS is converted).
        modality: ``"MR"``, ``"CT"``, ``"PT"``, ... when known, else ``None``.
        meta: source metadata worth keeping (e.g. DICOM attributes, NIfTI intent, rescale).
        source: path the volume was read from, if any.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim == 2:
            self.data = self.data[:, :, None]
        if self.data.ndim != 3:
            raise ValueError(f"a Volume holds a 3-D array, got shape {self.data.shape}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LIA"`` (nibabel's ``aff2axcodes``)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def name(self) -> str:
        """A stable identifier: the source's file name without NIfTI/DICOM extensions."""
        if self.source is None:
            return str(self.meta.get("name", "volume"))
        n = Path(self.source).name
        for ext in (".nii.gz", ".nii", ".dcm", ".h5", ".npy", ".png", ".tif", ".tiff"):
            if n.lower().endswith(ext):
                return n[: -len(ext)]
        return n

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """World coordinates (mm, RAS+) of voxel indices ``ijk`` of shape ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def with_data(self, data: np.ndarray, affine: np.ndarray | None = None, **meta: Any) -> "Volume":
        """A new Volume with other voxels (and optionally another affine); metadata copied."""
        return replace(self, data=data, affine=self.affine if affine is None else affine,
                       meta={**self.meta, **meta})
