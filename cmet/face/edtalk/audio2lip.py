"""EDTalk's Audio2Lip: a Wav2Lip-style conv stack mapping a 16-frame mel window to 20 lip coefficients.

Names follow the released ``Audio2Lip.pt`` (``["audio2lip"]``) so it loads strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from cmet.errors import InputError

# (cin, cout, kernel, stride, padding, residual): 80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1
_BLOCKS = (
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)
MEL_BANDS, MEL_STEPS, LIP_DIM = 80, 16, 20


class ConvBlock(nn.Module):
    """Conv -> BatchNorm -> (+ input) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


class Audio2Lip(nn.Module):
    """mel windows [B*T, 1, 80, 16] -> lip coefficients [B, T, 20]."""

    def __init__(self):
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in _BLOCKS))
        self.mapping = nn.Linear(512, LIP_DIM)

    @classmethod
    def official(cls) -> Audio2Lip:
        """The released configuration; randomly initialised until loaded."""
        return cls()

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """The 512-d audio embedding per window, before ``mapping``."""
        if mel.dim() != 4 or tuple(mel.shape[1:]) != (1, MEL_BANDS, MEL_STEPS):
            raise InputError(f"Audio2Lip needs mel windows shaped [N, 1, 80, 16]; got {tuple(mel.shape)}.")
        return self.audio_encoder(mel).flatten(1)

    def forward(self, mel: torch.Tensor, batch_size: int, T: int) -> torch.Tensor:  # noqa: N803 (official name)
        if mel.shape[0] != batch_size * T:
            raise InputError(f"Audio2Lip got {mel.shape[0]} mel windows but batch_size*T = {batch_size * T}.")
        return self.mapping(self.features(mel)).reshape(batch_size, T, LIP_DIM)

    def predict(self, windows: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Lip coefficients [T, 20] for one clip's windows [T, 1, 80, 16], run in chunks to bound memory."""
        outs = [self.mapping(self.features(part)) for part in windows.split(chunk)]
        return torch.cat(outs) if outs else windows.new_zeros(0, LIP_DIM)
