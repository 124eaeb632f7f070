"""One interface for every speech encoder, with clip checks, loudness normalisation and an embedding cache.

A clip is a speech file (any format ``cmet.media.read_audio`` reads), a precomputed ``.npy`` embedding of shape
``(dim,)`` (the official inference's input format), or an in-memory array: a ``(dim,)`` array is an embedding, any
other 1-D array a 16 kHz mono waveform. An embedding needs no model, so presets and ``.npy`` inputs always work.

Embeddings of files are cached under ``cache_dir()/embeddings/<encoder name>/<sha256 of file bytes>.npy`` so a
clip is encoded once, whatever its name or location; arrays are not cached (they have no file to hash).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmet.config import SPEECH_RATE, cache_dir
from cmet.errors import CmetWarning, InputError
from cmet.media import content_key, read_audio, require_file

Clip = str | Path | np.ndarray

MIN_SECONDS = 0.5
SILENCE_RMS = 1e-4  # -80 dBFS: below this a clip holds no usable speech
TARGET_RMS = 10 ** (-23 / 20)  # active-speech level every clip is brought to before embedding
GATE_DB = 40.0  # frames quieter than the loudest frame by more than this are pauses, not speech
FRAME_SECONDS = 0.02
CLIP_LEVEL = 0.999  # |sample| at or above this counts as full scale
CLIP_RUN = 3  # a flat top of this many full-scale samples in a row is clipping, not a peak
CLIP_WARN_FRACTION = 1e-3


class SpeechEncoder(ABC):
    """Maps speech clips to fixed-size utterance embeddings, ``[N, dim]`` float32.

    Subclasses set ``name`` and ``dim`` and implement ``_embed_waveforms`` on checked, level-normalised 16 kHz
    mono waveforms; reading, checking, ``.npy`` pass-through and caching live here so every encoder treats input
    the same way.
    """

    name: str
    dim: int
    batch_size: int = 16  # waveforms held in memory at once while embedding a long list of clips

    @classmethod
    def available(cls) -> bool:
        """Whether clips can be embedded from audio right now (weights and libraries present)."""
        return True

    def embed(self, clips: Sequence[Clip]) -> np.ndarray:
        """Embed ``clips`` in order; see the module docstring for what a clip may be."""
        if isinstance(clips, str | Path) or (isinstance(clips, np.ndarray) and clips.ndim != 2):
            raise TypeError("embed() takes a sequence of clips (or an [N, dim] array); wrap a single clip in a list")
        out = np.empty((len(clips), self.dim), dtype=np.float32)
        pending: list[tuple[int, str | None, np.ndarray]] = []
        for i, clip in enumerate(clips):
            if isinstance(clip, np.ndarray):
                label = f"Clip #{i + 1} (an array)"
                if clip.shape == (self.dim,):
                    out[i] = self._check_embedding(clip, label)
                    continue
                pending.append((i, None, prepare_waveform(as_waveform(clip, label), label)))
            else:
                path = require_file(clip)
                if path.suffix.lower() == ".npy":
                    out[i] = self._check_embedding(load_npy(path), str(path))
                    continue
                digest = content_key(path)
                cached = self._cache_load(digest)
                if cached is not None:
                    out[i] = cached
                    continue
                pending.append((i, digest, prepare_waveform(read_audio(path, sr=SPEECH_RATE), str(path))))
            if len(pending) >= self.batch_size:
                self._flush(pending, out)
        self._flush(pending, out)
        return out

    @abstractmethod
    def _embed_waveforms(self, waves: list[np.ndarray]) -> np.ndarray:
        """``[len(waves), dim]`` float32 for checked, level-normalised 16 kHz mono float32 waveforms."""

    def _flush(self, pending: list[tuple[int, str | None, np.ndarray]], out: np.ndarray) -> None:
        if not pending:
            return
        vectors = np.asarray(self._embed_waveforms([wave for _, _, wave in pending]), dtype=np.float32)
        if vectors.shape != (len(pending), self.dim):
            raise RuntimeError(f"{self.name} returned shape {vectors.shape}, expected ({len(pending)}, {self.dim})")
        for (i, digest, _), vector in zip(pending, vectors):
            out[i] = vector
            if digest is not None:
                self._cache_save(digest, vector)
        pending.clear()

    def _check_embedding(self, vector: np.ndarray, label: str) -> np.ndarray:
        squeezed = np.squeeze(vector)
        if squeezed.shape != (self.dim,):
            raise InputError(
                f"{label} holds an embedding of shape {tuple(vector.shape)}, but the {self.name} encoder expects "
                f"shape ({self.dim},); use embeddings made with {self.name} or give the audio clip instead."
            )
        if np.iscomplexobj(squeezed):
            raise InputError(
                f"{label} holds complex numbers, but an embedding is real-valued; recompute it or give the audio clip "
                "instead."
            )
        if not np.issubdtype(squeezed.dtype, np.number) or not np.all(np.isfinite(squeezed)):
            raise InputError(f"{label} is not a finite numeric embedding; recompute it or give the audio clip instead.")
        return squeezed.astype(np.float32)

    def _cache_path(self, digest: str) -> Path:
        return cache_dir() / "embeddings" / self.name / f"{digest}.npy"

    def _cache_load(self, digest: str) -> np.ndarray | None:
        """The cached embedding, or None when absent or unreadable (then it is simply recomputed)."""
        path = self._cache_path(digest)
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if vector.shape != (self.dim,) or not np.all(np.isfinite(vector)):
            return None
        return vector.astype(np.float32)

    def _cache_save(self, digest: str, vector: np.ndarray) -> None:
        """Write atomically (temp file + rename) so a crash or a parallel run never leaves a half-written entry."""
        path = self._cache_path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, vector.astype(np.float32))
            os.replace(tmp, path)
        except OSError as exc:
            warnings.warn(
                f"Could not write the embedding cache in {path.parent} ({exc}); point CMET_CACHE at a writable folder.",
                CmetWarning,
                stacklevel=4,
            )


def load_npy(path: Path) -> np.ndarray:
    """A precomputed embedding file; InputError when it is not a readable .npy array."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npy embedding ({exc}); recompute it or give the audio.") from exc


def as_waveform(clip: np.ndarray, label: str) -> np.ndarray:
    """An in-memory clip as a float32 1-D waveform (taken to be 16 kHz mono)."""
    if clip.ndim != 1 or not np.issubdtype(clip.dtype, np.number):
        raise InputError(
            f"{label} has shape {clip.shape} and dtype {clip.dtype}; give a 1-D 16 kHz mono waveform or an embedding."
        )
    return clip.astype(np.float32)


def prepare_waveform(wave: np.ndarray, label: str) -> np.ndarray:
    """Check a 16 kHz mono clip and bring its speech to a common level; the input array is left untouched.

    Loudness: the clip is scaled so the RMS of its *active* 20 ms frames (those within 40 dB of the loudest frame)
    is -23 dBFS. Active-speech RMS rather than peak, because one click or plosive sets the peak, and rather than
    whole-clip RMS, because pauses would make a clip with long silences look quiet. This makes reference and target
    recorded at very different levels comparable; it matters most for eGeMAPS, whose loudness functionals are
    absolute, while emotion2vec+ layer-normalises its input anyway. No limiter is applied: encoders take floats,
    and speech's crest factor keeps peaks near full scale at this level.
    """
    if not np.all(np.isfinite(wave)):
        raise InputError(f"{label} contains NaN or infinite samples; re-export it as an ordinary audio file.")
    seconds = wave.size / SPEECH_RATE
    if seconds < MIN_SECONDS:
        raise InputError(f"{label} is only {seconds:.2f} s long; speech clips must last at least {MIN_SECONDS} s.")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms < SILENCE_RMS:
        level = 20 * np.log10(max(rms, 1e-12))
        raise InputError(f"{label} is silent (level {level:.0f} dBFS); use a clip with audible speech.")
    clipped = clipped_fraction(wave)
    if clipped > CLIP_WARN_FRACTION:
        warnings.warn(
            f"{label} is heavily clipped ({100 * clipped:.1f}% of samples at full scale); the emotion read from it "
            "may be distorted, so record at a lower level if you can.",
            CmetWarning,
            stacklevel=3,
        )
    return (wave * (TARGET_RMS / active_rms(wave))).astype(np.float32)


def active_rms(wave: np.ndarray) -> float:
    """RMS over the frames that carry speech: frames within GATE_DB of the loudest 20 ms frame."""
    hop = int(FRAME_SECONDS * SPEECH_RATE)
    n = wave.size // hop
    frames = np.square(wave[: n * hop].reshape(n, hop), dtype=np.float64).mean(axis=1)
    active = frames[frames >= frames.max() * 10 ** (-GATE_DB / 10)]
    return float(np.sqrt(active.mean()))


def clipped_fraction(wave: np.ndarray) -> float:
    """Fraction of samples inside flat full-scale runs of CLIP_RUN or more (a clean full-scale peak is 1-2 samples)."""
    hot = np.abs(wave) >= CLIP_LEVEL
    if not hot.any():
        return 0.0
    edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= CLIP_RUN].sum() / wave.size)
