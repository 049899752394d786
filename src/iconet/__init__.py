"""iconet: medical image super-resolution with ICONet and honest peers.

Models live in :mod:`iconet.models` (pure ``nn.Module``), data in :mod:`iconet.data`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy public API: importing iconet stays light
    if name == "load_model":
        from iconet.hub import load_model

        return load_model
    if name == "super_resolve":
        from iconet.inference import super_resolve

        return super_resolve
    raise AttributeError(f"module 'iconet' has no attribute {name!r}")
