"""The speech side of an edit: a target (preset or clips) against reference clips, at a strength.

C-MET's speech tokenizer ends in GELU → LayerNorm, so the connector's output hardly depends on the
*magnitude* of the speech vector (measured: strength 0.5, 1 and 2 give the same offsets). Strength is
therefore applied as its sign on the speech vector (negative pushes away from the emotion: the connector is
trained antisymmetric by its flipped pass) and its magnitude as a gain on the predicted visual offset.
Strength 1 is exactly the paper's behaviour and strength 0 leaves the video unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmet.config import E2V, STRENGTH_RANGE
from cmet.errors import InputError
from cmet.presets import get_preset, preset_name
from cmet.semantic import semantic_vector, within_spread


@dataclass
class SpeechVector:
    """A unit-strength speech semantic vector (sign included), its encoder space, and the visual gain."""

    encoder: str
    vector: np.ndarray
    gain: float = 1.0
    n_reference: int = 0  # clips behind the vector (0: unknown), to tell an emotion from clip-to-clip spread
    n_target: int = 0
    within: np.ndarray | None = None  # per-feature variance of the clips about their pool means (see semantic)


def check_strength(strength: float) -> float:
    """``strength`` as a float inside ``STRENGTH_RANGE``, or an ``InputError`` sentence saying why not."""
    value = float(strength)
    if not np.isfinite(value):
        raise InputError(f"Strength must be a finite number, got {strength}.")
    low, high = STRENGTH_RANGE
    if not low <= value <= high:
        raise InputError(
            f"Strength must lie between {low:g} and {high:g}, got {value:g} (1 is the speech's own emotion, 0 leaves "
            f"the video unchanged, negative pushes away from it; beyond this range faces distort)."
        )
    return value


def resolve_speech(
    reference: list, target: Any, strength: float, choose_encoder: Callable[[list], str], device: str = "cpu"
) -> SpeechVector:
    """Target minus reference (or a preset) in the encoder space ``choose_encoder(clips)`` picks."""
    strength = check_strength(strength)
    sign, gain = float(np.sign(strength)), abs(float(strength))
    name = preset_name(target)
    if name is not None:
        preset = get_preset(name, E2V)
        vector = preset.vector.astype(np.float32)
        # A zero vector (the neutral preset) carries no emotion: no network pass, no change.
        return SpeechVector(E2V, sign * vector, gain if vector.any() else 0.0, preset.n_reference, preset.n_target)
    clips = [Path(c) for c in (target if isinstance(target, list | tuple) else [target])]
    if not reference:
        raise InputError("Target speech needs reference (neutral) speech clips of the same speaker to compare with.")
    from cmet.speech import get_encoder

    encoder = choose_encoder([*reference, *clips])
    embed = get_encoder(encoder, device=device).embed
    ref, tgt = embed(list(reference)), embed(clips)
    vector = semantic_vector(ref, tgt)
    return SpeechVector(encoder, sign * vector, gain, len(reference), len(clips), within_spread(ref, tgt))
