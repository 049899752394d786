"""Medical data in and out: volumes, readers/writers, degradations, datasets (knows no model)."""

from iconet.data.volume import Volume

__all__ = ["Volume"]
