"""Paths and runtime settings shared by every engine.

Paths are built relative to this file, never the working directory, so cmet works from anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Runtime data ships inside the package (a wheel and a checkout alike): presets, lite connectors, real-face tables.
DATA_DIR = PACKAGE_DIR / "data"
PRESETS_DIR = DATA_DIR / "presets"
REAL_FACES_DIR = DATA_DIR / "real_faces"
SHIPPED_LITE_DIR = DATA_DIR / "lite"
# The source checkout around the package. Nothing at run time reads from it: development tools default to paths in
# it (training state, example generation), and the official weights to its checkpoints/ when cmet runs from one.
REPO_ROOT = PACKAGE_DIR.parent
MODEL_FPS = 25
SPEECH_RATE = 16000
HUB_REPO = "coldhyuk/C-MET"
# The speech encoders' names, and the folder each one's lite connector and presets live under.
E2V = "emotion2vec_plus_large"
EGEMAPS = "egemaps_v02"
ENCODER_FOLDERS = {E2V: "emotion2vec", EGEMAPS: "egemaps"}
BATCH_PIXELS = 16 * 512 * 512
# The strength knob's one range (API, CLI and app): past 3 faces distort (10 is grotesque, 1e6 smears frames),
# below -2 the "opposite" emotion is no longer a face either.
STRENGTH_RANGE = (-2.0, 3.0)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def checkpoints_dir() -> Path:
    """Where the official weights are looked for before the hub cache (git-ignored, never in the package):
    ``CMET_CHECKPOINTS``; else ``checkpoints/`` of the source checkout cmet runs from; else, for an installed
    cmet, ``checkpoints`` in the cache dir."""
    if "CMET_CHECKPOINTS" in os.environ:
        return Path(os.environ["CMET_CHECKPOINTS"])
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "checkpoints"
    return cache_dir() / "checkpoints"


def lite_dir() -> Path:
    """The lite engine's connectors: shipped in the package (``cmet/data/lite``); ``CMET_LITE`` points at your own."""
    return Path(os.environ.get("CMET_LITE", SHIPPED_LITE_DIR))


def worker_count() -> int:
    """Threads for frame-parallel work (tracking stretches, render batches); ``CMET_WORKERS`` overrides.

    Capped at 4: beyond that the ffmpeg decoder and encoder need the remaining cores.
    """
    return max(1, int(os.environ.get("CMET_WORKERS", min(4, os.cpu_count() or 1))))


def cache_dir() -> Path:
    """Embedding cache; ``CMET_CACHE`` overrides ``~/.cache/cmet``."""
    return Path(os.environ.get("CMET_CACHE", Path.home() / ".cache" / "cmet"))


@dataclass
class RuntimeConfig:
    """How the pipeline runs an edit, whichever engine: the length cap the app enforces, batching, threads, x264."""

    max_seconds: float | None = None
    batch_size: int = 16
    workers: int = field(default_factory=worker_count)  # render batches at once (engines that allow it)
    # x264 speed/size trade-off of the output; at CRF 18 "superfast" measured the same PSNR as "veryfast" with
    # files ~2× larger, for ~2.8 ms less CPU per 512² frame (a tenth of a lite edit on 2 cores).
    x264_preset: str = "superfast"
    x264_crf: int = 18  # quality (0 lossless … 51); 18 is visually lossless; `cmet eval` renders at 2

    def frames_per_batch(self, width: int, height: int) -> int:
        """``batch_size``, fewer for large frames: a batch holds at most 16 frames of 512² (12 MB of RGB), so the
        few batches in flight (decoded, rendering, waiting for the encoder) stay small at 720p or 4K too."""
        return max(1, min(self.batch_size, BATCH_PIXELS // max(width * height, 1)))

    def __post_init__(self) -> None:
        from cmet.errors import InputError

        if self.batch_size < 1:
            raise InputError(f"The batch size must be at least 1 frame, got {self.batch_size}.")
        if self.workers < 1:
            raise InputError(f"The number of workers must be at least 1, got {self.workers}.")
        if not 0 <= self.x264_crf <= 51:
            raise InputError(f"The x264 CRF must be between 0 and 51, got {self.x264_crf}.")
        if self.x264_preset not in X264_PRESETS:
            raise InputError(f"The x264 preset must be one of {', '.join(X264_PRESETS)}, got {self.x264_preset!r}.")


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from cmet.errors import InputError

        raise InputError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu or auto.")
    return device
