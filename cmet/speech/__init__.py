"""Speech encoders behind one interface: ``get_encoder(name).embed(clips) -> [N, dim]``.

emotion2vec+ large is preferred whenever its weights are local (it separates emotions far better); eGeMAPS is the
always-available offline fallback.
"""

from __future__ import annotations

from functools import cache

from cmet.errors import InputError
from cmet.speech.base import SpeechEncoder
from cmet.speech.egemaps import EGeMAPS
from cmet.speech.emotion2vec import Emotion2Vec

ENCODERS: dict[str, type[SpeechEncoder]] = {Emotion2Vec.name: Emotion2Vec, EGeMAPS.name: EGeMAPS}
ALIASES = {"emotion2vec": Emotion2Vec.name, "egemaps": EGeMAPS.name}


def get_encoder(name: str, device: str = "cpu") -> SpeechEncoder:
    """The encoder called ``name`` (or a short alias: ``emotion2vec``, ``egemaps``); models load on first use.

    Instances are shared per (name, device), so a process loads the 300 M-parameter emotion2vec+ model at most once.
    """
    key = ALIASES.get(name, name)
    if key not in ENCODERS:
        raise InputError(f"Unknown speech encoder {name!r}; choose one of {', '.join(ENCODERS)}.")
    return _shared_encoder(key, device)


@cache
def _shared_encoder(name: str, device: str) -> SpeechEncoder:
    return Emotion2Vec(device=device) if name == Emotion2Vec.name else EGeMAPS()


def available_encoders() -> list[str]:
    """Names of the encoders that can embed audio on this machine now, preferred first."""
    return [name for name, cls in ENCODERS.items() if cls.available()]


__all__ = ["EGeMAPS", "Emotion2Vec", "SpeechEncoder", "available_encoders", "get_encoder"]
