"""Build the shipped emotion presets: speech semantic vectors of each emotion pool vs the MEAD neutral pool.

Only these derived vectors are committed (``cmet/data/presets/<encoder>/<name>.npz``), never the clips or their
per-clip embeddings. The MEAD emotions use every clip of the three sample speakers; the extended emotions
(synthesised speech) are measured against the same MEAD neutral pool, as the official inference does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmet.config import ENCODER_FOLDERS, PRESETS_DIR
from cmet.semantic import Preset
from cmet.speech import get_encoder
from cmet.train.data import EMOTION2VEC, MEAD_EMOTIONS, NEUTRAL, index_clips, load_pools, sample_roots

EXTENDED_EMOTIONS = ("sarcastic", "charismatic")
RELEASE = "C-MET release (github.com/ChanHyeok-Choi/C-MET, Apache-2.0), folder audios/"


def presets_dir() -> Path:
    """Where the committed presets live; one sub-folder per speech encoder."""
    return PRESETS_DIR


def _sources(encoder: str) -> tuple[str, str]:
    """Provenance sentences (MEAD, TTS) for the preset metadata."""
    features = (
        "the authors' precomputed emotion2vec+ large utterance embeddings"
        if encoder == EMOTION2VEC
        else f"{encoder} functionals (computed by cmet)"
    )
    mead = f"{RELEASE}MEAD: {features} of MEAD front-view level-3 clips (actors M003, M030, W009; MEAD: research use)"
    tts = f"{RELEASE}gemini: {features} of expressive TTS clips, against the MEAD neutral pool ({mead})"
    return mead, tts


def build_presets(samples: str | Path, encoder_name: str) -> list[Preset]:
    """The 8 MEAD emotions (neutral = zero vector) and the extended ones, in ``encoder_name``'s space."""
    encoder = get_encoder(encoder_name)
    mead_root, tts_root = sample_roots(samples, encoder.name)
    mead_source, tts_source = _sources(encoder.name)
    mead = load_pools(index_clips(mead_root, MEAD_EMOTIONS), encoder)
    tts = load_pools(index_clips(tts_root, EXTENDED_EMOTIONS), encoder)
    neutral = mead.emotion_pool(NEUTRAL)
    presets = [Preset(NEUTRAL, np.zeros(encoder.dim), encoder.name, 0, len(neutral), len(neutral), mead_source)]
    for emotion in MEAD_EMOTIONS:
        if emotion != NEUTRAL:
            presets.append(Preset.from_pools(emotion, neutral, mead.emotion_pool(emotion), encoder.name, mead_source))
    for emotion in EXTENDED_EMOTIONS:
        presets.append(Preset.from_pools(emotion, neutral, tts.emotion_pool(emotion), encoder.name, tts_source))
    return presets


def write_presets(presets: list[Preset], out: str | Path) -> list[Path]:
    """Save each preset as ``out/<encoder folder>/<name>.npz``."""
    return [preset.save(Path(out) / ENCODER_FOLDERS[preset.encoder] / f"{preset.name}.npz") for preset in presets]
