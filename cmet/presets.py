"""Named speech semantic vectors shipped with cmet (``target="preset:happy"``).

Presets live in ``cmet/data/presets/<emotion2vec|egemaps>/<name>.npz`` (built by ``python -m cmet presets`` from
the C-MET release's sample pools; only the derived vectors are shipped). They let the offline default
show basic and extended emotions without any speech model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cmet.config import ENCODER_FOLDERS, PRESETS_DIR
from cmet.errors import InputError
from cmet.semantic import Preset, load_presets

PRESET_ROOT = PRESETS_DIR
BASIC_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
PREFIX = "preset:"


@lru_cache(maxsize=8)
def presets_for(encoder: str) -> dict[str, Preset]:
    """All presets in one encoder's space (empty when none are shipped for it)."""
    return load_presets(PRESET_ROOT / ENCODER_FOLDERS[encoder])


def list_presets() -> dict[str, list[str]]:
    """Preset names over all encoders, split into the 8 MEAD emotions and extended ones."""
    names: set[str] = set()
    for encoder in ENCODER_FOLDERS:
        names |= set(presets_for(encoder))
    basic = [n for n in BASIC_EMOTIONS if n in names]
    extended = sorted(names - set(BASIC_EMOTIONS))
    return {"basic": basic, "extended": extended}


def is_basic(name: str) -> bool:
    return name.lower() in BASIC_EMOTIONS


def preset_name(target: object) -> str | None:
    """``"preset:happy"`` → ``"happy"``; anything else → None."""
    if isinstance(target, str) and target.lower().startswith(PREFIX):
        return target[len(PREFIX) :].strip().lower()
    return None


def get_preset(name: str, encoder: str) -> Preset:
    """The preset ``name`` in ``encoder``'s space, or an InputError listing what exists."""
    found = presets_for(encoder)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise InputError(f"There is no preset named {name!r} for {encoder} (available: {known}).")
    return found[name]


def preset_path(name: str, encoder: str) -> Path:
    return PRESET_ROOT / ENCODER_FOLDERS[encoder] / f"{name}.npz"
