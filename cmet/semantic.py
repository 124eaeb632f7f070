"""Speech semantic vectors (target pool minus reference pool) and saved emotion presets.

``official`` is the release's raw mean difference; ``emoknob`` is the EmoKnob recipe (normalise each
difference, average, normalise), which makes the strength knob comparable across emotions. Both are
multiplied by ``strength`` (the UI slider; 1 = paper behaviour, negative pushes away from the emotion).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmet.errors import CmetWarning, InputError

METHODS = ("official", "emoknob")
RECOMMENDED_CLIPS = 3
_ZERO_TOL = 1e-7


def _pool(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.size:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"The {what} pool is empty or not a list of embeddings (shape {arr.shape}); add clips.")
    if not np.isfinite(arr).all():
        raise InputError(f"The {what} pool contains NaN or infinite values; re-encode those clips.")
    if arr.shape[0] < RECOMMENDED_CLIPS:
        warnings.warn(
            f"Only {arr.shape[0]} {what} clip(s) given; at least {RECOMMENDED_CLIPS} are recommended "
            "for a stable emotion direction.",
            CmetWarning,
            stacklevel=3,
        )
    return arr


# Signal-to-noise of a speech vector: its length over the length expected from two sets of clips of one emotion
# (the same speaker's neutral clips, say), the clip-to-clip spread being the larger of the given clips' own and
# that of the training pools. Measured on the sample pools (emotion2vec+, 3–10 clips a side, all three speakers):
# neutral against neutral has a 99th percentile of 2.0 and a maximum of 2.25; emotion against neutral a 10th
# percentile of 2.3–3.0 (contempt, 0.4–0.6, cannot be told from neutral by this encoder). Below SNR_NONE the
# pools show no emotion and nothing is edited; from SNR_FULL on the edit has its full strength.
SNR_NONE = 2.0
SNR_FULL = 2.6


def within_spread(*pools: np.ndarray) -> np.ndarray | None:
    """Per-feature variance of single clips about their own pool's mean, pooled over ``pools`` ``[n_i, D]`` (None
    with no more clips than pools: nothing to measure it from). The engine pools the reference and target clips;
    training pools every (speaker, emotion) pool."""
    arrays = [np.asarray(pool, dtype=np.float64) for pool in pools]
    dof = sum(len(x) for x in arrays) - len(arrays)
    if dof <= 0:
        return None
    return sum(((x - x.mean(0)) ** 2).sum(0) for x in arrays) / dof


def emotion_weight(vector: np.ndarray, noise: float, n_reference: int, n_target: int) -> float:
    """0…1: how surely ``vector`` (mean target − mean reference, in the units ``noise`` is given in) is an emotion
    rather than the spread between clips. ``noise`` is the clip-to-clip spread of one emotion's pool (the length
    of a difference of two single clips' means over √2); without clip counts the vector is trusted."""
    if n_reference <= 0 or n_target <= 0 or noise <= 0:
        return 1.0
    snr = float(np.linalg.norm(vector)) / (noise * np.sqrt(1.0 / n_reference + 1.0 / n_target))
    x = float(np.clip((snr - SNR_NONE) / (SNR_FULL - SNR_NONE), 0.0, 1.0))
    return x * x * (3.0 - 2.0 * x)


def _unit_rows(diffs: np.ndarray, scale: float) -> np.ndarray:
    norms = np.linalg.norm(diffs, axis=1)
    keep = norms > _ZERO_TOL * scale
    return diffs[keep] / norms[keep, None]


def semantic_vector(
    reference: np.ndarray,
    target: np.ndarray,
    method: str = "official",
    strength: float = 1.0,
    paired: bool = False,
) -> np.ndarray:
    """Direction from ``reference[N, D]`` (neutral) to ``target[M, D]`` (emotion) embeddings, times ``strength``.

    ``paired`` (emoknob only) uses target_i − reference_i of same-sentence pairs instead of
    target_i − mean(reference). Returns float32 ``[D]``.
    """
    if method not in METHODS:
        raise InputError(f"Unknown semantic-vector method {method!r}; use one of {', '.join(METHODS)}.")
    if not np.isfinite(strength):
        raise InputError(f"Strength must be a finite number, got {strength}.")
    ref = _pool(reference, "reference")
    tgt = _pool(target, "target")
    if ref.shape[1] != tgt.shape[1]:
        raise InputError(
            f"Reference embeddings are {ref.shape[1]}-d but target embeddings are {tgt.shape[1]}-d; "
            "encode both pools with the same speech encoder."
        )
    if paired and ref.shape[0] != tgt.shape[0]:
        raise InputError(f"Paired mode needs as many reference as target clips ({ref.shape[0]} vs {tgt.shape[0]}).")
    scale = max(float(np.abs(ref).max()), float(np.abs(tgt).max()), 1e-30)
    mean_diff = tgt.mean(axis=0) - ref.mean(axis=0)
    if np.linalg.norm(mean_diff) <= _ZERO_TOL * scale and (method == "official" or not paired):
        raise InputError("Reference and target clips give the same embedding; use clips that differ in emotion.")
    if method == "official":
        direction = mean_diff
    else:
        diffs = tgt - ref if paired else tgt - ref.mean(axis=0)
        units = _unit_rows(diffs, scale)
        mean_unit = units.mean(axis=0) if len(units) else np.zeros(ref.shape[1])
        norm = np.linalg.norm(mean_unit)
        if norm <= _ZERO_TOL:
            raise InputError("The reference/target differences cancel out; use clips that differ in emotion.")
        direction = mean_unit / norm
    return (float(strength) * direction).astype(np.float32)


@dataclass
class Preset:
    """A named, reusable speech semantic vector (strength 1) with where it came from."""

    name: str
    vector: np.ndarray
    encoder: str
    dim: int = 0
    n_reference: int = 0
    n_target: int = 0
    source: str = ""
    method: str = "official"

    def __post_init__(self) -> None:
        self.vector = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if not self.name or not self.vector.size or not np.isfinite(self.vector).all():
            raise InputError(f"Preset {self.name!r} needs a name and a finite, non-empty vector.")
        if self.dim and self.dim != self.vector.size:
            raise InputError(f"Preset {self.name!r} says dim={self.dim} but its vector has {self.vector.size} values.")
        self.dim = int(self.vector.size)

    @classmethod
    def from_pools(
        cls,
        name: str,
        reference: np.ndarray,
        target: np.ndarray,
        encoder: str,
        source: str = "",
        method: str = "official",
    ) -> Preset:
        """Build a preset from embedding pools (strength 1)."""
        vector = semantic_vector(reference, target, method=method)
        n_ref = int(np.atleast_2d(reference).shape[0])
        n_tgt = int(np.atleast_2d(target).shape[0])
        return cls(name, vector, encoder, n_reference=n_ref, n_target=n_tgt, source=source, method=method)

    def save(self, path: str | Path) -> Path:
        """Write a small ``.npz`` (the vector plus JSON metadata; no pickles)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "encoder": self.encoder,
            "dim": self.dim,
            "n_reference": self.n_reference,
            "n_target": self.n_target,
            "source": self.source,
            "method": self.method,
        }
        with out.open("wb") as fh:
            np.savez(fh, vector=self.vector, meta=np.array(json.dumps(meta)))
        return out

    @classmethod
    def load(cls, path: str | Path) -> Preset:
        """Read a preset written by :meth:`save`."""
        file = Path(path)
        if not file.is_file():
            raise InputError(f"Preset file {file} does not exist; check the name or rebuild the preset.")
        try:
            with np.load(file, allow_pickle=False) as data:
                vector = data["vector"]
                meta = json.loads(str(data["meta"]))
            return cls(vector=vector, **meta)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            raise InputError(f"{file} is not a cmet preset ({err}); rebuild it.") from err


def load_presets(directory: str | Path) -> dict[str, Preset]:
    """All ``*.npz`` presets in ``directory`` by name; an absent directory simply has none."""
    root = Path(directory)
    if not root.exists():
        return {}
    if not root.is_dir():
        raise InputError(f"{root} should be a folder of presets (*.npz), not a file.")
    presets: dict[str, Preset] = {}
    for file in sorted(root.glob("*.npz")):
        preset = Preset.load(file)
        if preset.name in presets:
            raise InputError(f"Two presets in {root} are named {preset.name!r}; rename one of the files' presets.")
        presets[preset.name] = preset
    return presets
