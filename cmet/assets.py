"""Regenerate the example inputs in ``assets/examples/`` (``python -m cmet.assets``).

Everything is made here from openly licensed or synthetic material. The faces: a neutral, glasses-free face
from the Face Research Lab London Set (CC BY 4.0, ``assets/portraits``; the first example, on which every emotion
shows plainly), Grace Hopper's 1984 US Navy portrait (public domain, ``matplotlib``'s sample data; neutral, with
thick glasses that must stay rigid) and ``skimage.data.astronaut()`` (NASA, public domain; a smiling face with
open lips). Their jaw and lips are moved by cmet's own AU rig and warp
following the loudness of an espeak-ng sentence, with a small head motion, and where the lips part further than the
portrait shows, the gap is painted as a shadowed mouth; the speech clips are espeak-ng voices, neutral (reference)
and excited (target: higher pitch, faster, louder).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from cmet import media
from cmet.config import MODEL_FPS, REPO_ROOT, SPEECH_RATE
from cmet.errors import InputError

EXAMPLES = REPO_ROOT / "assets" / "examples"
PORTRAITS = REPO_ROOT / "assets" / "portraits"
SENTENCES = (
    "The weather report says it will rain again tomorrow.",
    "Please put the blue folder on the second shelf.",
    "Our train leaves from platform four at noon.",
)
SPOKEN = "I walked to the market this morning and bought some fresh bread and apples."
VOICES = {"reference": ("-s", "150", "-p", "45", "-a", "90"), "target": ("-s", "205", "-p", "85", "-a", "170")}
CROP = (120, 10, 440, 330)  # x0, y0, x1, y1 of the astronaut's head and shoulders: 320x320
HOPPER_CROP = (100, 40, 420, 360)  # the same for Grace Hopper's portrait (512x600)
FIRST_EXAMPLE = "london_talking.mp4"  # the neutral face the app shows first


def astronaut_still() -> np.ndarray:
    from skimage.data import astronaut

    x0, y0, x1, y1 = CROP
    return np.ascontiguousarray(astronaut()[y0:y1, x0:x1])


def hopper_still() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    x0, y0, x1, y1 = HOPPER_CROP
    return np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[y0:y1, x0:x1])


def london_still() -> np.ndarray:
    """Face 012 of the London Set, head and shoulders, 320x320 (see assets/portraits/README.md)."""
    return cv2.cvtColor(cv2.imread(str(PORTRAITS / "london_012.jpg")), cv2.COLOR_BGR2RGB)


def example_videos(root: Path = EXAMPLES) -> list[Path]:
    """The example clips in ``root``, the neutral face first (the one a first click should show changing plainly)."""
    return sorted(root.glob("*.mp4"), key=lambda p: (p.name != FIRST_EXAMPLE, p.name))


STILLS = {FIRST_EXAMPLE: london_still, "hopper_talking.mp4": hopper_still, "astronaut_talking.mp4": astronaut_still}


def speak(text: str, out: Path, voice: tuple[str, ...]) -> Path:
    """espeak-ng → 16 kHz mono wav through the bundled ffmpeg."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise InputError("espeak-ng is not installed; install it (apt install espeak-ng) to regenerate the examples.")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run([espeak, *voice, "-w", str(raw), text], check=True, capture_output=True)
        cmd = [
            media.ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(raw),
            "-ac",
            "1",
            "-ar",
            str(SPEECH_RATE),
            str(out),
        ]
        subprocess.run(cmd, check=True)
    return out


def loudness_envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """Per-video-frame RMS, smoothed and scaled to [0, 1]: how far the jaw opens."""
    hop = SPEECH_RATE // MODEL_FPS
    padded = np.pad(audio, (0, max(0, frames * hop - audio.size)))[: frames * hop]
    rms = np.sqrt((padded.reshape(frames, hop) ** 2).mean(axis=1))
    rms = np.convolve(rms, np.ones(3) / 3, mode="same")
    return np.clip(rms / (np.percentile(rms, 95) + 1e-9), 0.0, 1.0)


def framed_astronaut(width: int, height: int) -> np.ndarray:
    """The whole astronaut portrait scaled to ``height`` and centred in a ``width`` × ``height`` frame (for
    benchmarks at any size); wider frames continue its edge columns, taller ones its edge rows."""
    from skimage.data import astronaut

    side = min(width, height)
    portrait = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    left, top = (width - side) // 2, (height - side) // 2
    border = (top, height - side - top, left, width - side - left)
    return cv2.copyMakeBorder(portrait, *border, borderType=cv2.BORDER_REPLICATE)


MOUTH_COLOUR = (52, 22, 24)  # RGB of a shadowed mouth interior


def paint_mouth(image: np.ndarray, still_points: np.ndarray, moved_points: np.ndarray) -> None:
    """Darken, in place, the part of the moved lips' inner gap that the still did not show.

    A warp only stretches pixels: parting closed lips stretches lip skin across the gap, so a closed-mouthed
    portrait "talked" without ever showing a mouth (FaceMesh read its opening as zero). What a still already
    shows between its lips (the astronaut's teeth) is left to the warp.
    """
    from cmet.face import regions as R

    def gap(points: np.ndarray) -> np.ndarray:
        mask = np.zeros(image.shape[:2], np.uint8)
        outline = np.concatenate([points[list(R.LIPS_INNER_UPPER)], points[list(reversed(R.LIPS_INNER_LOWER))]])
        cv2.fillPoly(mask, [np.round(outline * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
        return mask

    new = cv2.subtract(gap(moved_points), gap(still_points))
    if not new.any():
        return
    alpha = cv2.GaussianBlur(new, (0, 0), 0.8).astype(np.float32)[..., None] / 255.0
    image[:] = np.round(image * (1.0 - alpha) + np.array(MOUTH_COLOUR, np.float32) * alpha).astype(np.uint8)


def talking_clip(
    audio_path: Path, out: Path, size: int | tuple[int, int] | None = None, still: np.ndarray | None = None
) -> Path:
    """Animate a portrait's jaw/lips by the speech loudness, add head motion, mux the speech.

    ``still`` is the portrait (default: the astronaut's head and shoulders); ``size`` (a side, or width and
    height) gives a clip of the whole astronaut portrait at that size (for benchmarks).
    """
    from cmet.face.au_rig import default_rig
    from cmet.face.landmarks import track
    from cmet.face.warp import Warper, image_displacement, render_expressions

    still = astronaut_still() if still is None else still
    if size is not None:
        still = framed_astronaut(*((size, size) if isinstance(size, int) else size))
    audio = media.read_audio(audio_path)
    frames = int(np.ceil(audio.size / SPEECH_RATE * MODEL_FPS))
    face = track([still])
    rig = default_rig()
    coeffs = np.zeros((frames, len(rig.names)), np.float32)
    coeffs[:, rig.names.index("AU26")] = 0.55 * loudness_envelope(audio, frames)
    displacement = rig.decode(coeffs)
    still_points = face.landmarks[0, :, :2]
    moved = still_points + image_displacement(face.transforms[0], displacement)  # where the warp puts them
    warper = Warper()
    t = np.arange(frames) / MODEL_FPS
    with media.VideoWriter(out, MODEL_FPS, audio_source=audio_path) as writer:
        for start in range(0, frames, 16):
            rows = np.arange(start, min(frames, start + 16))
            lm = np.repeat(face.landmarks[:1, :, :2], len(rows), axis=0)
            tf = np.repeat(face.transforms[:1], len(rows), axis=0)
            batch = render_expressions(np.repeat(still[None], len(rows), axis=0), lm, tf, displacement[rows], warper)
            for k, image in zip(rows, batch):
                paint_mouth(image, still_points, moved[k])
                angle = 2.0 * np.sin(2 * np.pi * 0.4 * t[k])
                shift = (3.0 * np.sin(2 * np.pi * 0.25 * t[k]), 2.0 * np.sin(2 * np.pi * 0.33 * t[k]))
                h, w = image.shape[:2]
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                m[:, 2] += shift
                writer.write(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def build(root: Path = EXAMPLES) -> list[Path]:
    """Write every example file under ``root``; returns the paths."""
    written = []
    for kind, voice in VOICES.items():
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        name = "neutral" if kind == "reference" else "excited"
        for i, text in enumerate(SENTENCES, start=1):
            written.append(speak(text, folder / f"{name}_{i}.wav", voice))
    with tempfile.TemporaryDirectory() as tmp:
        spoken = speak(SPOKEN, Path(tmp) / "spoken.wav", VOICES["reference"])
        for name, portrait in STILLS.items():
            written.append(talking_clip(spoken, root / name, still=portrait()))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m cmet.assets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES)
    args = parser.parse_args()
    for path in build(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
