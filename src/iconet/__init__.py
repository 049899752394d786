"""iconet: medical image super-resolution with ICONet and honest peers.

Models live in :mod:`iconet.models` (pure ``nn.Module``), data in :mod:`iconet.data`. The
public API is imported on first use, so ``import iconet`` stays light::

    import iconet
    sr = iconet.super_resolve(lr_slice)               # array in, array out (shipped iconet-t1-x2)
    vol = iconet.super_resolve("scan.nii.gz", scale=4)  # path in, Volume out (shipped iconet-t1-x4)
    model, info = iconet.load_model("models/my_x2")   # an exported folder or a shipped name
    iconet.available_models()                         # names of the shipped models

MONAI MetaTensors, torchio ScalarImages/Subjects and nibabel images go in with their affine
and come back as the same type at the SR geometry (:mod:`iconet.api_types`). For tools that
want one tensor back (``monai.inferers.sliding_window_inference``, ONNX, ``torch.export``),
``iconet.load_predictor(name, reference=image)`` is the model as ``(B, C, h, w) -> (B, C, s·h,
s·w)`` (:class:`iconet.SRPredictor`, :mod:`iconet.predictor`).
"""

__version__ = "0.1.0"

#: public name → (module, attribute), imported on first access
_LAZY = {
    "super_resolve": ("iconet.inference", "super_resolve"),
    "super_resolve_volume": ("iconet.inference", "super_resolve_volume"),
    "InferenceOptions": ("iconet.inference", "InferenceOptions"),
    "load_model": ("iconet.hub", "load_model"),
    "available_models": ("iconet.hub", "available_models"),
    "make_isotropic": ("iconet.isotropic", "make_isotropic"),
    "SRPredictor": ("iconet.predictor", "SRPredictor"),
    "load_predictor": ("iconet.predictor", "load_predictor"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):  # lazy public API: importing iconet stays light
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'iconet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
