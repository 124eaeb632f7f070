"""Audio front end of Audio2Lip: Wav2Lip-style normalised log-mel and one 16-step window per video frame.

Parameters are the ones the model was trained with (16 kHz, n_fft 800, hop 200, 80 slaney bands
55-7600 Hz, pre-emphasis 0.97, symmetric [-4, 4] normalisation), so they are constants, not options.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from cmet.config import MODEL_FPS, SPEECH_RATE
from cmet.errors import InputError

N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_STEPS = 16
MEL_FPS = SPEECH_RATE / HOP  # 80 mel frames per second
SAMPLES_PER_FRAME = SPEECH_RATE // MODEL_FPS  # 640
LIP_SMOOTHING = (0.274, 0.452, 0.274)


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SPEECH_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def frame_count(num_samples: int) -> int:
    """Whole 25 fps video frames covered by ``num_samples`` of 16 kHz audio (the remainder is dropped)."""
    return num_samples // SAMPLES_PER_FRAME


def mel_spectrogram(audio16k: np.ndarray) -> np.ndarray:
    """Normalised log-mel [frames, 80] in [-4, 4] at 80 frames/s.

    The STFT pads with ``reflect`` as librosa 0.7 (the version EDTalk was trained with) did by default.
    """
    wav = np.asarray(audio16k, dtype=np.float32)
    emphasised = np.append(wav[:1], wav[1:] - PREEMPHASIS * wav[:-1])
    spec = librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN, center=True, pad_mode="reflect")
    mel = _mel_basis() @ np.abs(spec)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = np.clip(2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS, -MAX_ABS, MAX_ABS)
    return norm.T.astype(np.float32)


def mel_windows(audio16k: np.ndarray) -> torch.Tensor:
    """Audio2Lip input [T, 1, 80, 16]: for video frame i, the 16 mel frames from int(80*(i-2)/25), clamped.

    ``audio16k`` is mono float audio at 16 kHz; it is trimmed to whole 640-sample (25 fps) frames.
    """
    wav = np.asarray(audio16k)
    if wav.ndim != 1 or not np.issubdtype(wav.dtype, np.floating):
        raise InputError(f"mel_windows needs mono float audio as a 1-D array; got {wav.dtype} {wav.shape}.")
    frames = frame_count(wav.shape[0])
    if frames == 0:
        raise InputError(f"The speech is too short for one video frame ({wav.shape[0]} of 640 samples at 16 kHz).")
    if not np.isfinite(wav).all():
        raise InputError("The speech audio contains NaN or infinite samples; re-export the audio.")
    mel = mel_spectrogram(wav[: frames * SAMPLES_PER_FRAME])
    starts = np.array([int(MEL_FPS * ((i - 2) / float(MODEL_FPS))) for i in range(frames)])
    idx = np.clip(starts[:, None] + np.arange(MEL_STEPS)[None, :], 0, mel.shape[0] - 1)
    windows = mel[idx].transpose(0, 2, 1)  # [T, 80, 16]
    return torch.from_numpy(np.ascontiguousarray(windows)).unsqueeze(1)


def smooth_lips(lip: torch.Tensor) -> torch.Tensor:
    """Smooth lip coefficients [T, C] over time with the 3-tap Gaussian (zero padding), as at inference."""
    if lip.dim() != 2:
        raise InputError(f"smooth_lips needs lip coefficients shaped [T, C]; got {tuple(lip.shape)}.")
    taps = torch.tensor(LIP_SMOOTHING, dtype=lip.dtype, device=lip.device)
    channels = lip.shape[1]
    x = lip.T.unsqueeze(0)  # [1, C, T]
    out = F.conv1d(x, taps.view(1, 1, 3).expand(channels, 1, 3), padding=1, groups=channels)
    return out[0].T
