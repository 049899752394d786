"""DICOM in and out, one import for both directions: reading lives in
:mod:`iconet.data.dicom_read` (files, multi-frame files, series folders, and the geometry
convention), writing in :mod:`iconet.data.dicom_write` (derived series)."""

from iconet.data.dicom_read import KEEP, decoder_hint, list_series, read_dicom, read_dicom_file, read_dicom_series
from iconet.data.dicom_write import write_dicom_series

__all__ = ["read_dicom", "read_dicom_file", "read_dicom_series", "write_dicom_series",
           "list_series", "decoder_hint", "KEEP"]
