"""EDTalk generator: appearance encoder, orthogonal motion bases and the flow-warping style decoder.

Re-implemented from the published architecture so that the released ``EDTalk.pt`` (``["gen"]``) loads
strictly and renders the same images as the official ``Generator`` (checked against fixtures).
``encode`` is the official ``compute_alpha_D`` and ``render`` the official
``test_EDTalk_AV_use_exp_weight``; ``encode_source`` + ``render_batch`` do the same work but encode the
source frame once and render many frames per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cmet.errors import InputError
from cmet.face.edtalk.layers import (
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    ResBlock,
    StyledConv,
    Upsample,
)

IMAGE_SIZE = 256
STYLE_DIM = 512
LIP_DIM, POSE_DIM, EXP_DIM = 20, 6, 10
# Decoder/encoder channels per resolution (channel_multiplier 1).
CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
LEVELS = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class SourceCode:
    """Everything the decoder needs from the source frame, computed once and reused for every frame.

    ``normalized`` caches InstanceNorm(EEM.conv2(feat)) per level: it does not depend on the expression,
    so a batch of frames only pays for the cheap per-frame affine part of the EEM.
    """

    wa: torch.Tensor  # [B, 512] appearance latent
    feats: tuple[torch.Tensor, ...]  # encoder features at 8, 16, ..., 256
    normalized: tuple[torch.Tensor, ...]


class AppearanceNet(nn.Module):
    """StyleGAN2-like encoder: 1x1 stem, six downsampling ResBlocks, a 4x4 conv to the 512-d latent."""

    def __init__(self):
        super().__init__()
        widths = [CHANNELS[256], 128, 256, 512, 512, 512, 512]
        convs: list[nn.Module] = [ConvLayer(3, widths[0], 1)]
        convs += [ResBlock(cin, cout) for cin, cout in zip(widths[:-1], widths[1:])]
        convs.append(EqualConv2d(512, STYLE_DIM, 4, bias=False))
        self.convs = nn.ModuleList(convs)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Latent [N, 512] and the skip features ordered 8x8 first, 256x256 last."""
        outs = []
        h = img
        for conv in self.convs:
            h = conv(h)
            outs.append(h)
        return h.flatten(1), tuple(outs[-3::-1])


class Encoder(nn.Module):
    """Wrapper that only exists to reproduce the checkpoint's ``enc.net_app.*`` names."""

    def __init__(self):
        super().__init__()
        self.net_app = AppearanceNet()


class ADAIN(nn.Module):
    """InstanceNorm whose scale/shift come from the expression latent through a small MLP."""

    def __init__(self, channels: int, latent_dim: int = STYLE_DIM, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def affine(self, normalized: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(latent.flatten(1))
        gamma = self.mlp_gamma(actv)[:, :, None, None]
        beta = self.mlp_beta(actv)[:, :, None, None]
        return normalized * (1 + gamma) + beta


class EEM(nn.Module):
    """Expression-enhancement module on the encoder features: x + ADAIN(conv2(x), e).

    The official forward also computes a conv1/norm1 branch and then overwrites it, so that branch has
    no effect on the output; its weights are kept only so the checkpoint loads strictly.
    """

    def __init__(self, channels: int, latent_dim: int = STYLE_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = ADAIN(channels, latent_dim)
        self.norm2 = ADAIN(channels, latent_dim)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The expression-independent part, cacheable per source frame."""
        return F.instance_norm(self.conv2(x), eps=1e-5)

    def modulate(self, x: torch.Tensor, normalized: torch.Tensor, exp_latent: torch.Tensor) -> torch.Tensor:
        return self.norm2.affine(normalized, exp_latent) + x


class ToRGB(nn.Module):
    """1x1 conv + FusedLeakyReLU + bias, accumulated onto the upsampled previous RGB."""

    def __init__(self, channels: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample()
        self.conv = ConvLayer(channels, 3, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


@lru_cache(maxsize=16)
def _base_grid(size: int) -> torch.Tensor:
    """Identity sampling grid [1, size, size, 2] (x along width, y along height), float64 like the original."""
    lin = np.linspace(-1.0, 1.0, size)
    xs, ys = np.meshgrid(lin, lin)
    return torch.from_numpy(np.stack([xs, ys], axis=2)).unsqueeze(0).to(torch.float32)


class ToFlow(nn.Module):
    """Predicts a coarse-to-fine warp field and mask, and warps the (EEM-refined) encoder feature with it."""

    def __init__(self, channels: int, style_dim: int = STYLE_DIM):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(channels, 3, 1, style_dim, demodulate=False)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (warped feature, warped blended into ``x``, raw 3-channel flow for the next level)."""
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        sampler = torch.tanh(out[:, 0:2])
        mask = torch.sigmoid(out[:, 2:3])
        grid_dtype = torch.promote_types(sampler.dtype, torch.float32)
        base = _base_grid(x.shape[-1]).to(device=x.device, dtype=grid_dtype)
        grid = sampler.permute(0, 2, 3, 1).to(grid_dtype) + base
        warped = F.grid_sample(feat.to(grid_dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        warped = (warped * mask).to(feat.dtype)
        return warped, warped + x * (1.0 - mask), out


class _ConstantInput(nn.Module):
    """Learned 4x4 starting tensor of the decoder (``dec.input.input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class Synthesis(nn.Module):
    """Style decoder: constant 4x4 input, styled convs up to 256, per-level EEM + flow warp + RGB skip."""

    def __init__(self, style_dim: int = STYLE_DIM):
        super().__init__()
        self.input = _ConstantInput(CHANNELS[4])
        self.conv1 = StyledConv(CHANNELS[4], CHANNELS[4], 3, style_dim)
        self.to_rgb1 = ToRGB(CHANNELS[4], upsample=False)  # unused at inference; kept for strict loading
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        self.fineadainresblock = nn.ModuleList()
        cin = CHANNELS[4]
        for res in LEVELS:
            cout = CHANNELS[res]
            self.convs.append(StyledConv(cin, cout, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, 3, style_dim))
            self.to_rgbs.append(ToRGB(cout))
            self.to_flows.append(ToFlow(cout, style_dim))
            self.fineadainresblock.append(EEM(cout, style_dim))
            cin = cout

    def prepare(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(eem.prepare(f) for eem, f in zip(self.fineadainresblock, feats))

    def forward(self, latent: torch.Tensor, source: SourceCode, exp_latent: torch.Tensor) -> torch.Tensor:
        """All 14 style inputs of the original are the same latent, so it is used directly everywhere."""
        out = self.input.input.repeat(latent.shape[0], 1, 1, 1).to(latent.dtype)
        out = self.conv1(out, latent)
        rgb = flow = None
        for j, (to_rgb, to_flow, eem) in enumerate(zip(self.to_rgbs, self.to_flows, self.fineadainresblock)):
            out = self.convs[2 * j](out, latent)
            out = self.convs[2 * j + 1](out, latent)
            feat = eem.modulate(source.feats[j], source.normalized[j], exp_latent)
            warped, out, flow = to_flow(out, latent, feat, flow)
            rgb = to_rgb(warped, rgb)
        return rgb


class _Basis(nn.Module):
    """A raw (non-orthogonal) set of motion directions; only the QR of the concatenation is used."""

    def __init__(self, dims: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(STYLE_DIM, dims))


def _mlp(out_dim: int, depth: int) -> nn.Sequential:
    layers = [EqualLinear(STYLE_DIM, STYLE_DIM) for _ in range(depth - 1)]
    return nn.Sequential(*layers, EqualLinear(STYLE_DIM, out_dim))


class EDTalk(nn.Module):
    """The EDTalk generator (size 256, 20 lip + 6 pose + 10 expression coefficients)."""

    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.dec = Synthesis()
        self.direction_lipnonlip = _Basis(LIP_DIM + POSE_DIM)
        self.direction_exp = _Basis(EXP_DIM)
        self.fc = _mlp(STYLE_DIM, 4)
        self.lip_fc = _mlp(LIP_DIM, 3)
        self.pose_fc = _mlp(POSE_DIM, 3)
        self.exp_fc = _mlp(EXP_DIM, 3)
        self._basis_cache: tuple[tuple, torch.Tensor] | None = None

    @classmethod
    def official(cls) -> EDTalk:
        """The released configuration (the only one that exists); randomly initialised until loaded."""
        return cls()

    # -- encoding -------------------------------------------------------------------------------------
    def appearance(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Appearance latent wa [N, 512] and encoder features (8x8 ... 256x256)."""
        _check_images(img)
        return self.enc.net_app(img)

    def coefficients(self, wa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(exp10, pose6, lip20) predicted from an appearance latent."""
        h = self.fc(wa)
        return self.exp_fc(h), self.pose_fc(h), self.lip_fc(h)

    def encode(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Official ``compute_alpha_D``: img [N, 3, 256, 256] in [-1, 1] -> (exp10, pose6, lip20)."""
        return self.coefficients(self.appearance(img)[0])

    def encode_source(self, img: torch.Tensor) -> SourceCode:
        """Encode the identity frame(s) once; reuse the result for every rendered frame."""
        wa, feats = self.appearance(img)
        return SourceCode(wa=wa, feats=feats, normalized=self.dec.prepare(feats))

    # -- motion ---------------------------------------------------------------------------------------
    def basis(self) -> torch.Tensor:
        """Q [512, 36]: reduced QR of [lip/pose | exp] directions (LAPACK signs kept, as in the original)."""
        w1, w2 = self.direction_lipnonlip.weight, self.direction_exp.weight
        key = (w1.data_ptr(), w1._version, w2.data_ptr(), w2._version, w1.device, w1.dtype)
        cacheable = not (torch.is_grad_enabled() and (w1.requires_grad or w2.requires_grad))
        if cacheable and self._basis_cache is not None and self._basis_cache[0] == key:
            return self._basis_cache[1]
        weight = torch.cat([w1, w2], dim=1) + 1e-8
        q = torch.linalg.qr(weight.float(), mode="reduced")[0].to(weight.dtype)
        if cacheable:
            self._basis_cache = (key, q)
        return q

    def motion(self, alpha36: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(full motion direction [N, 512], expression latent [N, 512]) for coefficients [lip, pose, exp]."""
        q = self.basis().to(alpha36.dtype)
        parts = alpha36[:, :, None] * q.T[None]  # [N, 36, 512]: alpha_k * q_k
        return parts.sum(dim=1), parts[:, LIP_DIM + POSE_DIM :].sum(dim=1)

    # -- rendering ------------------------------------------------------------------------------------
    def render_batch(
        self, source: SourceCode, lip20: torch.Tensor, pose: torch.Tensor, exp10: torch.Tensor
    ) -> torch.Tensor:
        """Render N frames of one encoded source: lip20 [N, 20], pose [N, 6] or pose images [N, 3, 256, 256],
        exp10 [N, 10] -> images [N, 3, 256, 256] (not clamped, roughly in [-1, 1])."""
        pose6 = self.encode(pose)[1] if pose.dim() == 4 else pose
        n = lip20.shape[0]
        if pose6.shape != (n, POSE_DIM) or exp10.shape != (n, EXP_DIM) or lip20.shape != (n, LIP_DIM):
            raise InputError(
                f"EDTalk render needs lip [N,20], pose [N,6] and exp [N,10] for the same N; got "
                f"{tuple(lip20.shape)}, {tuple(pose6.shape)} and {tuple(exp10.shape)}."
            )
        if source.wa.shape[0] not in (1, n):
            raise InputError(f"The encoded source holds {source.wa.shape[0]} frames; render needs 1 or {n}.")
        alpha36 = torch.cat([lip20, pose6.to(lip20.dtype), exp10.to(lip20.dtype)], dim=-1)
        directions, exp_latent = self.motion(alpha36)
        return self.dec(source.wa + directions, source, exp_latent)

    def render(
        self, source_img: torch.Tensor, lip20: torch.Tensor, pose_img: torch.Tensor, exp10: torch.Tensor
    ) -> torch.Tensor:
        """Official ``test_EDTalk_AV_use_exp_weight``: source frame(s), lip coefficients, pose frame(s) and
        expression coefficients -> rendered frames."""
        return self.render_batch(self.encode_source(source_img), lip20, pose_img, exp10)

    forward = render


def _check_images(img: torch.Tensor) -> None:
    if img.dim() != 4 or tuple(img.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"EDTalk needs aligned face crops shaped [N, 3, 256, 256] in [-1, 1]; got {tuple(img.shape)}.")
