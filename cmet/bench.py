"""``python -m cmet bench``: ms/frame per stage, real-time factor, peak memory (RSS and GPU) of one edit.

The input is generated here (the public-domain astronaut face, talking and moving, at any width, height and
length) unless a video is given. A short warm-up edit on a different clip runs first, so model loading
and graph initialisation are excluded from the figures (the table says so), while tracking is not
served from the cache. Any engine on any device: ``cmet bench --engine official --device cuda`` measures a GPU
in one call; on CPU the official engine takes seconds per frame, so give it a short, small clip there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cmet.config import MODEL_FPS, SPEECH_RATE, worker_count
from cmet.face.landmarks import MIN_SEGMENT
from cmet.options import LiteOptions, OfficialOptions, add_engine_arguments, from_arguments

STAGES = ("probe", "speech", "track", "encode", "connector", "decode", "render", "write")


@dataclass
class BenchResult:
    """Figures of one benchmarked edit."""

    engine: str
    device: str
    size: str
    frames: int
    seconds: float
    wall: float
    rtf: float
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    machine: str = ""
    threads: int = 0

    def table(self) -> str:
        rows = [f"| {stage} | {ms:.1f} |" for stage, ms in self.ms_per_frame.items()]
        gpu = f", peak GPU memory {self.peak_gpu_mb:.0f} MB" if self.peak_gpu_mb is not None else ""
        return "\n".join(
            [
                f"engine {self.engine} on {self.device} · {self.size} · {self.frames} frames ({self.seconds:.1f} s) · "
                f"{self.machine} · torch threads {self.threads}",
                "| stage | ms/frame |",
                "|---|---|",
                *rows,
                f"| **total** | **{1000 * self.wall / max(self.frames, 1):.1f}** |",
                f"real-time factor {self.rtf:.2f} (processing time / video duration); "
                f"peak RSS {self.peak_rss_mb:.0f} MB{gpu}; warm-up (model loading, first graph run) excluded.",
            ]
        )


def synthetic_speech(seconds: float, sr: int = SPEECH_RATE, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-rate amplitude-modulated harmonic signal: speech-like loudness for the jaw."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.3 * voice * syllables / 2.6).astype(np.float32)


def make_input(folder: Path, seconds: float, size: tuple[int, int], name: str = "bench") -> Path:
    """A talking, moving astronaut clip of ``size`` (width, height) and ``seconds`` length, with its speech."""
    import soundfile as sf

    from cmet.assets import talking_clip

    audio = folder / f"{name}.wav"
    sf.write(audio, synthetic_speech(seconds), SPEECH_RATE)
    return talking_clip(audio, folder / f"{name}.mp4", size=size)


@contextmanager
def _private_cache(folder: Path) -> Iterator[None]:
    """Tracking and embeddings cached in ``folder`` only while benchmarking, so nothing is served from before."""
    before = os.environ.get("CMET_CACHE")
    os.environ["CMET_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CMET_CACHE", None)
        else:
            os.environ["CMET_CACHE"] = before


def run(
    engine: str = "lite",
    device: str = "auto",
    seconds: float = 10.0,
    size: tuple[int, int] = (512, 512),
    video: Path | None = None,
    warmup: float | None = None,
    lite: LiteOptions | None = None,
    official: OfficialOptions | None = None,
) -> BenchResult:
    """Benchmark one edit; everything cached goes to a throwaway cache directory.

    ``warmup`` is the warm-up clip's length in seconds; by default long enough to be tracked in parallel
    stretches, so every tracking thread's FaceMesh graph is built before the measured edit.
    """
    import torch

    from cmet import media
    from cmet.pipeline import EmotionEditor

    with tempfile.TemporaryDirectory(prefix="cmet-bench-") as tmp, _private_cache(Path(tmp) / "cache"):
        folder = Path(tmp)
        editor = EmotionEditor.load(engine, device, lite=lite, official=official)
        warm_seconds = warmup if warmup is not None else (worker_count() * MIN_SEGMENT + 5) / MODEL_FPS
        warm = make_input(folder, warm_seconds, size, name="warmup")
        editor.edit(warm, None, "preset:happy", 1.0, folder / "warm_out.mp4")
        clip = Path(video) if video else make_input(folder, seconds, size)
        info = media.probe(clip)
        media.clear_probe_cache()  # probing (one fast decode) is part of an edit's time
        on_gpu = editor.device.startswith("cuda")
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = editor.edit(clip, None, "preset:happy", 1.0, folder / "out.mp4")
        wall = time.perf_counter() - start
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_frame = {s: 1000 * result.timings[s] / result.frames for s in STAGES if s in result.timings}
    return BenchResult(
        engine=result.engine,
        device=editor.device,
        size=f"{info.width}x{info.height}@{info.fps:g}fps",
        frames=result.frames,
        seconds=info.duration,
        wall=wall,
        rtf=wall / info.duration,
        ms_per_frame=per_frame,
        peak_rss_mb=rss,
        peak_gpu_mb=peak_gpu,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name()}" if on_gpu else ""),
        threads=torch.get_num_threads(),
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="time an edit per stage (ms/frame), real-time factor and peak memory")
    bench.add_argument("video", nargs="?", type=Path, help="a video to edit (default: a generated talking clip)")
    add_engine_arguments(bench, engine="lite")
    bench.add_argument("--seconds", type=float, default=10.0, help="length of the generated clip")
    bench.add_argument("--width", type=int, default=512, help="width of the generated clip in pixels")
    bench.add_argument("--height", type=int, default=512, help="height of the generated clip in pixels")
    bench.add_argument("--warmup", type=float, help="seconds of the warm-up clip (default: enough for every thread)")
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")
    bench.set_defaults(run=_main)


def _main(args: argparse.Namespace) -> int:
    lite, official = from_arguments(LiteOptions, args), from_arguments(OfficialOptions, args)
    size = (args.width, args.height)
    result = run(args.engine, args.device, args.seconds, size, args.video, args.warmup, lite, official)
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
