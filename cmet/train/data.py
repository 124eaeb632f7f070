"""Speech pools for training and presets: index a folder laid out ``<root>/<emotion>/<ID>_….{wav,npy}``.

A pool is every clip of one (speaker, emotion). Training draws random subsets from pools, so the embeddings
of all clips are computed once up front; the speech encoder caches file embeddings by content hash, so a
second run (or another fold) costs only the hashing. ``.npy`` files are taken as precomputed embeddings of the
chosen encoder (the C-MET release ships emotion2vec+ ones); when a clip exists as both ``.npy`` and audio, the
``.npy`` wins because it needs no model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmet.config import REPO_ROOT
from cmet.errors import InputError

# MEAD's emotions in the release's label order (angry 0 … surprised 7).
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
NEUTRAL = "neutral"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".webm")
EMBEDDING_SUFFIX = ".npy"
EMOTION2VEC = "emotion2vec_plus_large"


@dataclass(frozen=True)
class Clip:
    """One speech file and the labels its location gives it."""

    path: Path
    speaker: str
    emotion: str


def speaker_of(path: Path) -> str:
    """The actor ID is the file name up to the first underscore (``M003_level_3_005.wav`` → ``M003``)."""
    return path.stem.split("_", 1)[0]


def index_clips(root: str | Path, emotions: Iterable[str] | None = None) -> list[Clip]:
    """All clips under ``root/<emotion>/``, sorted, one per stem (``.npy`` preferred over audio).

    ``emotions`` limits the folders read; None reads every sub-folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base} is not a folder; give a data folder laid out <root>/<emotion>/<ID>_….wav|npy.")
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if emotions is not None:
        wanted = set(emotions)
        folders = [p for p in folders if p.name in wanted]
    clips: list[Clip] = []
    for folder in folders:
        by_stem: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            if not path.is_file() or suffix not in (*AUDIO_SUFFIXES, EMBEDDING_SUFFIX):
                continue
            if path.stem not in by_stem or suffix == EMBEDDING_SUFFIX:
                by_stem[path.stem] = path
        clips += [Clip(path, speaker_of(path), folder.name) for _, path in sorted(by_stem.items())]
    if not clips:
        raise InputError(f"{base} holds no speech clips (.wav/.npy files inside <emotion>/ sub-folders).")
    return clips


@dataclass
class SpeechPools:
    """Embeddings ``[n, dim]`` per (speaker, emotion) in one encoder's space."""

    encoder: str
    dim: int
    pools: dict[tuple[str, str], np.ndarray]

    @property
    def speakers(self) -> list[str]:
        return sorted({speaker for speaker, _ in self.pools})

    @property
    def emotions(self) -> list[str]:
        return sorted({emotion for _, emotion in self.pools})

    def restrict(self, speakers: Iterable[str]) -> SpeechPools:
        """The pools of ``speakers`` only (a training fold, or one held-out speaker)."""
        keep = set(speakers)
        return SpeechPools(self.encoder, self.dim, {k: v for k, v in self.pools.items() if k[0] in keep})

    def emotion_pool(self, emotion: str) -> np.ndarray:
        """Every clip of ``emotion``, all speakers stacked (the official sampler pools over speakers)."""
        parts = [v for (_, e), v in sorted(self.pools.items()) if e == emotion]
        if not parts:
            raise InputError(f"No {emotion!r} clips in the {self.encoder} pools; add an {emotion}/ folder.")
        return np.concatenate(parts)

    def all_embeddings(self) -> np.ndarray:
        return np.concatenate([v for _, v in sorted(self.pools.items())])

    def counts(self) -> dict[str, dict[str, int]]:
        """``{speaker: {emotion: n}}`` for checkpoint metadata and logs."""
        out: dict[str, dict[str, int]] = {}
        for (speaker, emotion), vectors in sorted(self.pools.items()):
            out.setdefault(speaker, {})[emotion] = int(len(vectors))
        return out


def load_pools(clips: Sequence[Clip], encoder) -> SpeechPools:
    """Embed every clip once with ``encoder`` (a ``cmet.speech`` encoder) and group them into pools."""
    if not clips:
        raise InputError("No speech clips were given to build pools from.")
    vectors = encoder.embed([clip.path for clip in clips])
    pools: dict[tuple[str, str], list[np.ndarray]] = {}
    for clip, vector in zip(clips, vectors):
        pools.setdefault((clip.speaker, clip.emotion), []).append(vector)
    return SpeechPools(encoder.name, int(encoder.dim), {k: np.stack(v) for k, v in pools.items()})


def default_samples() -> Path:
    """The shared sample data next to the checkout (``../shared/data/cmet-samples``)."""
    return REPO_ROOT.parent / "shared" / "data" / "cmet-samples"


def sample_roots(samples: str | Path, encoder: str) -> tuple[Path, Path]:
    """(MEAD root, TTS root) for ``encoder`` in the cmet-samples layout.

    emotion2vec+ reads the authors' precomputed embeddings (no model needed); any other encoder reads the wavs.
    """
    base = Path(samples)
    if encoder == EMOTION2VEC:
        return base / EMOTION2VEC / "mead", base / EMOTION2VEC / "tts"
    return base / "speech" / "mead", base / "speech" / "tts"
