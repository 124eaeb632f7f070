"""The lite engine: FaceMesh landmarks → action-unit coefficients → small C-MET connector → dense warp
→ expression shading.

Offline and CPU-fast. Speech is read in emotion2vec+ space whenever possible (presets and precomputed
``.npy`` embeddings need no model; recordings need its weights), otherwise in eGeMAPS space with a
warning that emotion from new recordings is approximate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmet import media
from cmet.config import E2V, EGEMAPS, ENCODER_FOLDERS, lite_dir
from cmet.connector import Connector
from cmet.engine import Engine, fill_faceless
from cmet.errors import CmetWarning, MissingWeightsError
from cmet.face.au_rig import AU_NAMES, PROTOTYPES, default_rig
from cmet.face.canonical import apply_similarity
from cmet.face.landmarks import FaceTrack
from cmet.face.rigid import SAMPLED, RigidParts, detect_in_video
from cmet.face.shading import Shading
from cmet.face.warp import Warper, render_expressions
from cmet.options import LiteOptions
from cmet.semantic import emotion_weight
from cmet.speech.emotion2vec import Emotion2Vec
from cmet.speech_vector import SpeechVector, resolve_speech
from cmet.timeline import source_offsets


@dataclass
class Analysis:
    """Per-video facts the edit reuses: the face track and each frame's neutral AU coefficients."""

    info: media.VideoInfo
    track: FaceTrack
    coeffs: np.ndarray  # [T_src, K]
    rigid: RigidParts | None = None  # glasses frames the warp keeps still


def heard_units(meta: dict[str, Any]) -> np.ndarray:
    """``[K]`` 1 for the units some emotion the connector hears moves (``audible`` in its meta: mean held-out
    reach ≥ 0.3), 0 for the rest: all 0 when its report says it hears none (its edits would be noise).

    Elsewhere the connector draws noise for an unseen speaker: the jaw, which no emotion moves (the speech does),
    and the one-sided R12 of contempt, which no speech space tells from neutral (R12 −0.2 to −0.4 in every edit
    made the mouth lopsided).
    """
    moved = np.zeros(len(AU_NAMES), bool)
    for emotion in meta.get("audible", meta.get("emotions", list(PROTOTYPES))):
        if emotion in PROTOTYPES:
            moved |= np.asarray(PROTOTYPES[emotion]) != 0
    return moved.astype(np.float32)


class LiteEngine(Engine[Analysis]):
    """Lite engine; one instance serves many edits and caches per-input work."""

    name = "lite"
    keep_frames = SAMPLED  # the glasses check's frames come from the tracking decode

    def __init__(self, device: str = "auto", options: LiteOptions | None = None):
        super().__init__(device)
        self.options = options or LiteOptions()
        self.parallel_render = self.device == "cpu"
        if self.device == "cpu":
            torch.set_num_threads(self.options.torch_threads)
        self.rig = default_rig()
        self.warper = Warper()
        self.shading = None if self.options.no_shading else Shading.load(self.rig)
        self._connectors: dict[str, tuple[Connector, dict[str, Any]]] = {}

    @classmethod
    def missing(cls, options: LiteOptions | None = None) -> list[str]:
        """Connector folders (one per speech space) without their weights."""
        folders = [lite_dir() / folder for folder in ENCODER_FOLDERS.values()]
        return [str(folder) for folder in folders if not (folder / "config.json").is_file()]

    def connector(self, encoder: str) -> tuple[Connector, dict[str, Any]]:
        """The trained lite connector for ``encoder``'s speech space (loaded once)."""
        if encoder not in self._connectors:
            folder = lite_dir() / ENCODER_FOLDERS[encoder]
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
        """Target minus reference in the best available speech space (see ``cmet.speech_vector`` on strength)."""
        speech = resolve_speech(reference, target, strength, self._encoder_for, self.device)
        self.connector(speech.encoder)  # missing or damaged weights fail now, before the video is tracked
        return speech

    def encode(self, video: Path, info: media.VideoInfo, face: FaceTrack, clock: Any) -> Analysis:
        """Glasses to keep still (found along the track) and each frame's AU coefficients."""
        with clock.stage("track"):
            rigid = detect_in_video(video, face.transforms, face.valid, face.kept)
        with clock.stage("encode"):
            coeffs = np.empty((len(face), len(self.rig.names)), np.float32)
            coeffs[face.valid] = self.rig.encode(face.canonical()[face.valid])
        return Analysis(info=info, track=face, coeffs=fill_faceless(coeffs, face.valid), rigid=rigid)

    def offsets(self, analysis: Analysis, speech: SpeechVector, upto: int | None = None) -> np.ndarray:
        """Per-source-frame AU offsets from the lite connector of the speech vector's encoder space."""
        connector, meta = self.connector(speech.encoder)
        scaled = speech.vector / np.asarray(meta["speech_scale"], dtype=np.float32)
        scale = np.asarray(meta["speech_scale"], dtype=np.float64)
        noise = float(meta.get("speech_noise", 0.0))
        if speech.within is not None:  # the given clips' own spread, when it is the larger
            noise = max(noise, float(np.sqrt((speech.within / scale**2).sum())))
        # The SNR thresholds were measured in emotion2vec+ space; eGeMAPS (prosody, already flagged approximate)
        # spreads so much between takes that clearly different voices score below them, so it is not weighed.
        weight = emotion_weight(scaled, noise, speech.n_reference, speech.n_target) if speech.encoder == E2V else 1.0
        if weight < 1.0 and speech.gain > 0 and upto is None:
            warnings.warn(
                "The target speech differs from the reference about as much as clips of one emotion differ among "
                f"themselves, so the edit is {'left out' if weight == 0 else f'weakened to {weight:.0%}'}; use "
                "clearly emotional target clips (and at least 3 of each).",
                CmetWarning,
                stacklevel=3,
            )
        heard = heard_units(meta)
        if not heard.any() and speech.gain > 0 and upto is None:
            warnings.warn(
                "This lite connector hears no emotion reliably (its held-out report found none reaching 0.3 of the "
                "prototypes), so the face is left unedited; train it on more speakers or use the shipped one.",
                CmetWarning,
                stacklevel=3,
            )
        gain = speech.gain * weight * float(meta.get("output_gain", 1.0))
        return source_offsets(connector, scaled, gain, analysis.coeffs, analysis.info, upto) * heard

    def render(
        self, frames: np.ndarray, index: np.ndarray, analysis: Analysis, offsets: np.ndarray, own: bool = False
    ) -> np.ndarray:
        """Warp each frame by its offset's canonical displacement, following the head through the track, then shade
        the skin as real faces of that expression are shaded (``cmet.face.shading``)."""
        face = analysis.track
        index = np.minimum(index, len(face) - 1)
        valid = face.valid[index]
        if not valid.any():
            return frames if own else frames.copy()
        rows = index[valid]
        displacement = self.rig.decode(offsets[rows])
        points, transforms = face.landmarks[rows], face.transforms[rows]
        rigid = analysis.rigid
        with torch.inference_mode():
            if valid.all():  # the usual case: the warp writes into the batch itself, or into its one copy
                out = render_expressions(frames, points, transforms, displacement, self.warper, rigid, inplace=own)
            else:
                out = frames if own else frames.copy()
                out[valid] = render_expressions(
                    frames[valid], points, transforms, displacement, self.warper, rigid, inplace=True
                )
        if self.shading is not None:  # the skin's darkening and lightening, at the moved landmarks
            canonical = apply_similarity(transforms, points[..., :2])
            self.shading.apply([out[i] for i in np.flatnonzero(valid)], canonical, displacement, transforms, rigid)
        return out
