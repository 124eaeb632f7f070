"""Speech encoders: clip checks, loudness normalisation, .npy pass-through, the embedding cache, eGeMAPS features,
emotion2vec+ weight discovery and the real FunASR code path.

Test speech is synthesized with numpy (vowel-like harmonic signals with formant shaping and syllable-rate
modulation), so no espeak-ng or network is needed. The FunASR path is exercised for real, not mocked: the test
builds a tiny emotion2vec model folder (FunASR's registered ``Emotion2vec`` class, 1024-d but one shallow layer,
random weights saved as ``model.pt`` next to our own small ``config.yaml``) and loads it through ``AutoModel``.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cmet.errors import CmetWarning, InputError, MissingWeightsError
from cmet.media import content_key, read_audio
from cmet.speech import EGeMAPS, Emotion2Vec, available_encoders, get_encoder
from cmet.speech.base import prepare_waveform
from cmet.speech.emotion2vec import find_weights

SR = 16000
F0_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"
LOUDNESS_MEAN = "loudness_sma3_amean"


def vowel(f0: float, seconds: float = 3.0, level: float = 0.1, seed: int = 0, rate: int = SR) -> np.ndarray:
    """A voiced, speech-like signal: harmonics of ``f0`` shaped by three formants, 4 Hz syllables, light vibrato."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / rate
    wave = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        gain = sum(np.exp(-(((k * f0 - fc) / bw) ** 2)) for fc, bw in ((700, 150), (1200, 200), (2600, 300)))
        wave += (gain + 0.02) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t - np.pi / 2)
    wave *= syllables + 0.01 * rng.standard_normal(t.size)
    return (level * wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, rate: int = SR) -> Path:
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache, and no real weights can leak in from the user's caches."""
    monkeypatch.setenv("CMET_CACHE", str(tmp_path / "cache"))
    for var, sub in (("CMET_CHECKPOINTS", "ckpt"), ("MODELSCOPE_CACHE", "ms"), ("HF_HOME", "hf")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


class CountingEGeMAPS(EGeMAPS):
    """eGeMAPS that counts how many waveforms it actually had to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0

    def _embed_waveforms(self, waves):
        self.encoded += len(waves)
        return super()._embed_waveforms(waves)


def test_npy_embeddings_pass_through_and_wrong_dim_is_rejected(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((2, 1024)).astype(np.float32)
    paths = [tmp_path / "a.npy", tmp_path / "b.NPY"]
    for path, vector in zip(paths, vectors):
        with open(path, "wb") as f:  # np.save(name) would append ".npy" to "b.NPY"
            np.save(f, vector)
    np.save(tmp_path / "row.npy", vectors[:1])  # (1, 1024): unambiguous, accepted
    out = Emotion2Vec().embed([*paths, tmp_path / "row.npy", vectors[1].astype(np.float64)])
    assert out.shape == (4, 1024) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.stack([vectors[0], vectors[1], vectors[0], vectors[1]]))

    with pytest.raises(InputError, match=r"a\.npy.*egemaps_v02.*\(88,\)"):
        EGeMAPS().embed([paths[0]])
    np.save(tmp_path / "frames.npy", rng.standard_normal((50, 1024)))
    with pytest.raises(InputError, match=r"frames\.npy.*\(50, 1024\)"):
        Emotion2Vec().embed([tmp_path / "frames.npy"])
    np.save(tmp_path / "nan.npy", np.full(88, np.nan))
    with pytest.raises(InputError, match=r"nan\.npy"):
        EGeMAPS().embed([tmp_path / "nan.npy"])
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"junk\.npy"):
        EGeMAPS().embed([tmp_path / "junk.npy"])
    assert EGeMAPS().embed([]).shape == (0, 88)
    np.testing.assert_array_equal(Emotion2Vec().embed(vectors), vectors)  # an [N, dim] array: one row per clip


def test_cache_is_keyed_by_content_and_reused(tmp_path):
    wav = write_wav(tmp_path / "take1.wav", vowel(150))
    encoder = CountingEGeMAPS()
    first = encoder.embed([wav])
    assert encoder.encoded == 1
    entry = tmp_path / "cache" / "embeddings" / "egemaps_v02" / f"{content_key(wav)}.npy"
    np.testing.assert_array_equal(np.load(entry), first[0])

    copy = tmp_path / "renamed copy.wav"
    shutil.copy(wav, copy)
    again = encoder.embed([wav, copy])
    assert encoder.encoded == 1, "a second run on the same bytes must not recompute"
    np.testing.assert_array_equal(again, np.stack([first[0], first[0]]))

    entry.write_bytes(b"corrupt")
    np.testing.assert_allclose(encoder.embed([wav]), first, rtol=1e-6)
    assert encoder.encoded == 2, "an unreadable cache entry is recomputed"

    other = write_wav(tmp_path / "take2.wav", vowel(150, seed=5))
    encoder.embed([other])
    assert encoder.encoded == 3


def test_clip_checks(tmp_path):
    encoder = EGeMAPS()
    with pytest.raises(InputError, match=r"short\.wav.*0\.30 s.*0\.5 s"):
        encoder.embed([write_wav(tmp_path / "short.wav", vowel(150, seconds=0.3))])
    with pytest.raises(InputError, match=r"silent\.wav.*silent"):
        encoder.embed([write_wav(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32))])
    with pytest.raises(InputError, match=r"silent"):
        encoder.embed([np.full(SR, 2e-5, dtype=np.float32)])
    broken = vowel(150)
    broken[100] = np.nan
    with pytest.raises(InputError, match=r"Clip #2.*NaN"):
        encoder.embed([vowel(150), broken])
    with pytest.raises(InputError, match=r"missing\.wav.*does not exist"):
        encoder.embed([tmp_path / "missing.wav"])
    with pytest.raises(InputError, match=r"shape \(2, 16000\)"):
        encoder.embed([np.zeros((2, SR), dtype=np.float32)])
    with pytest.raises(TypeError, match="sequence"):
        encoder.embed(str(tmp_path / "x.wav"))


def test_clipping_warns_but_full_scale_peaks_do_not():
    clean = vowel(150, level=0.25)
    clean /= np.abs(clean).max()  # peak-normalised to exactly full scale: not clipping
    with warnings.catch_warnings():
        warnings.simplefilter("error", CmetWarning)
        prepare_waveform(clean, "clean.wav")
    clipped = np.clip(vowel(150, level=0.9), -1.0, 1.0)
    with pytest.warns(CmetWarning, match=r"loud\.wav.*clipped"):
        prepare_waveform(clipped, "loud.wav")


def test_loudness_is_normalised_before_embedding():
    loud = vowel(180, level=0.2)
    quiet = loud * 0.02  # 34 dB quieter, well above the silence floor
    original = quiet.copy()
    features = EGeMAPS().embed([loud, quiet])
    np.testing.assert_array_equal(quiet, original)  # input untouched
    loudness = EGeMAPS().feature_names().index(LOUDNESS_MEAN)
    assert features[0, loudness] > 0
    np.testing.assert_allclose(features[0], features[1], rtol=1e-3, atol=1e-3)
    # Speech level is measured over active frames: a long pause does not make the speech louder after normalising.
    with_pause = np.concatenate([loud, np.zeros(3 * SR, dtype=np.float32)])
    np.testing.assert_allclose(
        np.abs(prepare_waveform(with_pause, "p")[: loud.size]).max(), np.abs(prepare_waveform(loud, "l")).max(), 1e-5
    )


def test_egemaps_features_follow_pitch():
    encoder = EGeMAPS()
    low, high = encoder.embed([vowel(120), vowel(240, seed=3)])
    assert low.shape == (88,) and np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    f0 = encoder.feature_names().index(F0_MEAN)
    assert low[f0] == pytest.approx(12 * np.log2(120 / 27.5), abs=1.0)
    assert high[f0] - low[f0] == pytest.approx(12.0, abs=1.0)  # one octave


def test_any_format_rate_and_channel_count_is_read(tmp_path):
    mono = write_wav(tmp_path / "mono.wav", vowel(200))
    left = vowel(200, level=0.05, rate=44100)
    sf.write(tmp_path / "stereo44k.flac", np.stack([left, 0.5 * left], axis=1), 44100)
    encoder = EGeMAPS()
    a, b = encoder.embed([mono, tmp_path / "stereo44k.flac"])
    f0 = encoder.feature_names().index(F0_MEAN)
    assert b[f0] == pytest.approx(a[f0], abs=0.5)
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(InputError, match=r"notes\.wav"):
        encoder.embed([tmp_path / "notes.wav"])


def test_missing_emotion2vec_weights_fail_fast_but_npy_works(tmp_path):
    wav = write_wav(tmp_path / "speech.wav", vowel(150))
    assert not Emotion2Vec.available()
    assert available_encoders() == ["egemaps_v02"]
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as caught:
        Emotion2Vec().embed([wav])
    assert time.perf_counter() - start < 2.0
    message = str(caught.value)
    assert "emotion2vec_plus_large" in message
    assert f"{tmp_path / 'ckpt' / 'emotion2vec_plus_large'}/" in message
    assert "python -m cmet download" in message
    with pytest.raises(MissingWeightsError, match=r"elsewhere"):
        Emotion2Vec(model_dir=tmp_path / "elsewhere").embed([wav])
    np.save(tmp_path / "e.npy", np.ones(1024, dtype=np.float32))
    assert Emotion2Vec().embed([tmp_path / "e.npy"]).shape == (1, 1024)


def make_model_dir(path: Path) -> None:
    path.mkdir(parents=True)
    for name in ("model.pt", "config.yaml"):
        (path / name).write_bytes(b"")


def test_weights_are_found_in_checkpoints_and_hub_caches(tmp_path, monkeypatch):
    ms = tmp_path / "ms" / "hub" / "models" / "iic" / "emotion2vec_plus_large"
    make_model_dir(ms)
    assert find_weights() == ms
    snapshot = tmp_path / "hf" / "hub" / "models--emotion2vec--emotion2vec_plus_large" / "snapshots" / "abc123"
    make_model_dir(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    shutil.rmtree(tmp_path / "ms" / "hub")
    assert find_weights() == snapshot
    ours = tmp_path / "ckpt" / "emotion2vec_plus_large"
    make_model_dir(ours)
    assert find_weights() == ours  # cmet's own checkpoints come first
    assert Emotion2Vec.available() and available_encoders() == ["emotion2vec_plus_large", "egemaps_v02"]
    (ours / "model.pt").unlink()
    assert find_weights() == snapshot  # a folder without model.pt is not a model


def build_tiny_emotion2vec(folder: Path) -> None:
    """A 1024-d, two-block emotion2vec (FunASR's own model class) with random weights, in FunASR's folder layout."""
    import torch
    import yaml

    with warnings.catch_warnings():  # pydub, imported by FunASR, warns that there is no system ffmpeg
        warnings.simplefilter("ignore", RuntimeWarning)
        from funasr.register import tables

    audio = {
        "feature_encoder_spec": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
        "extractor_mode": "layer_norm",
        "conv_pos_depth": 1,
        "conv_pos_width": 3,
        "conv_pos_groups": 16,
        "conv_pos_pre_ln": False,
        "prenet_depth": 1,
        "model_depth": 1,
        "prenet_layerdrop": 0.0,
        "prenet_dropout": 0.0,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "decoder": None,
        "use_alibi_encoder": True,
        "num_alibi_heads": 2,
        "alibi_scale": 1.0,
        "learned_alibi": False,
        "alibi_max_pos": None,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_layer": True,
        "learned_alibi_scale_per_head": True,
        "local_grad_mult": 1.0,
        "num_extra_tokens": 0,
        "init_extra_token_zero": True,
    }
    conf = {
        "depth": 1,
        "embed_dim": 1024,
        "num_heads": 2,
        "mlp_ratio": 0.25,
        "norm_eps": 1e-5,
        "norm_affine": True,
        "layer_norm_first": False,
        "end_of_block_targets": False,
        "encoder_dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "post_mlp_drop": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.0,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "normalize": True,
        "modalities": {"audio": audio},
    }
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": "Emotion2vec", "model_conf": conf}))
    torch.manual_seed(0)
    torch.save(tables.model_classes.get("Emotion2vec")(model_conf=conf).state_dict(), folder / "model.pt")


@pytest.mark.slow
def test_funasr_path_with_a_tiny_local_model(tmp_path, capsys):
    import logging

    import torch
    import torch.nn.functional as F

    build_tiny_emotion2vec(tmp_path / "ckpt" / "emotion2vec_plus_large")
    capsys.readouterr()
    root_level = logging.getLogger().level
    clips = [write_wav(tmp_path / "a.wav", vowel(130)), write_wav(tmp_path / "b.wav", vowel(260, seed=2) * 0.1)]
    encoder = Emotion2Vec()  # found through CMET_CHECKPOINTS, loaded by FunASR AutoModel on first audio clip
    out = encoder.embed(clips)
    assert out.shape == (2, 1024) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert not np.allclose(out[0], out[1])
    assert capsys.readouterr().out == "" and logging.getLogger().level == root_level  # FunASR kept quiet

    # Independent check: the mean over frames of the last layer for the level-normalised, layer-normed waveform.
    network = encoder.load().model
    for clip, vector in zip(clips, out):
        wave = prepare_waveform(read_audio(clip), "x")
        source = torch.from_numpy(wave).view(1, -1)
        with torch.no_grad():
            frames = network.extract_features(F.layer_norm(source, source.shape))["x"]
        np.testing.assert_allclose(vector, frames.mean(dim=1)[0].numpy(), rtol=1e-4, atol=1e-5)

    class Counting(Emotion2Vec):
        calls = 0

        def _embed_waveforms(self, waves):
            Counting.calls += 1
            return super()._embed_waveforms(waves)

    np.testing.assert_array_equal(Counting().embed(clips), out)  # served from the cache: no model load at all
    assert Counting.calls == 0


def test_factory():
    assert isinstance(get_encoder("egemaps"), EGeMAPS)
    assert get_encoder("egemaps") is get_encoder("egemaps_v02")  # shared: a model loads once per process
    e2v = get_encoder("emotion2vec_plus_large", device="cpu")
    assert isinstance(e2v, Emotion2Vec) and (e2v.name, e2v.dim) == ("emotion2vec_plus_large", 1024)
    assert (get_encoder("egemaps_v02").name, get_encoder("egemaps_v02").dim) == ("egemaps_v02", 88)
    with pytest.raises(InputError, match="wav2vec"):
        get_encoder("wav2vec")


def test_sample_data(samples_dir):
    """eGeMAPS runs on real MEAD speech, and the authors' emotion2vec+ embeddings load through embed()."""
    wavs = sorted((samples_dir / "speech" / "mead").glob("*/*.wav"))[::40][:4]
    assert wavs, "no MEAD wavs in the samples folder"
    features = EGeMAPS().embed(wavs)
    assert features.shape == (len(wavs), 88) and np.all(np.isfinite(features))
    npys = [samples_dir / "emotion2vec_plus_large" / "mead" / w.parent.name / f"{w.stem}.npy" for w in wavs]
    embeddings = Emotion2Vec().embed(npys)
    assert embeddings.shape == (len(wavs), 1024) and np.all(np.isfinite(embeddings))
    np.testing.assert_array_equal(embeddings[0], np.load(npys[0]))
