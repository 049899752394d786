"""The number of 2x stages of an upscaling factor: one definition for data code and models."""

from __future__ import annotations

__all__ = ["num_stages"]


def num_stages(scale: int) -> int:
    """``S = log2(scale)``, the 2x stages of a model (or of its supervision targets) that
    upscales ``scale`` times; ``scale`` must be a power of two (1 gives 0 stages).

    Raises:
        ValueError: ``scale`` is not a positive integer, or not a power of two.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if scale & (scale - 1):
        raise ValueError(f"scale must be a power of two (1, 2, 4, 8, ...) for 2x stages, got {scale}")
    return scale.bit_length() - 1
