"""``EmotionEditor``: the public API (edit, preview, compare) over either engine.

The pipeline owns what both engines share — input checks, timings, progress, streaming frames
through the writer, the comparison grid — and asks the engine only for the four things that differ:
a speech vector, a per-video analysis, per-frame offsets and a batch render.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmet import media
from cmet.config import RuntimeConfig
from cmet.containers import container_for
from cmet.engine import Engine
from cmet.engines import load_engine
from cmet.errors import InputError
from cmet.grid import GridLayout, check_emotions
from cmet.lru import LRU
from cmet.options import LiteOptions, OfficialOptions
from cmet.presets import is_basic, preset_name
from cmet.speech_vector import check_strength
from cmet.streaming import BackgroundSink, ordered_map, prefetch
from cmet.timing import Stopwatch

Progress = Callable[[float, str], None]
Target = Sequence[str | Path] | str


@dataclass
class EditResult:
    """What an edit produced: the file, the engine used, the timeline and seconds per stage."""

    path: Path
    engine: str
    fps: float
    frames: int
    timings: dict[str, float] = field(default_factory=dict)

    def timing_line(self) -> str:
        total = sum(self.timings.values())
        parts = " · ".join(f"{stage} {sec:.2f}s" for stage, sec in self.timings.items())
        return f"{parts} · total {total:.2f}s"


def _paths(clips: Target | None) -> list:
    if clips is None:
        return []
    if isinstance(clips, str | Path):
        return [clips]
    return list(clips)


class EmotionEditor:
    """Edit the emotion of a talking-face video from speech. Load once, call many times."""

    def __init__(self, engine: Engine, reason: str = "", runtime: RuntimeConfig | None = None):
        self.engine = engine
        self.engine_reason = reason
        self.runtime = runtime or RuntimeConfig()

    @classmethod
    def load(
        cls,
        engine: str = "auto",
        device: str = "auto",
        runtime: RuntimeConfig | None = None,
        lite: LiteOptions | None = None,
        official: OfficialOptions | None = None,
    ) -> EmotionEditor:
        """Pick and load an engine (``auto``: official when its weights for ``official``'s options are present, else
        lite); ``lite`` / ``official`` are the options of whichever engine is loaded."""
        chosen, reason = load_engine(engine, device, lite, official)
        return cls(chosen, reason, runtime)

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def device(self) -> str:
        return self.engine.device

    def check_video(self, video: str | Path) -> media.VideoInfo:
        """Probe ``video`` and hold it to the length limit; cheap enough to call on upload, before any work."""
        info = media.probe(video)
        limit = self.runtime.max_seconds
        if limit and info.duration > limit:
            raise InputError(
                f"{Path(video).name} is {info.duration:.0f} s long, over this app's limit of {limit:.0f} s; "
                "trim it or raise the limit (the app's --max-seconds)."
            )
        return info

    def _check_inputs(self, video: str | Path, clips: list, out: str | Path | None) -> media.VideoInfo:
        info = self.check_video(video)
        if out is not None:
            target = Path(out).resolve()
            for path in [video, *clips]:
                if isinstance(path, str | Path) and Path(path).resolve() == target:
                    raise InputError(f"The output path {out} is one of the inputs; choose another file name.")
            media.check_output(Path(out), [])  # a bad output folder or kind fails now, not after minutes of tracking
            container_for(out)
        return info

    def edit(
        self,
        video: str | Path,
        reference: Target | None = None,
        target: Target = "preset:happy",
        strength: float = 1.0,
        out: str | Path | None = None,
        progress: Progress | None = None,
    ) -> EditResult:
        """Re-render ``video`` with the emotion of ``target`` speech (relative to ``reference``)."""
        return self.compare(video, reference, {"edit": target}, strength, out, progress, grid=False)

    def preview(
        self,
        video: str | Path,
        reference: Target | None = None,
        target: Target = "preset:happy",
        strength: float = 1.0,
        frame: int = 0,
    ) -> np.ndarray:
        """One edited frame (RGB uint8), fast: tracking and embeddings are cached per input."""
        info = self._check_inputs(video, _paths(reference), None)
        index = int(np.clip(frame, 0, info.frames - 1))
        speech = self.engine.speech_vector(_paths(reference), target, strength)
        analysis = self.engine.analyse(Path(video), info)
        offsets = self.engine.offsets(analysis, speech, upto=index + 1)
        image = _cached_frame(media.content_key(video), index, Path(video))
        return self.engine.render(image[None], np.array([index]), analysis, offsets)[0]

    def compare(
        self,
        video: str | Path,
        reference: Target | None,
        targets: dict[str, Target],
        strength: float | dict[str, float] = 1.0,
        out: str | Path | None = None,
        progress: Progress | None = None,
        grid: bool = True,
    ) -> EditResult:
        """Render several emotions of one video; with ``grid`` a labelled side-by-side video."""
        if not targets:
            raise InputError("Give at least one emotion (a preset or target speech clips) to render.")
        check_emotions(targets)
        for given in (_paths(t) for t in targets.values() if not isinstance(t, str)):
            if not given or any(preset_name(c) for c in given):
                raise InputError('Give the target as speech clips or as one "preset:NAME", not an empty list or a mix.')
        refs = _paths(reference)
        clips = refs + [c for t in targets.values() if not isinstance(t, str) for c in _paths(t)]
        out = Path(out) if out is not None else Path(video).with_name(f"{Path(video).stem}_cmet.mp4")
        clock = Stopwatch()
        report = progress or (lambda fraction, message: None)
        with clock.stage("probe"):
            info = self._check_inputs(video, clips, out)
        with clock.stage("speech"):
            strengths = {n: check_strength(strength[n] if isinstance(strength, dict) else strength) for n in targets}
            speech = {n: self.engine.speech_vector(refs, t, strengths[n]) for n, t in targets.items()}
        report(0.02, "tracking the face")
        analysis = self.engine.analyse(Path(video), info, clock=clock)
        with clock.stage("connector"):
            offsets = {n: self.engine.offsets(analysis, s) for n, s in speech.items()}
        layout = (
            GridLayout.build(["original", *targets], basic=[is_basic(n) for n in ["neutral", *targets]])
            if grid
            else None
        )

        def decoded():
            size = self.runtime.frames_per_batch(info.width, info.height)
            frames = prefetch((k * size, batch) for k, batch in enumerate(media.iter_batches(video, size)))
            while True:
                with clock.stage("decode"):
                    item = next(frames, None)
                if item is None:
                    return
                yield item

        def render(item: tuple[int, np.ndarray]) -> np.ndarray:
            start, batch = item
            index = np.arange(start, start + len(batch))
            own = layout is None  # a single edit: the decoded batch is drawn on, not copied
            rendered = [self.engine.render(batch, index, analysis, offsets[n], own) for n in targets]
            return layout.compose([batch, *rendered]) if layout else rendered[0]

        workers = self.runtime.workers if self.engine.parallel_render else 1
        started = time.perf_counter()
        done = 0
        with media.VideoWriter(
            out, info.fps, audio_source=video, crf=self.runtime.x264_crf, preset=self.runtime.x264_preset, like=info
        ) as writer:
            sink = BackgroundSink(lambda frames: [writer.write(image) for image in frames])
            results = ordered_map(render, decoded(), workers)
            while True:
                with clock.stage("render"):
                    frames = next(results, None)
                if frames is None:
                    break
                with clock.stage("write"):
                    sink.put(frames)
                done += len(frames)
                elapsed = time.perf_counter() - started
                eta = elapsed / done * max(info.frames - done, 0)
                report(0.1 + 0.9 * min(done / max(info.frames, 1), 1.0), f"frame {done}/{info.frames}, ETA {eta:.0f} s")
            with clock.stage("write"):
                sink.close()
                path = writer.close()
        return EditResult(path=path, engine=self.engine.name, fps=info.fps, frames=writer.frames, timings=clock.timings)


_FRAMES: LRU[tuple[str, int], np.ndarray] = LRU(32)


def _cached_frame(key: str, index: int, path: Path) -> np.ndarray:
    """Seeking costs up to a keyframe interval of decoding; slider moves on one frame (of this content, wherever
    it was uploaded to) should not pay it again."""
    image = _FRAMES.get((key, index))
    return image if image is not None else _FRAMES.put((key, index), media.read_frame(path, index))
