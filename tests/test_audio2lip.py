"""Audio2Lip (official-fixture equality, strict loading) and its mel front end."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from cmet.errors import InputError
from cmet.face.edtalk import Audio2Lip, load_audio2lip
from cmet.face.edtalk.mel import FMAX, FMIN, N_MELS, mel_spectrogram, mel_windows, smooth_lips
from tests.official_weights import check_weights, deterministic_state_dict, load_io, load_manifest

RATE = 16000


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest("audio2lip_manifest.json")


@pytest.fixture(scope="module")
def weights(manifest) -> dict[str, torch.Tensor]:
    state = deterministic_state_dict(manifest, Audio2Lip.official())
    check_weights(manifest, state)
    return state


@pytest.fixture(scope="module")
def model(weights) -> Audio2Lip:
    net = Audio2Lip.official()
    net.load_state_dict(weights, strict=True)
    return net.eval()


def _tone(freq: float, seconds: float, amplitude: float = 0.5, extra: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE) + extra) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_state_dict_matches_manifest(model, manifest):
    state = model.state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == [(k, s) for k, s, _ in manifest["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"] == 2_822_932


def test_matches_official_outputs(model):
    io = load_io("audio2lip_io.pt")
    with torch.no_grad():
        feats = model.features(io["in_mel"])
        lips = model(io["in_mel"], 2, 2)
        per_window = model.predict(io["in_mel"], chunk=3)
    torch.testing.assert_close(feats, io["dbg_audio_feat512"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lips, io["out_lip"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(per_window, lips.reshape(4, 20), atol=1e-5, rtol=1e-5)


def test_release_wrapping_loads_strictly(weights, tmp_path):
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": weights, "epoch": 3}, path)
    loaded = load_audio2lip(path)
    assert not loaded.training
    torch.testing.assert_close(loaded.mapping.weight, weights["mapping.weight"], atol=0, rtol=0)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        load_audio2lip(tmp_path / "junk.pt")


def test_wrong_window_shape_is_an_input_error(model):
    with pytest.raises(InputError, match="80, 16"):
        model(torch.zeros(2, 1, 80, 12), 1, 2)


def test_mel_windows_shapes_and_range():
    windows = mel_windows(_tone(440.0, 1.0, extra=300))  # 300 extra samples: less than a frame, trimmed
    assert windows.shape == (25, 1, 80, 16) and windows.dtype == torch.float32
    assert windows.min() >= -4.0 and windows.max() <= 4.0
    assert windows.max() > 0.0  # a half-scale tone is well above the floor


def test_tone_energy_lands_in_the_440hz_band():
    mel = mel_spectrogram(_tone(440.0, 1.0))
    assert mel.shape == (81, N_MELS)  # centred STFT: 16000 / 200 + 1 frames
    centres = librosa.mel_frequencies(N_MELS + 2, fmin=FMIN, fmax=FMAX)[1:-1]
    expected = int(np.argmin(np.abs(centres - 440.0)))
    peak = int(np.argmax(mel[5:-5].mean(axis=0)))
    assert abs(peak - expected) <= 1
    louder = mel_spectrogram(_tone(440.0, 1.0, amplitude=0.9))
    assert louder[5:-5, expected].mean() > mel[5:-5, expected].mean()


def test_window_starts_follow_video_frames():
    audio = _tone(300.0, 1.0) * np.linspace(0.05, 1.0, RATE, dtype=np.float32)  # rising level: frames differ
    mel = torch.from_numpy(mel_spectrogram(audio))
    windows = mel_windows(audio)[:, 0]
    # frame 0 starts at int(80 * -2/25) = -6: columns 0..6 are clamped to mel frame 0
    for col in range(7):
        torch.testing.assert_close(windows[0, :, col], mel[0])
    torch.testing.assert_close(windows[0, :, 7], mel[1])
    torch.testing.assert_close(windows[10].T, mel[25:41])  # int(80 * 8/25) = 25
    torch.testing.assert_close(windows[24, :, -1], mel[-1])  # past the end: clamped to the last frame


def test_silence_sits_at_the_floor():
    assert torch.all(mel_windows(np.zeros(1280, dtype=np.float32)) == -4.0)


@pytest.mark.parametrize(
    "audio",
    [np.zeros(600, dtype=np.float32), np.zeros((2, 3200), dtype=np.float32), np.zeros(3200, dtype=np.int16)],
)
def test_unusable_audio_is_an_input_error(audio):
    with pytest.raises(InputError):
        mel_windows(audio)


def test_smooth_lips_gaussian_with_zero_padding():
    impulse = torch.zeros(9, 2)
    impulse[4, 0] = 1.0
    out = smooth_lips(impulse)
    torch.testing.assert_close(out[3:6, 0], torch.tensor([0.274, 0.452, 0.274]))
    assert out[:, 1].abs().max() == 0 and out[[0, 1, 2, 6, 7, 8], 0].abs().max() == 0
    ones = smooth_lips(torch.ones(5, 20))
    torch.testing.assert_close(ones[0], torch.full((20,), 0.726))
    torch.testing.assert_close(ones[2], torch.ones(20))
