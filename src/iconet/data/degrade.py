"""Synthetic degradations: k-space truncation, Cartesian undersampling masks, bicubic, noise.

All functions act on float torch tensors of shape ``(..., H, W)`` (any leading dims) and
return tensors of the input's real dtype. Nothing here reads files or knows about models.

The MRI task (docs/design.md §2, after T2Net but intensity-preserving)::

    K     = centre_crop(fft2c(HR), (H/s, W/s)) / s      # truncated k-space, constant kept
    CLEAN = |ifft2c(K)|                                 # reconstruction target (artifact-free)
    LR    = |ifft2c(mask · K)|                          # network input, with aliasing

``mask`` is a 1-D Cartesian mask over the phase-encoding axis of the *cropped* k-space (the
last axis by default): whole lines of k-space are kept or dropped.

**Even sides.** With centred FFTs the spatial origin of an ``n``-pixel image sits at index
``n // 2``. For even ``H`` and even ``h = H / s`` the origins ``H/2`` and ``h/2 = H/(2s)``
correspond, so LR pixel ``m`` sits exactly on HR pixel ``s·m`` (the ``"kspace"`` grid of
:mod:`iconet.ops.grid`). With an odd LR side the LR origin is ``(h-1)/2``, which is not
``H/(2s)``: the whole LR image moves by half an LR pixel against HR, and every interpolation
baseline or network residual on the ``s·m`` grid is then off. Bicubic downsampling needs
``H`` divisible by ``s``; with an odd LR side its stage-wise halvings are inexact too.
Hence every degradation here requires ``H`` and ``W`` to be multiples of ``2·s``; use
:func:`crop_to_multiple` (or :func:`pad_to_multiple`) on HR first.

Seeds: masks are drawn from an integer seed through Python's ``random.Random(seed).random()``
stream, which Python guarantees to be the same across versions and machines (unlike
``hash()``, ``torch.randperm`` or NumPy's ``Generator`` algorithms). Evaluation masks are
seeded from the volume name with :func:`seed_from_name`; training masks from a fresh seed per
sample drawn from a ``torch.Generator``. Noise is drawn on the CPU from a ``torch.Generator``
seeded the same way (stable across machines; PyTorch does not promise it across versions).
The seed is returned in ``params`` so any sample can be rebuilt.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from iconet.ops.fft import centre_crop_2d, fft2c, ifft2c
from iconet.ops.scale import num_stages

KINDS: tuple[str, ...] = ("kspace", "bicubic", "gaussian", "poisson")
MASK_TYPES: tuple[str, ...] = ("cartesian", "fastmri", "none")

#: default centre fraction per mask type (fraction of the cropped phase-encoding width)
DEFAULT_CENTRE_FRACTION = {"cartesian": 0.15, "fastmri": 0.08, "none": 0.0}

_SEED_MAX = 2**63 - 1


# --------------------------------------------------------------------------- helpers


def _round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (``round()`` rounds halves to even)."""
    return int(math.floor(x + 0.5 + 1e-9))


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return scale


def _check_sides(x: torch.Tensor, scale: int, what: str = "HR") -> tuple[int, int]:
    if x.ndim < 2:
        raise ValueError(f"expected a (..., H, W) tensor, got shape {tuple(x.shape)}")
    H, W = (int(v) for v in x.shape[-2:])
    m = 2 * scale
    if H % m or W % m:
        raise ValueError(
            f"{what} sides {(H, W)} must be multiples of 2*scale = {m} so that the LR sides are "
            f"even and LR pixel m sits on HR pixel {scale}*m; crop or pad first "
            f"(crop_to_multiple(img, {m}) gives {(H - H % m, W - W % m)})"
        )
    return H, W


def _real_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else torch.float32


def crop_to_multiple(img: torch.Tensor, m: int) -> torch.Tensor:
    """Centre-crop the last two axes of ``img`` down to the nearest multiples of ``m``.

    Use ``m = 2·scale`` before any degradation: odd LR sides shift the sampling grid (see the
    module docstring). When a side loses an odd number of pixels the extra one comes off
    the end (top/left keep ``(n - n') // 2`` pixels less).
    """
    if m < 1:
        raise ValueError(f"m must be a positive integer, got {m}")
    H, W = img.shape[-2:]
    h, w = H - H % m, W - W % m
    if h == 0 or w == 0:
        raise ValueError(f"image of size {(H, W)} is smaller than one block of {m} pixels")
    top, left = (H - h) // 2, (W - w) // 2
    return img[..., top : top + h, left : left + w]


def pad_to_multiple(img: torch.Tensor, m: int, value: float = 0.0) -> torch.Tensor:
    """Pad the last two axes of ``img`` (constant ``value``) up to multiples of ``m``, centred.

    The alternative to :func:`crop_to_multiple` when no pixel may be lost; the padding is
    split as ``(n' - n) // 2`` before and the rest after.
    """
    if m < 1:
        raise ValueError(f"m must be a positive integer, got {m}")
    H, W = img.shape[-2:]
    h, w = -(-H // m) * m, -(-W // m) * m
    top, left = (h - H) // 2, (w - W) // 2
    return F.pad(img, (left, w - W - left, top, h - H - top), value=value)


# --------------------------------------------------------------------------- k-space


def truncate_kspace(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Centred crop of ``fft2c(hr)`` to ``(H/s, W/s)``, divided by ``s`` (complex).

    Orthonormal FFTs make the DC term ``c·sqrt(H·W)`` for a constant ``c``; after the crop the
    inverse transform of size ``(H/s)·(W/s)`` returns ``c·s``: dividing by ``s`` keeps the
    intensity scale, so HR, CLEAN and LR share one normalisation.
    """
    scale = _check_scale(scale)
    H, W = _check_sides(hr, scale)
    return centre_crop_2d(fft2c(hr), (H // scale, W // scale)) / scale


def kspace_truncate(
    hr: torch.Tensor, scale: int, *, return_kspace: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The CLEAN low-resolution image ``|ifft2c(truncate_kspace(hr, s))|``.

    Args:
        hr: real images ``(..., H, W)``; ``H`` and ``W`` multiples of ``2·s``.
        scale: integer factor ``s`` (1 returns ``|hr|``).
        return_kspace: also return the cropped, rescaled k-space.

    Returns:
        ``clean`` of shape ``(..., H/s, W/s)`` (input dtype), or ``(clean, kspace)``.
        LR pixel ``m`` sits on HR pixel ``s·m``: for an image band-limited to the kept
        frequencies, ``clean == hr[..., ::s, ::s]`` (for non-negative ``hr``).
    """
    k = truncate_kspace(hr, scale)
    clean = ifft2c(k).abs().to(_real_dtype(hr))
    return (clean, k) if return_kspace else clean


def undersample(kspace: torch.Tensor, mask: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Multiply ``kspace`` ``(..., h, w)`` by a 1-D line mask along ``axis`` (-1 or -2).

    ``mask`` has the length of that axis (bool or float); lines where it is 0 are zeroed.
    """
    if axis not in (-1, -2):
        raise ValueError(f"mask axis must be -1 (last) or -2 (second last), got {axis}")
    n = kspace.shape[axis]
    mask = mask.reshape(-1)
    if mask.numel() != n:
        raise ValueError(f"mask has {mask.numel()} lines but k-space axis {axis} has {n}")
    shape = (n, 1) if axis == -2 else (n,)
    return kspace * mask.to(device=kspace.device, dtype=kspace.real.dtype).reshape(shape)


# --------------------------------------------------------------------------- masks and seeds


def seed_from_name(name: str) -> int:
    """A 63-bit seed from a string: SHA-256 of its UTF-8 bytes, first 8 bytes, little endian.

    Stable across machines, Python versions and runs (``hash()`` is salted per process).
    """
    digest = hashlib.sha256(str(name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MAX


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A fresh 63-bit seed from ``generator`` (torch's global RNG when ``None``)."""
    return int(torch.randint(0, _SEED_MAX, (1,), generator=generator, dtype=torch.int64).item())


def _centre_lines(width: int, n: int) -> range:
    """The ``n`` lines around the DC index ``width // 2`` (same convention as centre_crop_2d)."""
    start = width // 2 - n // 2
    return range(start, start + n)


def cartesian_mask(
    width: int,
    *,
    sampled_fraction: float = 0.30,
    centre_fraction: float = 0.15,
    pattern: Literal["random", "equispaced"] = "random",
    seed: int = 0,
) -> torch.Tensor:
    """A 1-D Cartesian line mask with an *exact* number of sampled lines (bool, ``(width,)``).

    ``n = round(sampled_fraction·width)`` lines are sampled, of which the
    ``n_c = round(centre_fraction·width)`` lines around the DC index ``width // 2`` are all
    taken; the other ``n - n_c`` are drawn among the remaining lines, uniformly without
    replacement (``"random"``) or evenly spaced over the remaining lines in index order with a
    seeded offset (``"equispaced"``). Rounding is half-up. Clamping: ``n`` is kept in
    ``[1, width]`` and ``n_c`` in ``[min(1, n), n]`` (the DC line is always sampled when
    ``centre_fraction > 0``; with ``centre_fraction = 0`` no centre block is forced).

    Fixing the count rather than a probability keeps the acceleration identical for every
    volume (docs/design.md §2).
    """
    if width < 1:
        raise ValueError(f"mask width must be positive, got {width}")
    if not 0.0 <= sampled_fraction <= 1.0 or not 0.0 <= centre_fraction <= 1.0:
        raise ValueError(
            f"sampled_fraction and centre_fraction must lie in [0, 1], got "
            f"{sampled_fraction} and {centre_fraction}"
        )
    if pattern not in ("random", "equispaced"):
        raise ValueError(f"unknown mask pattern {pattern!r}; expected 'random' or 'equispaced'")
    n = min(max(_round_half_up(sampled_fraction * width), 1), width)
    n_c = min(_round_half_up(centre_fraction * width), n)
    if centre_fraction > 0:
        n_c = max(n_c, 1)
    mask = [False] * width
    for i in _centre_lines(width, n_c):
        mask[i] = True
    rest = [i for i in range(width) if not mask[i]]
    k = n - n_c
    rng = random.Random(int(seed))
    if k > 0:
        if pattern == "random":
            # partial Fisher–Yates on random(): only the guaranteed-stable stream is used
            for j in range(k):
                r = j + min(int(rng.random() * (len(rest) - j)), len(rest) - j - 1)
                rest[j], rest[r] = rest[r], rest[j]
            chosen = rest[:k]
        else:
            step = len(rest) / k
            offset = rng.random()
            chosen = [rest[min(int((j + offset) * step), len(rest) - 1)] for j in range(k)]
        for i in chosen:
            mask[i] = True
    return torch.tensor(mask, dtype=torch.bool)


def fastmri_random_mask(
    width: int, acceleration: float = 4, centre_fraction: float = 0.08, *, seed: int = 0
) -> torch.Tensor:
    """fastMRI's ``RandomMaskFunc`` (bool, ``(width,)``): a *probability* per line.

    ``n_c = round(width·centre_fraction)`` centre lines are always kept; every other line is
    kept with probability ``(width/acceleration - n_c) / (width - n_c)``, so the expected
    count is ``width/acceleration`` but the actual count varies from draw to draw. The
    centre block is placed around ``width // 2`` like :func:`cartesian_mask`.
    """
    if width < 1:
        raise ValueError(f"mask width must be positive, got {width}")
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    n_c = min(_round_half_up(width * centre_fraction), width)
    prob = (width / acceleration - n_c) / (width - n_c) if width > n_c else 0.0
    rng = random.Random(int(seed))
    mask = [rng.random() < prob for _ in range(width)]
    for i in _centre_lines(width, n_c):
        mask[i] = True
    return torch.tensor(mask, dtype=torch.bool)


# --------------------------------------------------------------------------- image-domain ops


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling by ``s`` on the pixel-centre grid (``"centre"``).

    PyTorch's ``align_corners=False`` keeps the pixel centres of the field of view aligned;
    ``antialias=True`` widens the kernel by ``s`` (as PIL / MATLAB ``imresize`` do), so a
    constant stays constant. Requires ``H`` and ``W`` divisible by ``s``.
    """
    scale = _check_scale(scale)
    H, W = hr.shape[-2:]
    if H % scale or W % scale:
        raise ValueError(f"sides {(H, W)} must be divisible by the scale {scale}")
    if scale == 1:
        return hr.clone()
    lead = hr.shape[:-2]
    dtype = _real_dtype(hr)
    x = hr.reshape(-1, 1, H, W).to(torch.float64 if dtype == torch.float64 else torch.float32)
    y = F.interpolate(x, size=(H // scale, W // scale), mode="bicubic", align_corners=False, antialias=True)
    return y.reshape(*lead, H // scale, W // scale).to(dtype)


def gaussian_noise(img: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``img + sigma·N(0, 1)``, i.i.d. per pixel (``sigma`` in the units of ``img``)."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    noise = torch.randn(img.shape, generator=generator, dtype=torch.float64).to(img.device)
    return (img.to(torch.float64) + sigma * noise).to(_real_dtype(img))


def poisson_noise(img: torch.Tensor, dose: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson (counting) noise: ``Poisson(dose·max(img, 0)) / dose``.

    ``dose`` is the expected count for a pixel of value 1: mean is kept, variance is
    ``img / dose`` (higher dose, less noise). Negative values are clamped to 0 first.
    """
    if dose <= 0:
        raise ValueError(f"noise dose must be > 0, got {dose}")
    rate = img.detach().to("cpu", torch.float64).clamp(min=0) * dose
    return (torch.poisson(rate, generator=generator) / dose).to(img.device, _real_dtype(img))


# --------------------------------------------------------------------------- stage targets


def _operator(kind: str) -> str:
    if kind == "kspace":
        return "kspace"
    if kind in ("bicubic", "gaussian", "poisson"):
        return "bicubic"
    raise ValueError(f"unknown degradation kind {kind!r}; expected one of {KINDS}")


def _downscale(hr: torch.Tensor, factor: int, op: str) -> torch.Tensor:
    if factor == 1:
        return hr
    if op == "kspace":
        return kspace_truncate(hr, factor)  # type: ignore[return-value]
    return bicubic_downsample(hr, factor)


def stage_targets(hr: torch.Tensor, scale: int, kind: str = "kspace") -> dict[str, list[torch.Tensor]]:
    """Supervision targets of a model with ``S = log2(scale)`` 2× stages.

    Returns ``{"hr": [HR_1, ..., HR_S], "clean": [CLEAN_0, ..., CLEAN_{S-1}]}`` where

    * ``HR_k`` is HR brought to size ``H·2^k/s`` by the operator that made the LR (k-space
      truncation for ``"kspace"``; antialiased bicubic for ``"bicubic"`` and for the noise
      kinds, whose LR is a bicubic downsample plus noise), and ``HR_S = HR``;
    * ``CLEAN_{k-1}`` is the artifact-free image at the *input* size of stage ``k``:
      ``CLEAN_0`` is the clean LR, and for ``k >= 1`` ``CLEAN_k = HR_k`` — at a higher stage
      the prior to reconstruct is the clean image of that size, which is exactly ``HR_k``.

    (Our reading of the ICONet multi-stage loss, docs/design.md §1: stage ``k`` is scored with
    ``L1(sr_k, HR_k) + λ·L1(rec_k, CLEAN_{k-1})``.) ``H`` and ``W`` must be multiples of
    ``2·s``; every intermediate size is then even.
    """
    S = num_stages(scale)
    op = _operator(kind)
    if op == "kspace":
        _check_sides(hr, scale)
    elif hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"sides {tuple(hr.shape[-2:])} must be divisible by the scale {scale}")
    hrs = [_downscale(hr, scale >> k, op) for k in range(1, S + 1)]
    clean = [_downscale(hr, scale, op)] + hrs[: S - 1] if S > 0 else []
    return {"hr": hrs, "clean": clean}


# --------------------------------------------------------------------------- config


@dataclass
class Degradation:
    """How LR inputs are made from HR, as a config (``iconet.config.from_dict`` builds it).

    Attributes:
        kind: ``"kspace"`` (truncation + Cartesian undersampling, MRI), ``"bicubic"``
            (antialiased bicubic), ``"gaussian"`` / ``"poisson"`` (bicubic downsample, then
            noise: CT / PET, where k-space does not exist).
        scale: SR factor ``s``, a power of two (``S = log2(s)`` 2× stages; 1 = same size).
        mask: ``"cartesian"`` (exact line count, default), ``"fastmri"`` (per-line
            probability, ``RandomMaskFunc``) or ``"none"`` (LR = CLEAN). Only for ``kspace``.
        mask_pattern: ``"random"`` or ``"equispaced"`` non-centre lines (``cartesian`` only).
        sampled_fraction: fraction of the cropped width sampled (``cartesian``).
        centre_fraction: fraction of the cropped width fully sampled around DC; ``None``
            means 0.15 for ``cartesian`` and 0.08 for ``fastmri``.
        acceleration: ``fastmri`` mask acceleration.
        mask_axis: phase-encoding axis of the 2-D slice, ``-1`` (last, default) or ``-2``.
        mask_mode: ``"seeded"`` — masks (and noise) seeded from the volume name, the same
            every epoch and machine (evaluation); ``"random"`` — a fresh seed per sample
            (training, so the network cannot learn one mask).
        noise_sigma: Gaussian noise std in normalised intensity units (``gaussian``).
        noise_dose: expected counts for intensity 1 (``poisson``).
    """

    kind: Literal["kspace", "bicubic", "gaussian", "poisson"] = "kspace"
    scale: int = 2
    mask: Literal["cartesian", "fastmri", "none"] = "cartesian"
    mask_pattern: Literal["random", "equispaced"] = "random"
    sampled_fraction: float = 0.30
    centre_fraction: float | None = None
    acceleration: float = 4.0
    mask_axis: int = -1
    mask_mode: Literal["seeded", "random"] = "seeded"
    noise_sigma: float = 0.02
    noise_dose: float = 1000.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown degradation kind {self.kind!r}; expected one of {KINDS}")
        if self.mask not in MASK_TYPES:
            raise ValueError(f"unknown mask {self.mask!r}; expected one of {MASK_TYPES}")
        if self.mask_mode not in ("seeded", "random"):
            raise ValueError(f"mask_mode must be 'seeded' or 'random', got {self.mask_mode!r}")
        if self.mask_axis not in (-1, -2):
            raise ValueError(f"mask_axis must be -1 or -2, got {self.mask_axis}")
        num_stages(self.scale)
        if self.noise_sigma < 0 or self.noise_dose <= 0:
            raise ValueError("noise_sigma must be >= 0 and noise_dose > 0")

    @property
    def grid(self) -> str:
        """Sampling grid of the LR (:mod:`iconet.ops.grid`): ``"kspace"`` or ``"centre"``."""
        return "kspace" if self.kind == "kspace" else "centre"

    @property
    def stages(self) -> int:
        return num_stages(self.scale)

    @property
    def multiple(self) -> int:
        """HR sides must be multiples of this (``2·scale``)."""
        return 2 * self.scale

    def check_patch_size(self, patch_size: int, name: str = "patch_size") -> None:
        """Refuse an HR training patch side that is not a multiple of :attr:`multiple`: the LR
        patch (``patch_size / scale``) must have even sides, so that LR pixel ``m`` sits on HR
        pixel ``scale·m``. ``name`` is how the caller's user calls the value (e.g.
        ``data.patch_size``); the message proposes the nearest valid sides.

        Raises:
            ValueError: one line naming ``name``, the value and two valid ones.
        """
        m, s = self.multiple, self.scale
        if patch_size % m:
            raise ValueError(
                f"{name} {patch_size} is not a multiple of 2*scale = {m}: the LR patch ({patch_size}/{s}) must "
                f"have even sides so LR pixel m sits on HR pixel {s}*m; use {max(m, patch_size - patch_size % m)} "
                f"or {patch_size - patch_size % m + m}"
            )

    def effective_centre_fraction(self) -> float:
        if self.centre_fraction is not None:
            return float(self.centre_fraction)
        return DEFAULT_CENTRE_FRACTION[self.mask]

    def make_mask(self, width: int, seed: int) -> torch.Tensor:
        """The 1-D mask of this config for ``width`` lines and ``seed`` (bool)."""
        if self.mask == "cartesian":
            return cartesian_mask(
                width,
                sampled_fraction=self.sampled_fraction,
                centre_fraction=self.effective_centre_fraction(),
                pattern=self.mask_pattern,
                seed=seed,
            )
        if self.mask == "fastmri":
            return fastmri_random_mask(width, self.acceleration, self.effective_centre_fraction(), seed=seed)
        return torch.ones(width, dtype=torch.bool)

    def _seed(self, name: str, generator: torch.Generator | None) -> int:
        return seed_from_name(name) if self.mask_mode == "seeded" else draw_seed(generator)

    def degrade(
        self,
        hr: torch.Tensor,
        name: str,
        generator: torch.Generator | None = None,
        *,
        noise_key: str | None = None,
    ) -> dict[str, Any]:
        """Make ``lr`` and ``clean`` from ``hr`` ``(..., H, W)`` (sides multiples of ``2·scale``).

        Args:
            hr: HR images, real float.
            name: volume name; in ``"seeded"`` mode the mask seed is ``seed_from_name(name)``,
                so every slice of a volume shares one mask (as in an acquisition).
            generator: source of fresh seeds in ``"random"`` mode (global RNG if ``None``).
            noise_key: extra key for seeded *noise* (e.g. ``"axis2/slice40"``), so that
                slices of a volume get different noise realisations; masks ignore it.

        Returns:
            ``{"lr": (..., H/s, W/s), "clean": (..., H/s, W/s), "params": dict}`` where
            ``params`` holds plain values: kind, scale, grid, mask type/pattern/axis,
            ``mask_lines`` (sampled count), ``mask_width``, ``seed`` (``None`` when nothing
            random was drawn) and the noise parameter.
        """
        s = self.scale
        _check_sides(hr, s)
        params: dict[str, Any] = {"kind": self.kind, "scale": s, "grid": self.grid, "mask_mode": self.mask_mode}
        if self.kind == "kspace":
            clean, k = kspace_truncate(hr, s, return_kspace=True)  # type: ignore[misc]
            width = int(k.shape[self.mask_axis])
            seed = None if self.mask == "none" else self._seed(name, generator)
            mask = self.make_mask(width, 0 if seed is None else seed)
            lr = ifft2c(undersample(k, mask, self.mask_axis)).abs().to(clean.dtype)
            params.update(
                mask=self.mask,
                mask_pattern=self.mask_pattern if self.mask == "cartesian" else None,
                mask_axis=self.mask_axis,
                mask_width=width,
                mask_lines=int(mask.sum()),
                centre_fraction=self.effective_centre_fraction() if self.mask != "none" else None,
                seed=seed,
            )
            return {"lr": lr, "clean": clean, "params": params}
        clean = bicubic_downsample(hr, s)
        if self.kind == "bicubic":
            params.update(seed=None)
            return {"lr": clean, "clean": clean, "params": params}
        key = name if noise_key is None else f"{name}/{noise_key}"
        seed = self._seed(key, generator)
        g = torch.Generator().manual_seed(seed)  # CPU generator: noise is drawn on the CPU
        if self.kind == "gaussian":
            lr = gaussian_noise(clean, self.noise_sigma, g)
            params.update(noise_sigma=self.noise_sigma, seed=seed)
        else:
            lr = poisson_noise(clean, self.noise_dose, g)
            params.update(noise_dose=self.noise_dose, seed=seed)
        return {"lr": lr, "clean": clean, "params": params}

    def stage_targets(self, hr: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """:func:`stage_targets` for this config's scale and kind."""
        return stage_targets(hr, self.scale, self.kind)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
