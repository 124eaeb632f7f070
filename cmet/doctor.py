"""Environment report for ``python -m cmet doctor`` and the app's info accordion.

Tells a user in one screen what runs here: versions, device, the ffmpeg in use, and which engines'
weights are present and where they are looked for.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field

from cmet.config import ENCODER_FOLDERS, checkpoints_dir, lite_dir

_PACKAGES = ("torch", "numpy", "mediapipe", "gradio", "opensmile", "funasr", "imageio-ffmpeg", "huggingface_hub")


@dataclass
class Report:
    """What doctor found; ``lite_ok`` decides the exit code."""

    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    gpu: str = ""
    ffmpeg: str = ""
    weights: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lite_ok: bool = False

    def lines(self) -> list[str]:
        out = [f"python {platform.python_version()} on {platform.platform()}"]
        out += [f"{name:16s} {version}" for name, version in self.versions.items()]
        out.append(f"{'device':16s} {self.device}{' (' + self.gpu + ')' if self.gpu else ''}")
        out.append(f"{'ffmpeg':16s} {self.ffmpeg}")
        out.append(f"{'checkpoints dir':16s} {checkpoints_dir()}")
        out += [f"{name:16s} {state}" for name, state in self.weights.items()]
        out += [f"problem: {p}" for p in self.problems]
        out.append("lite engine: ready" if self.lite_ok else "lite engine: NOT ready (see problems above)")
        return out


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _weights_state() -> dict[str, str]:
    """Which engines' weights exist, using the engines' own resolution rules."""
    from cmet.engines import weight_status

    return weight_status()


def diagnose() -> Report:
    """Collect the report without raising: every failure becomes a line in ``problems``."""
    report = Report(versions={name: _version(name) for name in _PACKAGES})
    try:
        import torch

        if torch.cuda.is_available():
            report.device, report.gpu = "cuda", torch.cuda.get_device_name(0)
    except ImportError as exc:
        report.problems.append(f"torch does not import: {exc}")
    try:
        from cmet.media import ffmpeg_exe

        report.ffmpeg = ffmpeg_exe()
    except (ImportError, RuntimeError, OSError) as exc:
        report.problems.append(f"no usable ffmpeg: {exc}")
    try:
        import mediapipe.python.solutions.face_mesh  # noqa: F401
    except ImportError as exc:
        report.problems.append(f"mediapipe FaceMesh does not import ({exc}); install mediapipe==0.10.21")
    report.weights = _weights_state()
    if not any((lite_dir() / folder).exists() for folder in ENCODER_FOLDERS.values()):
        report.problems.append(f"no lite connector in {lite_dir()}; run `python -m cmet train --engine lite`")
    report.lite_ok = not report.problems
    return report
