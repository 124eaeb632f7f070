"""The lite engine: FaceMesh landmarks → action-unit coefficients → small C-MET connector → dense warp.

Offline and CPU-fast. Speech is read in emotion2vec+ space whenever possible (presets and precomputed
``.npy`` embeddings need no model; recordings need its weights), otherwise in eGeMAPS space with a
warning that emotion from new recordings is approximate.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmet import media
from cmet.config import MODEL_FPS, cache_dir, lite_dir, resolve_device
from cmet.connector import Connector, infer_offsets
from cmet.errors import CmetWarning, InputError, MissingWeightsError
from cmet.face.au_rig import default_rig
from cmet.face.landmarks import FaceTrack, track
from cmet.face.warp import Warper, render_expressions
from cmet.presets import get_preset, preset_name
from cmet.semantic import semantic_vector
from cmet.speech import get_encoder
from cmet.speech.emotion2vec import Emotion2Vec

E2V = "emotion2vec_plus_large"
EGEMAPS = "egemaps_v02"
_FOLDERS = {E2V: "emotion2vec", EGEMAPS: "egemaps"}


@dataclass
class SpeechVector:
    """A speech semantic vector (already times strength) and the encoder space it lives in."""

    encoder: str
    vector: np.ndarray


@dataclass
class Analysis:
    """Per-video facts the edit reuses: the face track and each frame's neutral AU coefficients."""

    info: media.VideoInfo
    track: FaceTrack
    coeffs: np.ndarray  # [T_src, K]


def _file_key(path: Path) -> str:
    """Content hash (so a re-uploaded copy of the same video reuses its tracking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _NoClock:
    """Stands in for the pipeline's stopwatch when a caller does not time stages."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield


class LiteEngine:
    """Lite engine; one instance serves many edits and caches per-input work."""

    name = "lite"

    def __init__(self, device: str = "auto"):
        self.device = resolve_device(device)
        self.rig = default_rig()
        self.warper = Warper()
        self._connectors: dict[str, tuple[Connector, dict[str, Any]]] = {}
        self._analyses: OrderedDict[str, Analysis] = OrderedDict()

    def connector(self, encoder: str) -> tuple[Connector, dict[str, Any]]:
        """The trained lite connector for ``encoder``'s speech space (loaded once)."""
        if encoder not in self._connectors:
            folder = lite_dir() / _FOLDERS[encoder]
            if not (folder / "config.json").is_file():
                raise MissingWeightsError(
                    f"lite connector for {encoder}", folder, "python -m cmet train --engine lite", "It ships with cmet."
                )
            connector, meta = Connector.load(folder, device=self.device)
            self._connectors[encoder] = (connector.eval(), meta)
        return self._connectors[encoder]

    def _encoder_for(self, clips: list) -> str:
        if all(Path(c).suffix.lower() == ".npy" for c in clips) or Emotion2Vec.available():
            return E2V
        warnings.warn(
            "emotion2vec+ weights are not installed, so emotion is read from prosody (eGeMAPS) and is approximate "
            "for new recordings; use a preset, .npy embeddings, or `python -m cmet download`.",
            CmetWarning,
            stacklevel=3,
        )
        return EGEMAPS

    def speech_vector(self, reference: list, target: Any, strength: float) -> SpeechVector:
        """Target minus reference in the best available speech space, times ``strength``."""
        if not np.isfinite(strength):
            raise InputError(f"Strength must be a finite number, got {strength}.")
        name = preset_name(target)
        if name is not None:
            preset = get_preset(name, E2V)
            self.connector(E2V)  # missing or damaged weights fail now, before the video is tracked
            return SpeechVector(E2V, float(strength) * preset.vector)
        clips = [Path(c) for c in (target if isinstance(target, list | tuple) else [target])]
        if not reference:
            raise InputError("Target speech needs reference (neutral) speech clips of the same speaker to compare with.")
        encoder = self._encoder_for([*reference, *clips])
        self.connector(encoder)
        embed = get_encoder(encoder, device=self.device).embed
        vector = semantic_vector(embed(list(reference)), embed(clips), strength=strength)
        return SpeechVector(encoder, vector)

    def analyse(self, video: Path, info: media.VideoInfo, clock: Any = None) -> Analysis:
        """Track the face (cached on disk by content) and encode each frame's AU coefficients."""
        clock = clock or _NoClock()
        key = _file_key(video)
        if key in self._analyses:
            self._analyses.move_to_end(key)
            return self._analyses[key]
        cached = cache_dir() / "tracks" / f"{key}.npz"
        with clock.stage("track"):
            try:
                face = FaceTrack.load(cached) if cached.is_file() else None
            except InputError:  # a damaged or outdated cache entry is rebuilt, not reported
                face = None
            if face is None:
                face = track(video, fps=info.fps)
                cached.parent.mkdir(parents=True, exist_ok=True)
                face.save(cached)
        with clock.stage("encode"):
            coeffs = np.empty((len(face), len(self.rig.names)), np.float32)
            coeffs[face.valid] = self.rig.encode(face.canonical()[face.valid])
            coeffs[~face.valid] = np.median(coeffs[face.valid], axis=0)  # faceless frames: unrendered, kept neutral
        analysis = Analysis(info=info, track=face, coeffs=coeffs)
        self._analyses[key] = analysis
        while len(self._analyses) > 4:
            self._analyses.popitem(last=False)
        return analysis

    def offsets(self, analysis: Analysis, speech: SpeechVector, upto: int | None = None) -> np.ndarray:
        """Per-source-frame AU offsets; the connector's response to a zero vector is removed so strength 0 is exact."""
        connector, meta = self.connector(speech.encoder)
        info = analysis.info
        n_model = media.model_frame_count(info.frames, info.fps, MODEL_FPS)
        to_model = media.source_to_model(info.frames, info.fps, n_model)
        last = n_model if upto is None else int(to_model[min(upto, info.frames) - 1]) + 1
        neutral = analysis.coeffs[media.model_to_source(n_model, info.fps, info.frames)[:last]]
        scaled = speech.vector / np.asarray(meta["speech_scale"], dtype=np.float32)
        pair = infer_offsets(connector, np.stack([scaled, np.zeros_like(scaled)]), [neutral, neutral])
        model_offsets = pair[0] - pair[1]
        return model_offsets[np.minimum(to_model, last - 1)].astype(np.float32)

    def render(self, frames: np.ndarray, index: np.ndarray, analysis: Analysis, offsets: np.ndarray) -> np.ndarray:
        """Warp each frame by its offset's canonical displacement, following the head through the track."""
        face = analysis.track
        index = np.minimum(index, len(face) - 1)
        out = frames.copy()
        valid = face.valid[index]
        if not valid.any():
            return out
        rows = index[valid]
        displacement = self.rig.decode(offsets[rows])
        with torch.inference_mode():
            out[valid] = render_expressions(
                frames[valid], face.landmarks[rows, :, :2], face.transforms[rows], displacement, self.warper
            )
        return out
