"""The engine interface: what the pipeline asks of an engine, and the analysis steps every engine shares.

An engine turns speech into a speech vector, a video into a per-video analysis, the two into per-frame offsets,
and renders batches of frames with them. Tracking (cached on disk by content), remembering recent analyses and
keeping faceless frames neutral are the same for every engine and live here; an engine adds its own encoding of
the tracked frames (``encode``), its offsets and its renderer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from cmet import media
from cmet.config import cache_dir, resolve_device, worker_count
from cmet.face.landmarks import FaceTrack, track_cached
from cmet.lru import LRU
from cmet.speech_vector import SpeechVector
from cmet.timing import NullClock

ANALYSIS_CACHE = 4  # videos whose analysis stays in memory per engine (slider previews, repeated renders)

Analysis = TypeVar("Analysis")


class Engine(ABC, Generic[Analysis]):
    """One way of editing: speech vector → per-frame offsets → rendered frames. Load once, serve many edits."""

    name: ClassVar[str]
    parallel_render: bool = False  # batches may render on several threads at once (single-threaded CPU kernels)
    keep_frames: tuple[int, ...] = ()  # source frames ``encode`` looks at again: kept by the tracker (no decode)

    def __init__(self, device: str = "auto"):
        self.device = resolve_device(device)
        self._analyses: LRU[str, Analysis] = LRU(ANALYSIS_CACHE)

    @classmethod
    @abstractmethod
    def missing(cls, options: Any) -> list[str]:
        """Files this engine needs with ``options`` that are not present locally (empty: it can be loaded)."""

    @abstractmethod
    def speech_vector(self, reference: list, target: Any, strength: float) -> SpeechVector:
        """Target minus reference speech (or a preset) in this engine's speech space, at ``strength``."""

    def analyse(self, video: Path, info: media.VideoInfo, clock: Any = None) -> Analysis:
        """The per-video facts every edit reuses: the face track (cached on disk), then the engine's ``encode``.

        Remembered by content for the last few videos, so a slider preview or a second render tracks nothing.
        """
        clock = clock or NullClock()
        video = Path(video)
        key = media.content_key(video)
        known = self._analyses.get(key)
        if known is not None:
            return known
        with clock.stage("track"):
            cache = cache_dir() / "tracks" / f"{key}.npz"
            face = track_cached(video, cache, workers=worker_count(), keep=self.keep_frames)
        return self._analyses.put(key, self.encode(video, info, face, clock))

    @abstractmethod
    def encode(self, video: Path, info: media.VideoInfo, face: FaceTrack, clock: Any) -> Analysis:
        """The engine's own coding of every tracked frame (its neutral expression, whatever it renders from)."""

    @abstractmethod
    def offsets(self, analysis: Analysis, speech: SpeechVector, upto: int | None = None) -> np.ndarray:
        """Per-source-frame expression offsets; with ``upto`` only the frames before it need be right (a preview)."""

    @abstractmethod
    def render(
        self, frames: np.ndarray, index: np.ndarray, analysis: Analysis, offsets: np.ndarray, own: bool = False
    ) -> np.ndarray:
        """``frames`` (source frames ``index``) with each face re-rendered at its expression plus its offset.

        ``own``: the caller hands the frames over, so they may be drawn on rather than copied first (an HD frame
        is 6 MB)."""


def fill_faceless(coeffs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Frames without a face get the clip's median expression: they are not rendered, and stay neutral for the
    connector, whose windows see every frame."""
    coeffs[~valid] = np.median(coeffs[valid], axis=0)
    return coeffs
