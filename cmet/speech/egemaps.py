"""eGeMAPSv02 functionals (88-d) through openSMILE: the always-available, offline speech encoder.

Prosody and voice-quality statistics (pitch, loudness, jitter, shimmer, formants, spectral balance) carry emotion
far less distinctly than emotion2vec+ (32% vs 93% leave-one-speaker-out on the sample data), so cmet uses this only
when emotion2vec+ weights are absent. Raw functionals are returned; the statistics that standardise them belong to
the checkpoint trained on them.
"""

from __future__ import annotations

import numpy as np

from cmet.config import EGEMAPS, SPEECH_RATE
from cmet.speech.base import SpeechEncoder


class EGeMAPS(SpeechEncoder):
    """openSMILE eGeMAPSv02 functionals of each (level-normalised) 16 kHz mono clip."""

    name = EGEMAPS
    dim = 88

    def __init__(self) -> None:
        self._smile = None

    @property
    def smile(self):
        """The openSMILE extractor, built on first use (importing openSMILE costs ~0.5 s)."""
        if self._smile is None:
            import opensmile

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
            )
        return self._smile

    def feature_names(self) -> list[str]:
        """The 88 functional names, in embedding order (e.g. ``F0semitoneFrom27.5Hz_sma3nz_amean``)."""
        return list(self.smile.feature_names)

    def _embed_waveforms(self, waves: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.smile.process_signal(wave, SPEECH_RATE).to_numpy()[0] for wave in waves]).astype(
            np.float32
        )
