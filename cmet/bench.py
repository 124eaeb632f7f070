"""``python -m cmet bench``: ms/frame per stage, real-time factor and peak memory of one edit.

The input is generated here (the public-domain astronaut face, talking and moving, at any size and
length) unless a video is given. A short warm-up edit on a different clip runs first, so model loading
and graph initialisation are excluded from the figures (the table says so), while tracking is not
served from the cache.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cmet.config import MODEL_FPS, SPEECH_RATE, worker_count
from cmet.face.landmarks import MIN_SEGMENT

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


def make_input(folder: Path, seconds: float, size: int, name: str = "bench") -> Path:
    """A talking, moving astronaut clip of ``size``² pixels and ``seconds`` length, with its speech."""
    import soundfile as sf

    from cmet.assets import talking_clip

    audio = folder / f"{name}.wav"
    sf.write(audio, synthetic_speech(seconds), SPEECH_RATE)
    return talking_clip(audio, folder / f"{name}.mp4", size=size)


def run(
    engine: str = "lite", device: str = "auto", seconds: float = 10.0, size: int = 512, video: Path | None = None
) -> BenchResult:
    """Benchmark one edit; everything cached goes to a throwaway cache directory."""
    import torch

    from cmet import media
    from cmet.pipeline import EmotionEditor

    with tempfile.TemporaryDirectory(prefix="cmet-bench-") as tmp:
        folder = Path(tmp)
        os.environ["CMET_CACHE"] = str(folder / "cache")
        editor = EmotionEditor.load(engine=engine, device=device)
        # long enough to be tracked in parallel stretches, so every worker's FaceMesh graph is built here
        warm = make_input(folder, (worker_count() * MIN_SEGMENT + 5) / MODEL_FPS, size, name="warmup")
        editor.edit(warm, None, "preset:happy", 1.0, folder / "warm_out.mp4")
        clip = Path(video) if video else make_input(folder, seconds, size)
        info = media.probe(clip)
        media.clear_probe_cache()  # probing (one fast decode) is part of an edit's time
        if editor.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = editor.edit(clip, None, "preset:happy", 1.0, folder / "out.mp4")
        wall = time.perf_counter() - start
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if editor.device == "cuda" else None
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
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
        threads=torch.get_num_threads(),
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="time an edit per stage (ms/frame), real-time factor and peak memory")
    bench.add_argument("video", nargs="?", type=Path, help="a video to edit (default: a generated talking clip)")
    bench.add_argument("--engine", default="lite", choices=["auto", "lite", "official"])
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--seconds", type=float, default=10.0, help="length of the generated clip")
    bench.add_argument("--size", type=int, default=512, help="side of the generated square clip in pixels")
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")
    bench.set_defaults(run=_main)


def _main(args: argparse.Namespace) -> int:
    result = run(args.engine, args.device, args.seconds, args.size, args.video)
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
