"""iconet: medical image super-resolution with ICONet and honest peers.

Models live in :mod:`iconet.models` (pure ``nn.Module``), data in :mod:`iconet.data`.
"""

__version__ = "0.1.0"
