"""The bad-input catalogue: every way a person can hand cmet a wrong file, path or setting, built small on disk.

Each :class:`Case` builds its inputs in its own :class:`Workspace` (``inputs/``, ``out/``, ``tmp/``, ``cache/``)
and says what must happen: a failure (``InputError``/``MissingWeightsError`` from the API, ``error: <one
sentence>`` and exit code 2 from the CLI, the sentence matching ``match``) or, for inputs that are merely unusual
(rotation metadata, non-ASCII paths, one frame), a normal edit. ``tests/test_bad_inputs.py`` runs every case
through both the API and the CLI and checks that nothing in the workspace changed but the expected output.

Inputs are tiny (a 160² 0.6 s cut of the committed example, 1 s speech) so a case costs milliseconds when it fails
before tracking and about a second when it needs the face. ``python -m tests.bad_inputs SPEC RESULTS`` is the CLI
driver: one interpreter runs many ``python -m cmet`` command lines (torch and MediaPipe load once, not per case),
each with its own environment, recording exit code and output as ``python -m cmet`` would print them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from cmet.errors import CmetError, InputError, MissingWeightsError
from tests import media_factory as mf

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "astronaut_talking.mp4"
RATE = 16000


# --------------------------------------------------------------------------- shared material


def speech(seconds: float, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """Speech-like audio (voiced harmonics, syllable-rate loudness); seeds give clips that embed differently."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 + 40 * seed + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = np.clip(np.sin(2 * np.pi * (3.0 + seed) * t + rng.uniform(0, 6)), 0, None) ** 2
    return (gain * 0.3 * voice * syllables / 2.6).astype(np.float32)


def _ffmpeg(*args: str) -> None:
    subprocess.run([mf.FFMPEG, "-hide_banner", "-v", "error", "-y", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Base:
    """Material every case copies from: a small talking face (with its speech) and a faceless clip."""

    face: Path  # 160x160, 0.6 s (15 frames at 25 fps), AAC audio, moov at the end
    noface: Path  # 64x48 index-pattern frames, 0.4 s, with a tone


def build_base(folder: Path) -> Base:
    folder.mkdir(parents=True, exist_ok=True)
    face = folder / "face.mp4"
    _ffmpeg(
        "-i", str(EXAMPLE), "-t", "0.6", "-vf", "scale=160:160", "-c:v", "libx264", "-preset", "veryfast",
        "-pix_fmt", "yuv420p", "-c:a", "aac", str(face),
    )  # fmt: skip
    noface = mf.make_video(folder / "noface.mp4", size=(64, 48), seconds=0.4)
    return Base(face=face, noface=noface)


# --------------------------------------------------------------------------- one case's files and call


@dataclass
class Workspace:
    """A case's private folders; everything under ``root`` but ``cache/`` must be unchanged by a failure."""

    root: Path
    base: Base

    def __post_init__(self) -> None:
        for sub in ("inputs", "out", "tmp", "cache", "empty"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def out(self) -> Path:
        return self.root / "out" / "out.mp4"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def env(self) -> dict[str, str]:
        """Temp and cache folders of this case; no official or emotion2vec+ weights are visible (eGeMAPS path)."""
        empty = str(self.root / "empty")
        return {
            "TMPDIR": str(self.tmp),
            "CMET_TMP": str(self.tmp),
            "CMET_CACHE": str(self.cache),
            "CMET_CHECKPOINTS": empty,
            "HF_HOME": empty,
            "HF_HUB_CACHE": empty,
            "MODELSCOPE_CACHE": empty,
        }

    def copy(self, src: Path, name: str) -> Path:
        dst = self.inputs / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst

    def face(self, name: str = "face.mp4") -> Path:
        return self.copy(self.base.face, name)

    def wav(
        self,
        name: str,
        seconds: float = 1.0,
        seed: int = 0,
        gain: float = 1.0,
        rate: int = RATE,
        channels: int = 1,
        **kw,
    ) -> Path:
        """A speech clip at ``rate`` Hz with ``channels`` channels; ``kw`` goes to ``media_factory.write_audio``."""
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = speech(seconds, seed, gain)
        if rate != RATE:
            samples = np.interp(np.arange(int(seconds * rate)) * RATE / rate, np.arange(samples.size), samples)
        if channels > 1:
            samples = np.repeat(samples[:, None], channels, axis=1)
        if kw or path.suffix != ".wav" or rate != RATE or channels > 1:
            return mf.write_audio(path, samples, rate, fmt=path.suffix.lstrip("."), **kw)
        sf.write(path, samples, RATE)
        return path

    def snapshot(self) -> dict[str, str]:
        """Every file and folder outside ``cache/`` → sha256 of its bytes (``"dir"`` for folders)."""
        found: dict[str, str] = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if rel.parts[0] == "cache":
                continue
            if path.is_dir():
                found[str(rel)] = "dir"
            elif not path.is_file():  # a pipe: reading it would wait for a writer
                found[str(rel)] = "special"
            else:
                found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found

    def cache_leftovers(self) -> list[str]:
        """Half-written cache entries (temp names); finished ``.npy``/``.npz`` entries are the cache doing its job."""
        return [str(p) for p in self.cache.rglob("*") if p.is_file() and p.suffix not in (".npy", ".npz")]


@dataclass
class Run:
    """What a case asks for; the API call and the CLI command line are both derived from it."""

    video: Path | str
    reference: list[Path] = field(default_factory=list)
    target: list[Path] | str = "preset:happy"
    strength: float | str = 1.0
    out: Path | None = None  # default: the workspace's out/out.mp4
    engine: str = "lite"
    device: str = "cpu"
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None  # the whole CLI command line, for cases argparse itself must refuse
    fresh_engine: bool = False  # the API side needs its own engine (its weights come from ``env``)
    max_seconds: float | None = None  # the API side runs with this length cap (the app's setting)
    compare: dict[str, list[Path] | str] | None = None  # run ``compare`` with these emotions instead of ``edit``

    def cli_args(self) -> list[str]:
        if self.argv is not None:
            return list(self.argv)
        if self.compare is not None:
            emotions = {n: v if isinstance(v, str) else [str(c) for c in v] for n, v in self.compare.items()}
            args = ["compare", str(self.video), "--reference", *[str(r) for r in self.reference]]
            args += ["--emotions-json", json.dumps(emotions), f"--strength={self.strength}", "-o", str(self.out)]
            return args + ["--engine", self.engine, "--device", self.device]
        target = [self.target] if isinstance(self.target, str) else [str(t) for t in self.target]
        args = ["edit", str(self.video)]
        if self.reference:
            args += ["--reference", *[str(r) for r in self.reference]]
        args += ["--target", *target, f"--strength={self.strength}", "-o", str(self.out)]  # = keeps "-inf" a value
        return args + ["--engine", self.engine, "--device", self.device]


@dataclass(frozen=True)
class Case:
    """One catalogue entry. ``match`` (a regex) must occur in the failure's sentence; works cases leave it empty."""

    name: str
    build: Callable[[Workspace], Run]
    match: str = ""
    works: bool = False
    error: type[CmetError] = InputError
    cli: bool = True
    api: bool = True
    slow: bool = False
    skip: Callable[[], str] | None = None  # returns a reason to skip on this machine, or ""
    early: bool = True  # a failure that needs no face must come before the video is tracked (nothing in the cache)
    warns: str = ""  # a works case must warn with a sentence matching this
    check: Callable[[Run, Path], None] | None = None  # a works case's own check of its output, beyond the usual

    def prepare(self, root: Path, base: Base) -> tuple[Workspace, Run]:
        ws = Workspace(root, base)
        run = self.build(ws)
        if run.out is None:
            run.out = ws.out
        run.env = {**ws.env(), **run.env}
        return ws, run


CASES: list[Case] = []


def case(name: str, match: str = "", **options) -> Callable[[Callable[[Workspace], Run]], Callable[[Workspace], Run]]:
    def register(build: Callable[[Workspace], Run]) -> Callable[[Workspace], Run]:
        CASES.append(Case(name, build, match, **options))
        return build

    return register


def _cuda_present() -> str:
    import torch

    return "a CUDA GPU is present" if torch.cuda.is_available() else ""


# --------------------------------------------------------------------------- the video


@case("video_missing", r"nothere\.mp4 does not exist")
def _(ws: Workspace) -> Run:
    return Run(ws.inputs / "nothere.mp4")


@case("video_is_a_folder", r"clips is a folder")
def _(ws: Workspace) -> Run:
    (ws.inputs / "clips").mkdir()
    return Run(ws.inputs / "clips")


@case("video_zero_bytes", r"empty\.mp4 is an empty \(0-byte\) file")
def _(ws: Workspace) -> Run:
    return Run(mf.make_corrupt(ws.inputs / "empty.mp4", "empty"))


@case("video_text_renamed_mp4", r"notes\.mp4 is not a readable video")
def _(ws: Workspace) -> Run:
    return Run(mf.make_corrupt(ws.inputs / "notes.mp4", "text"))


@case("video_random_bytes", r"noise\.mp4 is not a readable video")
def _(ws: Workspace) -> Run:
    return Run(mf.make_corrupt(ws.inputs / "noise.mp4", "garbage"))


@case("video_truncated_download", r"cut\.mp4 is not a readable video .*moov")
def _(ws: Workspace) -> Run:
    return Run(mf.make_truncated(ws.base.face, ws.inputs / "cut.mp4", keep=0.5))


@case("video_truncated_data", r"cut\.mp4 is truncated or damaged")
def _(ws: Workspace) -> Run:
    full = mf.remux_faststart(ws.base.face, ws.root / "full.mp4")
    cut = mf.make_truncated(full, ws.inputs / "cut.mp4", keep=0.6)
    full.unlink()
    return Run(cut)


@case("video_is_wav_named_mp4", r"speech\.mp4 has no video stream \(it is an audio-only file\)")
def _(ws: Workspace) -> Run:
    return Run(ws.copy(ws.wav("speech.wav"), "speech.mp4"))


@case("video_is_audio", r"speech\.wav has no video stream")
def _(ws: Workspace) -> Run:
    return Run(ws.wav("speech.wav"))


@case("video_is_m4a_audio_in_mp4", r"voice\.mp4 has no video stream")
def _(ws: Workspace) -> Run:
    return Run(mf.write_audio(ws.inputs / "voice.mp4", speech(1.0), RATE, fmt="m4a"))


@case("video_is_png_image", r"photo\.png is a still image")
def _(ws: Workspace) -> Run:
    return Run(mf.make_image(ws.inputs / "photo.png"))


@case("video_is_jpeg_named_mp4", r"photo\.mp4 is a still image")
def _(ws: Workspace) -> Run:
    return Run(ws.copy(mf.make_image(ws.root / "photo.jpg"), "photo.mp4"))


@case("video_no_face", early=False, match=r"No face found in .*noface\.mp4", slow=True)
def _(ws: Workspace) -> Run:
    return Run(ws.copy(ws.base.noface, "noface.mp4"))


@case("video_4k_no_face", early=False, match=r"No face found in .*wall_4k\.mp4", slow=True)
def _(ws: Workspace) -> Run:
    frames = [np.full((2160, 3840, 3), 90 + 20 * i, np.uint8) for i in range(2)]
    return Run(mf.make_video(ws.inputs / "wall_4k.mp4", size=(3840, 2160), frames=frames, audio=False))


@case("video_face_in_few_frames", early=False, match=r"No face found in .*mostly_empty\.mp4", slow=True)
def _(ws: Workspace) -> Run:
    from cmet import media

    face = list(media.iter_frames(ws.base.face))[:2]
    blank = [np.full_like(face[0], 40) for _ in range(8)]
    return Run(mf.make_video(ws.inputs / "mostly_empty.mp4", frames=face + blank))


@case("video_over_length_cap", r"long\.mp4 is 2 s long, over this app's limit of 1 s", cli=False)
def _(ws: Workspace) -> Run:
    return Run(mf.make_video(ws.inputs / "long.mp4", size=(64, 48), seconds=2.0), max_seconds=1.0)


# --------------------------------------------------------------------------- the speech


@case("reference_missing", r"gone\.wav does not exist")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.inputs / "gone.wav"], [ws.wav("excited.wav", seed=1)])


@case("target_missing", r"gone\.wav does not exist")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.inputs / "gone.wav"])


@case("reference_is_a_folder", r"clips is a folder")
def _(ws: Workspace) -> Run:
    (ws.inputs / "clips").mkdir()
    return Run(ws.face(), [ws.inputs / "clips"], [ws.wav("excited.wav", seed=1)])


@case("target_zero_bytes", r"excited\.wav is an empty \(0-byte\) file")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [mf.make_corrupt(ws.inputs / "excited.wav", "empty")])


@case("target_text_named_wav", r"excited\.wav is not a readable video or audio file")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [mf.make_corrupt(ws.inputs / "excited.wav", "text")])


@case("target_image_named_wav", r"excited\.wav has no audio track")
def _(ws: Workspace) -> Run:
    image = mf.make_image(ws.root / "photo.png")
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.copy(image, "excited.wav")])


@case("target_silent_video_named_wav", r"excited\.wav has no audio track")
def _(ws: Workspace) -> Run:
    silent = mf.make_video(ws.root / "silent.mp4", audio=False)
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.copy(silent, "excited.wav")])


@case("target_10s_silence", r"quiet\.wav is silent")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [mf.make_silence(ws.inputs / "quiet.wav", seconds=10.0)])


@case("target_shorter_than_half_second", r"blip\.wav is only 0\.30 s long")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.wav("blip.wav", seconds=0.3, seed=1)])


@case("reference_shorter_than_half_second", r"blip\.wav is only 0\.40 s long")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("blip.wav", seconds=0.4)], [ws.wav("excited.wav", seed=1)])


@case("target_nan_samples", r"broken\.wav contains NaN")
def _(ws: Workspace) -> Run:
    samples = speech(1.0, seed=1)
    samples[4000:4100] = np.nan
    sf.write(ws.inputs / "broken.wav", samples, RATE, subtype="FLOAT")
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.inputs / "broken.wav"])


@case("reference_equals_target", r"same embedding")
def _(ws: Workspace) -> Run:
    clip = ws.wav("neutral.wav")
    return Run(ws.face(), [clip], [clip])


@case("reference_and_target_identical_copies", r"same embedding")
def _(ws: Workspace) -> Run:
    clip = ws.wav("neutral.wav")
    return Run(ws.face(), [clip], [ws.copy(clip, "copy of neutral.wav")])


def _npy(ws: Workspace, name: str, vector: np.ndarray) -> Path:
    path = ws.inputs / name
    np.save(path, vector)
    return path


def _embedding(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(1024).astype(np.float32)


@case("target_npy_with_nan", r"excited\.npy is not a finite numeric embedding")
def _(ws: Workspace) -> Run:
    bad = _embedding(1)
    bad[7] = np.nan
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [_npy(ws, "excited.npy", bad)])


@case("reference_npy_with_inf", r"neutral\.npy is not a finite numeric embedding")
def _(ws: Workspace) -> Run:
    bad = _embedding(0)
    bad[0] = np.inf
    return Run(ws.face(), [_npy(ws, "neutral.npy", bad)], [_npy(ws, "excited.npy", _embedding(1))])


@case("target_npy_wrong_dim", r"excited\.npy holds an embedding of shape \(16,\).*expects shape \(1024,\)")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [_npy(ws, "excited.npy", np.ones(16))])


@case("target_npy_matrix", r"excited\.npy holds an embedding of shape \(3, 1024\)")
def _(ws: Workspace) -> Run:
    matrix = np.stack([_embedding(s) for s in range(3)])
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [_npy(ws, "excited.npy", matrix)])


@case("target_npy_not_an_array", r"excited\.npy is not a readable \.npy embedding")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [mf.make_corrupt(ws.inputs / "excited.npy")])


@case("npy_reference_with_audio_target", r"neutral\.npy holds an embedding of shape \(1024,\).*egemaps")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [ws.wav("excited.wav", seed=1)])


@case("target_without_reference", r"needs reference")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [], [ws.wav("excited.wav", seed=1)])


@case("reference_without_target", r"target")
def _(ws: Workspace) -> Run:
    video, clip = ws.face(), ws.wav("neutral.wav")
    argv = ["edit", str(video), "--reference", str(clip), "-o", str(ws.out), "--engine", "lite", "--device", "cpu"]
    return Run(video, [clip], [], argv=argv)


@case("target_preset_mixed_with_clips", r'as one "preset:NAME", not an empty list or a mix')
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [], ["preset:happy", ws.wav("excited.wav", seed=1)])


@case("unknown_preset", r"no preset named 'ecstatic'")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), target="preset:ecstatic")


@case("empty_preset_name", r"no preset named ''")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), target="preset:")


# --------------------------------------------------------------------------- the strength


@case("strength_nan", r"[Ss]trength must be a finite number")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), strength=float("nan"))


@case("strength_inf", r"[Ss]trength must be a finite number")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), strength=float("inf"))


@case("strength_minus_inf_with_speech", r"[Ss]trength must be a finite number")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.wav("excited.wav", seed=1)], strength=float("-inf"))


@case("strength_not_a_number", r"invalid float value: 'strong'", api=False)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), strength="strong")


@case("batch_size_zero", r"--batch-size.*at least 1", api=False)
def _(ws: Workspace) -> Run:
    """0 (or less) used to mean "the whole video in one batch": the memory the option exists to save."""
    run = Run(ws.face())
    run.argv = [*Run(run.video, out=ws.out).cli_args(), "--batch-size", "0"]
    return run


# --------------------------------------------------------------------------- the output


@case("output_under_a_regular_file", r"notes\.txt does not exist", slow=True)
def _(ws: Workspace) -> Run:
    (ws.inputs / "notes.txt").write_text("not a folder\n")
    return Run(ws.face(), out=ws.inputs / "notes.txt" / "out.mp4")


@case("output_on_a_missing_drive", r"folder /nonexistent-cmet-drive does not exist", slow=True)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), out=Path("/nonexistent-cmet-drive/out.mp4"))


@case("output_is_a_folder", r"it is a folder", slow=True)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), out=ws.root / "out")


@case("output_is_the_video", r"output path .*face\.mp4 is one of the inputs")
def _(ws: Workspace) -> Run:
    video = ws.face()
    return Run(video, out=video)


@case("output_is_the_video_spelled_differently", r"is one of the inputs")
def _(ws: Workspace) -> Run:
    video = ws.face()
    (ws.inputs / "sub").mkdir()
    return Run(video, out=ws.inputs / "sub" / ".." / "face.mp4")


@case("output_is_a_reference_clip", r"neutral\.wav is one of the inputs")
def _(ws: Workspace) -> Run:
    clip = ws.wav("neutral.wav")
    return Run(ws.face(), [clip], [ws.wav("excited.wav", seed=1)], out=clip)


@case("output_is_a_target_clip", r"excited\.wav is one of the inputs")
def _(ws: Workspace) -> Run:
    clip = ws.wav("excited.wav", seed=1)
    return Run(ws.face(), [ws.wav("neutral.wav")], [clip], out=clip)


# --------------------------------------------------------------------------- engines and weights


@case("official_engine_without_weights", r"Missing weights: .*python -m cmet download", error=MissingWeightsError)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), engine="official")


@case("unknown_engine", r"(invalid choice: 'fast'|Unknown engine 'fast')")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), engine="fast")


@case("cuda_without_gpu", r"no CUDA GPU", skip=_cuda_present)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), device="cuda")


@case("lite_weights_missing", r"Missing weights: lite connector", error=MissingWeightsError, slow=True)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), env={"CMET_LITE": str(ws.root / "empty")}, fresh_engine=True)


@case("lite_weights_corrupt", r"is not a saved cmet connector", slow=True)
def _(ws: Workspace) -> Run:
    folder = ws.root / "lite" / "emotion2vec"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{ not json")
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return Run(ws.face(), env={"CMET_LITE": str(ws.root / "lite")}, fresh_engine=True)


# --------------------------------------------------------------------------- unusual but valid: these must work


@case("works_portrait_rotation", works=True, slow=True)
def _(ws: Workspace) -> Run:
    """Stored landscape, displayed portrait: a phone's rotation tag (clockwise 90°) over CCW-rotated pixels."""
    stage = ws.root / "stage.mp4"
    _ffmpeg("-i", str(ws.base.face), "-vf", "crop=120:160,transpose=2", "-c:v", "libx264", "-c:a", "copy", str(stage))
    _ffmpeg("-display_rotation:v", "-90", "-i", str(stage), "-c", "copy", str(ws.inputs / "portrait.mp4"))
    stage.unlink()
    return Run(ws.inputs / "portrait.mp4")


@case("works_non_ascii_and_space_paths", works=True, slow=True)
def _(ws: Workspace) -> Run:
    video = ws.face("vidéo d'été/clip ünï 名前.mp4")
    reference = [ws.wav("voix neutre/première prise.wav"), ws.wav("voix neutre/zweite Aufnahme ü.wav", seed=3)]
    target = [ws.wav("voix joyeuse/très heureux 😀.wav", seed=1)]
    return Run(video, reference, target, out=ws.root / "out" / "résultat final ✓.mp4")


@case("works_video_without_audio", works=True, slow=True)
def _(ws: Workspace) -> Run:
    _ffmpeg("-i", str(ws.base.face), "-an", "-c:v", "copy", str(ws.inputs / "mute.mp4"))
    return Run(ws.inputs / "mute.mp4")


@case("works_one_frame_video", works=True, slow=True)
def _(ws: Workspace) -> Run:
    _ffmpeg("-i", str(ws.base.face), "-frames:v", "1", "-c:v", "libx264", "-c:a", "aac", str(ws.inputs / "one.mp4"))
    return Run(ws.inputs / "one.mp4")


@case("works_odd_frame_size", works=True, slow=True)
def _(ws: Workspace) -> Run:
    _ffmpeg("-i", str(ws.base.face), "-vf", "crop=159:141", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "copy",
            str(ws.inputs / "odd.mp4"))  # fmt: skip
    return Run(ws.inputs / "odd.mp4")


@case("works_speech_formats_and_wrong_extensions", works=True, slow=True)
def _(ws: Workspace) -> Run:
    """Stereo 48 kHz, 8-bit, mp3, ogg; a wav named .mp4 and an mp4 (with sound) named .wav are read by content."""
    reference = [
        ws.wav("stereo48k.wav", rate=48000, channels=2),
        ws.wav("eight_bit.wav", seed=2, sample_fmt="u8"),
        ws.copy(ws.wav("plain.wav", seed=4), "plain wav named.mp4"),
    ]
    target = [ws.wav("loud.mp3", seed=1), ws.wav("loud.ogg", seed=5), ws.copy(ws.base.face, "a video.wav")]
    return Run(ws.face(), reference, target)


@case("works_very_different_loudness", works=True, slow=True)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("whisper.wav", gain=0.01)], [ws.wav("shout.wav", seed=1, gain=3.0)])


@case("works_damaged_track_cache", works=True, slow=True)
def _(ws: Workspace) -> Run:
    """A cache entry is not an input: a damaged one (a crash, a full disk, an old format) is rebuilt, not reported."""
    video = ws.face()
    tracks = ws.cache / "tracks"
    tracks.mkdir(parents=True)
    (tracks / f"{hashlib.sha256(video.read_bytes()).hexdigest()}.npz").write_bytes(b"PK\x03\x04 half a zip")
    return Run(video, fresh_engine=True)


# --------------------------------------------------------------------------- real-world footage (issue 16)


@case("video_is_dev_null", r"/dev/null is a device, not a media file")
def _(ws: Workspace) -> Run:
    return Run(Path("/dev/null"))


@case("video_is_a_pipe", r"stream\.mp4 is a pipe, not a file")
def _(ws: Workspace) -> Run:
    os.mkfifo(ws.inputs / "stream.mp4")
    return Run(ws.inputs / "stream.mp4")


@case("reference_is_a_pipe", r"calm\.wav is a pipe, not a file")
def _(ws: Workspace) -> Run:
    os.mkfifo(ws.inputs / "calm.wav")
    return Run(ws.face(), [ws.inputs / "calm.wav"], [ws.wav("excited.wav", seed=1)])


@case("target_npy_complex", r"excited\.npy holds complex numbers")
def _(ws: Workspace) -> Run:
    vector = _embedding(1) + 1j * _embedding(2)
    return Run(ws.face(), [_npy(ws, "neutral.npy", _embedding(0))], [_npy(ws, "excited.npy", vector)])


@case("strength_above_range", r"Strength must lie between -2 and 3, got 10")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), strength=10.0)


@case("strength_huge", r"Strength must lie between -2 and 3, got 1e\+06")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), strength=1e6)


@case("strength_below_range", r"Strength must lie between -2 and 3, got -5")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), [ws.wav("neutral.wav")], [ws.wav("excited.wav", seed=1)], strength=-5.0)


@case("output_unknown_container", r"out\.avi: cmet does not write a \.avi file; .*\.mp4, .*\.webm, \.gif")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), out=ws.root / "out" / "out.avi")


@case("output_without_extension", r"cmet does not write a file without an extension")
def _(ws: Workspace) -> Run:
    return Run(ws.face(), out=ws.root / "out" / "result")


@case("compare_emotions_json_invalid", r"--emotions-json is not valid JSON", api=False)
def _(ws: Workspace) -> Run:
    video = ws.face()
    argv = ["compare", str(video), "--emotions-json", "{happy: preset}", "-o", str(ws.out), "--engine", "lite"]
    return Run(video, argv=argv)


def _face_frames(ws: Workspace, fps: float, seconds: float, size: int = 160) -> list[np.ndarray]:
    """The example talking face, ``size``² at ``fps``, each frame stamped with its index (``mf.read_stamp``)."""
    from cmet import media

    staged = ws.root / "stage.mp4"
    _ffmpeg("-i", str(EXAMPLE), "-t", f"{seconds}", "-vf", f"fps={fps},scale={size}:{size}", "-an", str(staged))
    frames = [mf.stamp(frame, i) for i, frame in enumerate(media.iter_frames(staged))]
    staged.unlink()
    return frames


def _check_vfr(run: Run, out: Path) -> None:
    """Every output frame shows the input frame of its time (within one output frame), the audio is whole."""
    from cmet import media

    src, dst = media.probe(run.video), media.probe(out)
    stamps_in = [mf.read_stamp(f) for f in media.iter_frames(run.video)]
    time_of = dict(zip(stamps_in, src.frame_times()))
    shown = [mf.read_stamp(f) for f in media.iter_frames(out)]
    period = 1 / dst.fps
    assert dst.fps == 30 and not dst.variable_rate, (dst.fps, dst.variable_rate)
    late = [abs(t - time_of[s]) for s, t in zip(shown, dst.frame_times())]
    assert max(late) <= period + 1e-3, f"a frame shows {max(late):.3f} s away from its own time"
    assert set(shown) == set(stamps_in), "an input frame was dropped"
    assert abs(dst.duration - src.duration) < period
    audio_in, audio_out = media.read_audio(run.video), media.read_audio(out)
    assert abs(len(audio_out) - len(audio_in)) / 16000 < period, "the audio is not its full length"
    clicks_in, clicks_out = mf.click_times(audio_in, 16000), mf.click_times(audio_out, 16000)
    assert len(clicks_in) == len(clicks_out) == 3 and np.abs(clicks_in - clicks_out).max() < period


@case("works_variable_frame_rate_phone_clip", works=True, slow=True, check=_check_vfr)
def _(ws: Workspace) -> Run:
    """30 fps for 0.4 s, then every other frame (15 fps), timestamps kept; clicks at 0.2, 0.6 and 1.0 s."""
    frames = _face_frames(ws, 30, 1.2)
    clicks = mf.click_track(len(frames) / 30, 16000, [0.2, 0.6, 1.0])
    path = mf.make_vfr_video(ws.inputs / "phone.mp4", frames, 30, r"lt(n\,12)+not(mod(n\,2))", audio=clicks)
    return Run(path)


def _check_look(run: Run, out: Path) -> None:
    """Pixel aspect ratio, colour matrix and range as the input's; at strength 0 the picture is the input's."""
    from cmet import media

    src, dst = media.probe(run.video), media.probe(out)
    untagged = "bt470bg"  # what players assume for an untagged SD video, and what an untagged input is written as
    assert dst.sar == src.sar and (dst.colour.matrix or untagged) == (src.colour.matrix or untagged), (dst, src)
    assert dst.colour.full_range == src.colour.full_range, (dst.colour, src.colour)
    first_in = next(media.iter_frames(run.video)).astype(np.float32)
    first_out = next(media.iter_frames(out)).astype(np.float32)
    assert np.abs(first_in - first_out).mean() < 3, "colours changed (range or matrix read wrongly)"


@case("works_non_square_pixels", works=True, slow=True, check=_check_look)
def _(ws: Workspace) -> Run:
    """120×160 stored, shown 4:3 wider (SAR 4:3), as HDV and DV footage are."""
    _ffmpeg("-i", str(ws.base.face), "-vf", "scale=120:160,setsar=4/3", "-c:a", "copy", str(ws.inputs / "hdv.mp4"))
    return Run(ws.inputs / "hdv.mp4", strength=0.0)


@case("works_bt709_tagged", works=True, slow=True, check=_check_look)
def _(ws: Workspace) -> Run:
    _ffmpeg("-i", str(ws.base.face), "-vf", "scale=out_color_matrix=bt709,setparams=colorspace=bt709:color_primaries="
            "bt709:color_trc=bt709:range=tv", "-c:a", "copy", str(ws.inputs / "hd.mp4"))  # fmt: skip
    return Run(ws.inputs / "hd.mp4", strength=0.0)


@case("works_full_range_jpeg_style", works=True, slow=True, check=_check_look)
def _(ws: Workspace) -> Run:
    _ffmpeg("-i", str(ws.base.face), "-vf", "scale=out_range=pc,format=yuvj420p", "-c:a", "copy",
            str(ws.inputs / "full.mp4"))  # fmt: skip
    return Run(ws.inputs / "full.mp4", strength=0.0)


def _container_check(pattern: str) -> Callable[[Run, Path], None]:
    def check(run: Run, out: Path) -> None:
        summary = mf.stream_summary(out)
        assert re.search(pattern, summary, re.DOTALL), summary

    return check


for _suffix, _pattern in {
    "webm": r"Input #0, matroska,webm.*Video: vp9.*Audio: opus",
    "mkv": r"Input #0, matroska,webm.*Video: h264.*Audio: aac",
    "mov": r"Input #0, mov,.*Video: h264.*Audio: aac",
    "m4v": r"Input #0, mov,.*Video: h264.*Audio: aac",
}.items():
    case(f"works_output_{_suffix}", works=True, slow=True, check=_container_check(_pattern))(
        lambda ws, suffix=_suffix: Run(ws.face(), out=ws.root / "out" / f"out.{suffix}")
    )


@case(
    "works_output_gif",
    works=True,
    slow=True,
    warns=r"A GIF holds no sound: out\.gif is written without the audio",
    check=_container_check(r"Input #0, gif.*Video: gif"),
)
def _(ws: Workspace) -> Run:
    return Run(ws.face(), out=ws.root / "out" / "out.gif")


def _check_one_person(run: Run, out: Path) -> None:
    """The edit shows on one half of the picture in every frame and never on the other."""
    from cmet import media

    changed = [  # pixels moved by the warp, not codec noise: large local differences
        [
            (np.abs(a[:, half].astype(np.int16) - b[:, half]).max(axis=2) > 40).sum()
            for half in (slice(0, 160), slice(160, 320))
        ]
        for a, b in zip(media.iter_frames(run.video), media.iter_frames(out))
    ]
    changed = np.array(changed)
    edited = int(np.argmax(changed.sum(axis=0)))
    assert (changed[:, 1 - edited] < 1.5).all(), f"the other person was edited too: {changed}"
    assert (changed[:, edited] > 2 * changed[:, 1 - edited]).all(), changed


@case("works_two_similar_faces", works=True, slow=True, warns=r"Several faces .* the one on the (left|right)",
      check=_check_one_person)  # fmt: skip
def _(ws: Workspace) -> Run:
    """The face beside its mirror image, each a little larger on alternate frames (the old per-frame pick jumped)."""
    import cv2

    from cmet import media

    frames = []
    for t, face in enumerate(media.iter_frames(ws.base.face)):
        canvas = np.full((160, 320, 3), 128, np.uint8)
        for side, image in enumerate((face, face[:, ::-1])):
            side_size = 160 if (t + side) % 2 else 150
            small = cv2.resize(image, (side_size, side_size), interpolation=cv2.INTER_AREA)
            canvas[:side_size, side * 160 : side * 160 + side_size] = small
        frames.append(canvas)
    pair = mf.make_video(ws.root / "pair.mp4", frames=frames, audio=False)
    _ffmpeg("-i", str(pair), "-i", str(ws.base.face), "-map", "0:v", "-map", "1:a", "-c", "copy",
            str(ws.inputs / "two.mp4"))  # fmt: skip
    pair.unlink()
    return Run(ws.inputs / "two.mp4", strength=3.0)


@case("works_compare_clip_names_with_commas", works=True, slow=True)
def _(ws: Workspace) -> Run:
    reference = [ws.wav("calm, take 1.wav"), ws.wav("calm, take 2.wav", seed=3)]
    target = [ws.wav("sarcastic, loud.wav", seed=1), ws.wav("sarcastic, soft.wav", seed=5)]
    return Run(ws.face(), reference, compare={"happy": "preset:happy", "sarcastic": target})


# --------------------------------------------------------------------------- the CLI driver


def drive(spec_path: Path, results_path: Path) -> None:
    """Run each spec's command line as ``python -m cmet`` would, in its own environment; one JSON line per case."""
    from cmet.cli import main

    specs = json.loads(spec_path.read_text())
    with results_path.open("w") as sink:
        for spec in specs:
            saved = dict(os.environ)
            os.environ.update(spec["env"])
            tempfile.tempdir = None  # re-read TMPDIR
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code = main(spec["argv"])
                except SystemExit as exc:  # argparse's own errors
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - the interpreter would print this traceback; record it
                    traceback.print_exc(file=stderr)
                    code = 1
            os.environ.clear()
            os.environ.update(saved)
            tempfile.tempdir = None
            record = {"name": spec["name"], "code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}
            sink.write(json.dumps(record) + "\n")
            sink.flush()


def run_cli_batch(runs: dict[str, Run], folder: Path, timeout: float = 600) -> dict[str, dict]:
    """Run many CLI command lines in one driver process; returns each case's exit code, stdout and stderr."""
    spec = folder / "cli-spec.json"
    results = folder / "cli-results.jsonl"
    spec.write_text(json.dumps([{"name": n, "argv": r.cli_args(), "env": r.env} for n, r in runs.items()]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bad_inputs", str(spec), str(results)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {r["name"]: r for r in records}
    for name in runs:
        done.setdefault(
            name, {"name": name, "code": None, "stdout": "", "stderr": f"driver died: {proc.stderr[-3000:]}"}
        )
    return done


if __name__ == "__main__":
    drive(Path(sys.argv[1]), Path(sys.argv[2]))
