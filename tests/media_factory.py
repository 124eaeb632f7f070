"""Generate small test media with the bundled ffmpeg and numpy (independent of ``cmet.media``).

Videos carry their frame index as a binary code in the top band (``decode_index`` reads it back),
so tests can check exactly which source frame a reader returned. Optional click tracks put a short
burst in the audio at the same instant as an all-white lower band in the picture, for measuring A/V
offset after a round trip (``flash_onsets`` / ``click_times``).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CODE_BITS = 12

_AUDIO_CODECS = {"wav": "pcm_s16le", "mp3": "libmp3lame", "m4a": "aac", "ogg": "libvorbis", "webm": "libopus"}
_AUDIO_CODECS |= {"flac": "flac", "opus": "libopus", "aac": "aac"}
_WAV_FORMATS = {"u8": "pcm_u8", "s16": "pcm_s16le", "s24": "pcm_s24le", "s32": "pcm_s32le", "flt": "pcm_f32le"}
_WAV_FORMATS |= {"dbl": "pcm_f64le"}
_VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def _run(cmd: list[str], stdin: bytes | None = None) -> None:
    proc = subprocess.run([FFMPEG, "-hide_banner", "-v", "error", "-y", *cmd], input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')}")


def _rate(fps: float) -> str:
    r = Fraction(fps).limit_denominator(1001)
    return f"{r.numerator}/{r.denominator}"


# --------------------------------------------------------------------------- frames


def index_frame(index: int, size: tuple[int, int] = (64, 48), flash: bool = False) -> np.ndarray:
    """RGB frame: top half = ``CODE_BITS`` stripes coding ``index``; bottom half a moving ramp (white if ``flash``)."""
    width, height = size
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    band = height // 2
    edges = np.linspace(0, width, CODE_BITS + 1).astype(int)
    for bit in range(CODE_BITS):
        if index >> bit & 1:
            frame[:band, edges[bit] : edges[bit + 1]] = 255
    if flash:
        frame[band:] = 255
    else:
        ramp = ((np.arange(width) * 4 + index * 7) % 160).astype(np.uint8)
        frame[band:, :, 0] = ramp
        frame[band:, :, 1] = 40
        frame[band:, :, 2] = ramp[::-1]
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of ``index_frame`` (robust to lossy coding: samples the middle of each stripe)."""
    height, width = frame.shape[:2]
    row = frame[height // 8 : height * 3 // 8].mean(axis=(0, 2))
    edges = np.linspace(0, width, CODE_BITS + 1).astype(int)
    bits = [row[(edges[b] + edges[b + 1]) // 2] > 127 for b in range(CODE_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def flash_onsets(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Indices of frames whose lower band turns white (the picture side of a click)."""
    bright = np.array([frame[frame.shape[0] * 5 // 8 :].mean() > 200 for frame in frames])
    return np.flatnonzero(bright & ~np.concatenate([[False], bright[:-1]]))


def click_times(samples: np.ndarray, sr: int, threshold: float = 0.3, gap: float = 0.1) -> np.ndarray:
    """Onset times (s) of clicks: first sample above ``threshold`` after ``gap`` seconds of quiet."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return np.zeros(0)
    starts = loud[np.concatenate([[True], np.diff(loud) > gap * sr])]
    return starts / sr


# --------------------------------------------------------------------------- audio


def tone(seconds: float = 1.0, sr: int = 16000, freq: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine."""
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(
    path: str | Path, samples: np.ndarray, sr: int, fmt: str | None = None, sample_fmt: str | None = None
) -> Path:
    """Encode float samples (N or N×C) to any format the bundled ffmpeg writes; ``sample_fmt`` picks the WAV depth."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    data = np.asarray(samples, dtype="<f4")
    channels = 1 if data.ndim == 1 else data.shape[1]
    codec = _WAV_FORMATS[sample_fmt] if fmt == "wav" and sample_fmt else _AUDIO_CODECS[fmt]
    extra = ["-sample_fmt", sample_fmt] if sample_fmt and fmt != "wav" else []
    muxer = {"m4a": "ipod", "aac": "adts"}.get(fmt, fmt)
    cmd = ["-f", "f32le", "-ar", str(sr), "-ac", str(channels), "-i", "pipe:0", "-c:a", codec, *extra]
    _run([*cmd, "-f", muxer, f"file:{path}"], stdin=data.tobytes())
    return path


def make_tone(
    path: str | Path,
    seconds: float = 1.0,
    sr: int = 16000,
    freq: float = 220.0,
    channels: int = 1,
    fmt: str | None = None,
    sample_fmt: str | None = None,
    amplitude: float = 0.5,
) -> Path:
    """A sine file: wav (u8/s16/s24/s32/flt), mp3, m4a, ogg, webm, flac; stereo copies the tone to every channel."""
    mono = tone(seconds, sr, freq, amplitude)
    samples = mono if channels == 1 else np.repeat(mono[:, None], channels, axis=1)
    return write_audio(path, samples, sr, fmt, sample_fmt)


def make_silence(path: str | Path, seconds: float = 1.0, sr: int = 16000, fmt: str | None = None) -> Path:
    """All-zero audio."""
    return write_audio(path, np.zeros(round(seconds * sr), np.float32), sr, fmt)


def click_track(seconds: float, sr: int, clicks: Iterable[float], amplitude: float = 0.8) -> np.ndarray:
    """Silence with a 10 ms 1 kHz burst starting exactly at each time in ``clicks``."""
    out = np.zeros(round(seconds * sr), dtype=np.float32)
    burst = tone(0.01, sr, 1000.0, amplitude)
    burst[0] = amplitude  # a sharp first sample so the onset is exact
    for t in clicks:
        start = round(t * sr)
        seg = out[start : start + burst.size]
        seg[:] = burst[: seg.size]
    return out


# --------------------------------------------------------------------------- video


def make_video(
    path: str | Path,
    fps: float = 25,
    size: tuple[int, int] = (64, 48),
    seconds: float = 1.0,
    audio: bool = True,
    click_every: float | None = None,
    frames: Iterable[np.ndarray] | None = None,
    sr: int = 44100,
    rotation: int = 0,
    audio_delay: float = 0.0,
    pix_fmt: str | None = None,
) -> Path:
    """A video of ``index_frame`` pictures (or the given RGB ``frames``), with a tone or click track.

    ``click_every`` puts a click every so many seconds (from 0.2 s) at the start of a two-frame flash
    (two frames, so that dropping frames when resampling cannot lose a flash).
    ``rotation`` (clockwise, like a phone's ``rotate`` tag) is stored as display-matrix metadata.
    ``audio_delay`` shifts the audio stream's start time (negative: the video starts later) while
    keeping clicks and flashes together in playback. Odd sizes use yuv444p (yuv420p needs even sides).
    """
    path = Path(path)
    n = round(seconds * fps)
    onsets: list[int] = []
    if click_every:
        onsets = [round((0.2 + j * click_every) * fps) for j in range(int((seconds - 0.2) / click_every) + 1)]
        onsets = [f for f in onsets if f + 1 < n]
    flashes = set(onsets) | {f + 1 for f in onsets}
    if frames is None:
        frames = (index_frame(i, size, flash=i in flashes) for i in range(n))
    frames = list(frames)
    height, width = frames[0].shape[:2]
    pix_fmt = pix_fmt or ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p")
    codec = _VIDEO_CODECS[path.suffix.lower()]
    quality = ["-crf", "12", "-preset", "veryfast"] if codec == "libx264" else ["-q:v", "2", "-b:v", "0"]
    vdelay = ["-itsoffset", f"{-audio_delay:.6f}"] if audio_delay < 0 else []
    cmd = [*vdelay, "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}"]
    cmd += ["-framerate", _rate(fps), "-i", "pipe:0"]
    with tempfile.TemporaryDirectory() as tmp:
        if audio:
            wav = Path(tmp) / "audio.wav"
            duration = len(frames) / fps
            if onsets:
                samples = click_track(duration, sr, [f / fps - audio_delay for f in onsets])
            else:
                samples = tone(duration, sr, 220.0, 0.3)
            write_audio(wav, samples, sr)
            adelay = ["-itsoffset", f"{audio_delay:.6f}"] if audio_delay > 0 else []
            cmd += [*adelay, "-i", str(wav), "-map", "0:v", "-map", "1:a"]
            cmd += ["-c:a", "libopus" if path.suffix.lower() == ".webm" else "aac"]
        cmd += ["-c:v", codec, *quality, "-pix_fmt", pix_fmt]
        stage = Path(tmp) / f"stage{path.suffix}" if rotation else path
        _run([*cmd, f"file:{stage}"], stdin=b"".join(np.ascontiguousarray(f, np.uint8).tobytes() for f in frames))
        if rotation:  # display-matrix rotation is counter-clockwise
            _run(["-display_rotation:v", str(-rotation), "-i", str(stage), "-c", "copy", f"file:{path}"])
    return path


# --------------------------------------------------------------------------- bad files


def make_image(path: str | Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A still picture (format from the suffix, e.g. .png/.jpg); rename it .mp4 to fake a video."""
    path = Path(path)
    fmt = {".png": ("png", "image2"), ".jpg": ("mjpeg", "image2"), ".jpeg": ("mjpeg", "image2")}
    codec, muxer = fmt.get(path.suffix.lower(), ("png", "image2"))
    frame = index_frame(5, size)
    cmd = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{size[0]}x{size[1]}", "-i", "pipe:0"]
    _run([*cmd, "-frames:v", "1", "-c:v", codec, "-update", "1", "-f", muxer, f"file:{path}"], stdin=frame.tobytes())
    return path


def make_corrupt(path: str | Path, kind: str = "text") -> Path:
    """A file that is not media: ``text`` (prose), ``empty`` (0 bytes) or ``garbage`` (random bytes)."""
    path = Path(path)
    if kind == "text":
        path.write_text("This is a shopping list, not a video.\nmilk\neggs\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


def make_truncated(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes (an interrupted download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def remux_faststart(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` with the index (moov) first, so a truncated copy still opens but its data ends early."""
    _run(["-i", str(src), "-c", "copy", "-movflags", "+faststart", f"file:{dst}"])
    return Path(dst)


def make_cut(src: str | Path, dst: str | Path, start: float, seconds: float) -> Path:
    """A stream-copied excerpt (no re-encode): its edit list hides packets, so packet counts overstate frames."""
    _run(["-ss", f"{start}", "-i", str(src), "-t", f"{seconds}", "-c", "copy", f"file:{dst}"])
    return Path(dst)


# --------------------------------------------------------------------------- real-world footage


def stamp(frame: np.ndarray, index: int, rows: int = 8) -> np.ndarray:
    """A copy of ``frame`` with ``index`` coded as ``CODE_BITS`` black/white stripes across its top ``rows`` rows."""
    out = frame.copy()
    edges = np.linspace(0, out.shape[1], CODE_BITS + 1).astype(int)
    for bit in range(CODE_BITS):
        out[:rows, edges[bit] : edges[bit + 1]] = 255 if index >> bit & 1 else 0
    return out


def read_stamp(frame: np.ndarray, rows: int = 8) -> int:
    """Inverse of ``stamp`` (samples the middle of each stripe, robust to lossy coding)."""
    band = frame[1 : rows - 1].astype(np.float32).mean(axis=(0, 2))
    edges = np.linspace(0, frame.shape[1], CODE_BITS + 1).astype(int)
    return sum(1 << b for b in range(CODE_BITS) if band[(edges[b] + edges[b + 1]) // 2] > 127)


def make_vfr_video(
    path: str | Path, frames: list[np.ndarray], fps: float, keep: str, audio: np.ndarray | None = None, sr: int = 16000
) -> Path:
    """Frames at ``fps`` of which only those where the ffmpeg expression ``keep`` (of ``n``) holds are stored, each
    with its own timestamp: a variable-frame-rate file, as phones write when their rate drops."""
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}", "-framerate", _rate(fps)]
        cmd += ["-i", "pipe:0"]
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            write_audio(wav, audio, sr)
            cmd += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac"]
        cmd += ["-vf", f"select='{keep}'", "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "12"]
        _run(
            [*cmd, "-preset", "veryfast", "-pix_fmt", "yuv420p", f"file:{path}"],
            stdin=b"".join(f.tobytes() for f in frames),
        )
    return Path(path)


def stream_summary(path: str | Path) -> str:
    """``ffmpeg -i``'s input and stream lines: the container, codecs, pixel format, SAR and colour tags."""
    proc = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "\n".join(line for line in proc.stderr.splitlines() if "Input #" in line or "Stream #" in line)


def av_lag(reference: np.ndarray, other: np.ndarray, sr: int, search: float = 0.25) -> float:
    """Seconds by which ``other`` lags ``reference`` (cross-correlation peak within ±``search`` s)."""
    n = min(len(reference), len(other))
    a, b = reference[:n] - reference[:n].mean(), other[:n] - other[:n].mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.concatenate([np.arange(0, size // 2), np.arange(-size // 2, 0)])
    window = np.abs(lags) <= int(search * sr)
    return float(lags[window][np.argmax(corr[window])] / sr)


def frame_times(path: str | Path) -> np.ndarray:
    """Presentation time (s) of every video frame, from a decode (any format the bundled ffmpeg reads)."""
    cmd = [FFMPEG, "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough"]
    cmd += ["-enc_time_base:v", "demux", "-c:v", "wrapped_avframe", "-f", "framecrc", "pipe:1"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    base = Fraction(1)
    times = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            times.append(float(int(line.split(",")[2]) * base))
    return np.array(times) - (times[0] if times else 0.0)
