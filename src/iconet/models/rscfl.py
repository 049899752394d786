"""RSCFL: residual spatial-channel feature learning, with cost linear in the pixel count N.

The paper (Zou et al., 2025) states only that RSCFL is a residual block with a *spatial*
branch and a *channel* branch that model long-range relations at O(N) cost. Our reading
(documented in docs/architecture.md):

* spatial branch — large-kernel depth-wise attention (after VAN's LKA): a 5×5 depth-wise
  conv, a 5×5 depth-wise conv with dilation 3 (a 17×17 neighbourhood per block, growing with
  depth), a 1×1 conv and a sigmoid gate on the input. Cost O(N·C·k²) + O(N·C²).
* channel branch — transposed (channel) attention as in Restormer's MDTA: queries and keys
  are L2-normalised along space and a C×C attention map per head is built from *all* pixels,
  so every output pixel sees the whole image. Cost O(N·C²).
* both branches read the same layer-normalised input; their sum is projected and added back
  (residual); then a local feed-forward (3×3 conv, ReLU — or GELU —, 3×3 conv) with its own residual.

CPU note: at 256² and 48 channels one feature map is 12.6 MB, larger than the caches, so the
block is bound by memory traffic, not FLOPs; the modules below avoid every full-size pass that
the maths does not need (measured in benchmarks/complexity.py).

All tensors are ``(B, C, H, W)``; every module keeps the shape.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from iconet.ops.fft import rdft_matrices


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor (any memory format)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Permuting to (B, H, W, C) is free for channels_last tensors and cheap otherwise.
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SpatialAttention(nn.Module):
    """Large-kernel depth-wise attention: ``x · sigmoid(W(dw_dilated(dw(x))))``. O(N·C·k²).

    A 5×5 depth-wise conv followed by a 5×5 depth-wise conv with dilation 3 gives every pixel
    a 17×17 neighbourhood per block (VAN's LKA uses 7×7 with dilation 3, 23×23; oneDNN runs
    that kernel shape far slower on the CPU, ``benchmarks/complexity.py``, so we take the next
    receptive field down).
    ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, channels: int, kernel: int = 5, dilated_kernel: int = 5, dilation: int = 3) -> None:
        super().__init__()
        self.local = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        pad = dilation * (dilated_kernel // 2)
        self.wide = nn.Conv2d(channels, channels, dilated_kernel, padding=pad, dilation=dilation, groups=channels)
        self.mix = nn.Conv2d(channels, channels, 1)

    #: In CPU training under bf16 autocast, run both depth-wise convs as dense convs with
    #: block-diagonal weights (:func:`depthwise_as_dense`): the same sums, and 1.7x faster
    #: training steps of the through-plane fit, because oneDNN's depth-wise backward is slow in
    #: bf16 and its dense bf16 convs are fast (benchmarks/results/depthwise_train_cpu.md).
    #: Inference and fp32 training keep the depth-wise convs.
    dense_training: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_grad_enabled():
            if self.dense_training and torch.is_autocast_enabled("cpu") \
                    and torch.get_autocast_dtype("cpu") == torch.bfloat16:
                a = depthwise_as_dense(self.wide, depthwise_as_dense(self.local, x))
                return x * torch.sigmoid(self.mix(a))
            a = self.local(x)
            # oneDNN (PyTorch 2.13 CPU) computes wrong, sometimes infinite, weight gradients for
            # *dilated* depth-wise convs in bf16 with channels_last (tests/test_iconet.py checks
            # it); its bf16 forward is right, so only passes that will be differentiated run
            # this conv in fp32.
            with torch.autocast(device_type="cpu", enabled=False):
                a = self.wide(a.float())
        else:
            a = self.wide(self.local(x))
        return x * torch.sigmoid(self.mix(a))


def depthwise_as_dense(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a depth-wise ``conv`` (``groups == channels``), computed as a dense conv
    whose ``(C, C, k, k)`` weight holds ``conv.weight`` on its diagonal and zeros elsewhere.
    Same output and gradients (the zeros are built from the weight by ``diag_embed``, so only
    the diagonal receives gradient); C× the FLOPs. ``(B, C, H, W) → (B, C, H', W')``."""
    w = conv.weight[:, 0].permute(1, 2, 0)  # (k, k, C)
    dense = torch.diag_embed(w).permute(2, 3, 0, 1)  # (C, C, k, k), block-diagonal
    return F.conv2d(x, dense, conv.bias, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)


class ChannelAttention(nn.Module):
    """Transposed multi-head attention over channels (a C×C map from all N pixels). O(N·C²).

    ``(B, C, H, W) → (B, C, H, W)``; ``channels`` must be divisible by ``heads``. Per head,
    ``A = softmax(τ · cos(q_i, k_j))`` where ``q_i, k_j`` are whole channel images (so every
    output pixel depends on every input pixel), and the output is ``A v`` with ``v = W_v x + b_v``.

    Computed without materialising q, k normalised, or v (the block is memory-bound on CPUs):
    one Gram matrix of ``[q, k]`` gives the cosines and the norms, and ``A v`` is applied as a
    per-image C×C matrix ``A W_v`` to ``x`` directly. Equal to the textbook form (tested).
    """

    def __init__(self, channels: int, heads: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"width {channels} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.eps = eps
        head = torch.arange(channels) // (channels // heads)
        self.register_buffer("same_head", head[:, None] == head[None, :], persistent=False)
        self.register_buffer("head_of", head, persistent=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The block-diagonal attention map ``(B, C, C)`` (rows: output channels).

        The channel norms have a floor of ``sqrt(eps · N)``: a channel that is (nearly) constant
        zero — an all-background MRI patch — would otherwise give ``1 / ||q||`` gradients of
        any size. The Gram products may run in bf16 (fp32 accumulation); the normalisation
        and the softmax run in float32.
        """
        b, c, h, w = x.shape
        # q and k by one 1x1 conv (one read of x), then one Gram matrix of the (B, N, 2C) tokens
        # (a free view for channels_last): its diagonal holds the squared norms, its off-diagonal
        # block the products q_i·k_j. One pass over the tokens instead of three; whole-model time
        # unchanged within noise (benchmarks/results/inference_forms_cpu.md, lever one_gram).
        qk = F.conv2d(x, torch.cat([self.q.weight, self.k.weight]), torch.cat([self.q.bias, self.k.bias]))
        tokens = qk.permute(0, 2, 3, 1).reshape(b, h * w, 2 * c)
        gram = tokens.transpose(1, 2) @ tokens  # (B, 2C, 2C)
        dtype = torch.promote_types(gram.dtype, torch.float32)  # normalisation and softmax never in bf16
        sq = gram.diagonal(dim1=1, dim2=2).to(dtype) + self.eps * h * w
        q_norm, k_norm = sq[:, :c].sqrt(), sq[:, c:].sqrt()
        cos = gram[:, :c, c:].to(dtype) / (q_norm[:, :, None] * k_norm[:, None, :])  # (B, C, C)
        logits = cos * self.temperature.reshape(-1)[self.head_of][None, :, None]
        return torch.softmax(logits.masked_fill(~self.same_head, float("-inf")), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = self.attention(x)
        weight = attn @ self.v.weight.reshape(c, c).to(attn.dtype)  # (B, C, C) = A W_v
        bias = attn @ self.v.bias.to(attn.dtype)  # (B, C)
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        out = torch.baddbmm(bias[:, None, :].to(tokens.dtype), tokens, weight.transpose(1, 2).to(tokens.dtype))
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


#: activations of the feed-forward network. Each is applied to the fresh output of the expanding
#: conv, which nothing else reads, so ReLU runs in place (as EDSR's): one full-size feature map
#: less to allocate and write per block; autograd is unaffected (ReLU's backward needs only its
#: output, the conv's backward only its input).
FFN_ACTIVATIONS = {"gelu": F.gelu, "relu": torch.relu_}


class SpectralMixing(nn.Module):
    """Global mixing along the last (phase-encoding) axis in its Fourier domain.

    After the Fourier unit of FFC (Chi et al., 2020), in 1-D: an orthonormal real FFT of every
    row, a 1×1 conv and a ReLU on the (real, imaginary) parts of each frequency, the inverse
    FFT. Cartesian undersampling drops whole lines of k-space along this axis, so its aliasing
    is a convolution along each row with a kernel as wide as the image: a per-frequency
    operation sees it whole, which no local kernel can. Weights are shared over frequencies, so
    the module works at any width. The FFTs run in float32 (also under bf16 autocast), except in
    bf16 CPU inference, which takes them as bf16 DFT matmuls (:attr:`dft_in_bf16`).

    ``gated`` (default): the result is multiplied by a sigmoid gate computed from the input by a
    1×1 conv, so the global branch can be switched off locally (any change it makes to a
    frequency spreads over the whole row). Gated against ungated: ``benchmarks/design_x2.py``
    and ``benchmarks/ssim_split.py`` (docs/results.md).
    Cost O(N·log W·C) + O(N·C²). ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, channels: int, gated: bool = True) -> None:
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.gate = nn.Conv2d(channels, channels, 1) if gated else None

    #: In CPU inference under bf16 autocast, take the FFT pair as matrix products in bf16
    #: (:func:`iconet.ops.fft.rdft_matrices`): dense bf16 matmuls run on the CPU's matrix units,
    #: while the float32 FFTs and their conversions were a quarter of a bf16 forward
    #: (benchmarks/results/inference_forms_cpu.md, lever bf16_dft). Training, fp32 and GPUs keep
    #: the FFTs.
    dft_in_bf16: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, w = x.shape[1], x.shape[-1]
        if self.dft_in_bf16 and x.device.type == "cpu" and not torch.is_grad_enabled() \
                and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
            return self._forward_dft(x)
        with torch.autocast(x.device.type, enabled=False):
            k = torch.fft.rfft(x.float(), dim=-1, norm="ortho")  # (B, C, H, W//2+1)
            z = F.relu(self.mix(torch.cat([k.real, k.imag], dim=1)))
            y = torch.fft.irfft(torch.complex(z[:, :c], z[:, c:]), n=w, dim=-1, norm="ortho").to(x.dtype)
        return y if self.gate is None else y * torch.sigmoid(self.gate(x))

    def _forward_dft(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the FFT pair as matrix products in the autocast's precision."""
        c = x.shape[1]
        cos, minus_sin, inv_cos, inv_minus_sin = _rdft_pair(x.shape[-1], str(x.device))
        rows = x.contiguous()  # (B, C, H, W), rows contiguous for the products along W
        z = F.relu(self.mix(torch.cat([rows @ cos, rows @ minus_sin], dim=1)))
        y = z[:, :c] @ inv_cos + z[:, c:] @ inv_minus_sin
        if x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous(memory_format=torch.channels_last)
        return y if self.gate is None else y * torch.sigmoid(self.gate(x))


@functools.lru_cache(maxsize=16)
def _rdft_pair(w: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(cos, −sin, (a·cos)ᵀ, −(a·sin)ᵀ)`` of :func:`iconet.ops.fft.rdft_matrices`: ``rfft`` of
    ``x`` is ``x @ cos + i · x @ −sin``, ``irfft`` of ``re + i · im`` is ``re @ (a·cos)ᵀ + im @ −(a·sin)ᵀ``."""
    cos, sin, a = rdft_matrices(w, device)
    return cos, -sin, (cos * a[None, :]).T.contiguous(), (-sin * a[None, :]).T.contiguous()


class ConvFeedForward(nn.Module):
    """Local feed-forward: 3×3 conv, activation (ReLU default, as EDSR's blocks, or GELU), 3×3
    conv. ``(B, C, H, W) → (B, C, H, W)``.

    Dense 3×3 convolutions run near the CPU's peak where depth-wise ones are memory-bound,
    and they are the workhorse of SR networks.
    """

    def __init__(self, channels: int, expansion: float = 1.0, activation: str = "relu") -> None:
        super().__init__()
        if activation not in FFN_ACTIVATIONS:
            raise ValueError(f"ffn activation must be one of {sorted(FFN_ACTIVATIONS)}, got {activation!r}")
        hidden = max(1, int(round(channels * expansion)))
        self.expand = nn.Conv2d(channels, hidden, 3, padding=1)
        self.project = nn.Conv2d(hidden, channels, 3, padding=1)
        self.act = FFN_ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.act(self.expand(x)))


class RSCFLBlock(nn.Module):
    """One RSCFL block: ``x + proj(spatial(n(x)) + channel(n(x)))``, then ``+ ffn(.)``.

    Args:
        channels: feature width C.
        spatial: keep the spatial (large-kernel) branch.
        channel: keep the channel (transposed-attention) branch.
        spectral: add a third mixing branch, global along the last axis (:class:`SpectralMixing`).
        spectral_gate: gate that branch by the local content (see :class:`SpectralMixing`).
        heads: heads of the channel attention.
        ffn_expansion: hidden width of the feed-forward network, as a multiple of C.
        ffn_activation: ``"relu"`` or ``"gelu"`` inside the feed-forward network.
        layer_scale: initial value of a learned per-channel scale on each residual branch
            (LayerScale, Touvron et al. 2021); 0 turns it off (branches added unscaled).
        mix_norm: LayerNorm over channels before the spatial/channel mixing (pre-norm); off, the
            branches see the residual stream as it is (as EDSR's blocks do).

    With both branches off the block is the feed-forward part alone (an ablation).
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial: bool = True,
        channel: bool = True,
        spectral: bool = False,
        spectral_gate: bool = True,
        heads: int = 4,
        ffn_expansion: float = 1.0,
        ffn_activation: str = "relu",
        layer_scale: float = 0.0,
        mix_norm: bool = True,
    ) -> None:
        super().__init__()
        self.spatial = SpatialAttention(channels) if spatial else None
        self.channel = ChannelAttention(channels, heads) if channel else None
        self.spectral = SpectralMixing(channels, spectral_gate) if spectral else None
        if spatial or channel or spectral:
            self.norm_mix = ChannelLayerNorm(channels) if mix_norm else nn.Identity()
            self.project = nn.Conv2d(channels, channels, 1)
        self.ffn = ConvFeedForward(channels, ffn_expansion, ffn_activation)
        self.scale_mix: nn.Parameter | None = None
        self.scale_ffn: nn.Parameter | None = None
        if layer_scale > 0:
            if spatial or channel or spectral:
                self.scale_mix = nn.Parameter(torch.full((1, channels, 1, 1), float(layer_scale)))
            self.scale_ffn = nn.Parameter(torch.full((1, channels, 1, 1), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [b for b in (self.spatial, self.channel, self.spectral) if b is not None]
        if branches:
            y = self.norm_mix(x)
            mixed = None
            for branch in branches:
                out = branch(y)
                mixed = out if mixed is None else mixed + out
            mixed = self.project(mixed)
            x = x + (mixed if self.scale_mix is None else mixed * self.scale_mix)
        out = self.ffn(x)
        return x + (out if self.scale_ffn is None else out * self.scale_ffn)


class RSCFLGroup(nn.Module):
    """``blocks`` RSCFL blocks and a 3×3 conv, with a residual around the group."""

    def __init__(self, channels: int, blocks: int, **block_kwargs: object) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(RSCFLBlock(channels, **block_kwargs) for _ in range(blocks)))  # type: ignore[arg-type]
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.blocks(x))
