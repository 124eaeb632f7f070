"""StyleGAN2-style building blocks of the EDTalk generator, in plain torch.

Parameter and buffer names follow the released checkpoint so that ``EDTalk.pt`` loads strictly.
Everything here is device-agnostic: no custom kernels, constants follow the input's device/dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_TAPS = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)


def blur_kernel(taps: Sequence[int] = BLUR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """Separable FIR kernel, normalised to sum ``gain`` (gain 4 keeps the level after 2x zero insertion)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    k /= k.sum()
    return k * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad both axes by ``pad``, FIR-filter each channel, subsample by ``down``."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, (p0, p1, p0, p1))
    # Depthwise conv: same 16-tap sums as a per-channel conv, and far faster on CPU than a 1-channel batch.
    weight = torch.flip(kernel, (0, 1)).to(dtype=x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


class Blur(nn.Module):
    """FIR filter with fixed padding; the ``kernel`` buffer is part of the checkpoint."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain=gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling used on the flow and RGB skip paths (zero insertion, pad (2, 1), kernel x4)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain=4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


class FusedLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2): the sqrt(2) keeps activations at unit variance."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * SQRT2


class EqualConv2d(nn.Module):
    """Conv whose weight is scaled by 1/sqrt(fan_in) at call time (equalized learning rate)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weight x 1/sqrt(in), bias x lr_mul)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(cin)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; indices match the checkpoint (``.0``, ``.1``, ``.2``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, downsample: bool = False, activate: bool = True, bias: bool = True
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (kernel - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(EqualConv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(cout))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Downsampling residual block of the appearance encoder; output (main + skip)/sqrt(2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3)
        self.conv2 = ConvLayer(cin, cout, 3, downsample=True)
        self.skip = ConvLayer(cin, cout, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """Per-sample style-modulated conv (grouped over the batch), optionally 2x upsampling."""

    def __init__(
        self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True, upsample: bool = False
    ):
        super().__init__()
        self.cin, self.cout, self.k = cin, cout, kernel
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_TAPS) - 2) - (kernel - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.padding = kernel // 2
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.modulation(style).view(n, 1, self.cin, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(n, self.cout, 1, 1, 1)
        x = x.reshape(1, n * self.cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * self.cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            return self.blur(out.view(n, self.cout, out.shape[-2], out.shape[-1]))
        weight = weight.reshape(n * self.cout, self.cin, self.k, self.k)
        out = F.conv2d(x, weight, padding=self.padding, groups=n)
        return out.view(n, self.cout, out.shape[-2], out.shape[-1])


class NoiseInjection(nn.Module):
    """Holds the checkpoint's ``noise.weight``; inference never injects noise, so it is the identity."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StyledConv(nn.Module):
    """ModulatedConv2d -> (no-op noise) -> FusedLeakyReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))
