"""The output file's name decides its container and codecs: what a person asking for ``out.webm`` expects.

``.mp4``/``.m4v``/``.mov``/``.mkv`` get H.264 with AAC sound, ``.webm`` VP9 with Opus, ``.gif`` a palette GIF
(GIF holds no sound; the writer says so). Any other name is refused before any work, with the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmet.errors import InputError


@dataclass(frozen=True)
class Container:
    """How one kind of output file is encoded and muxed."""

    muxer: str
    video: str  # "h264" | "vp9"; a GIF is made from an H.264 intermediate
    audio: tuple[str, ...]  # audio encoder options; empty: the container carries no sound
    gif: bool = False

    @property
    def faststart(self) -> list[str]:
        """MP4/MOV index first, so the file plays while it downloads."""
        return ["-movflags", "+faststart"] if self.muxer in ("mp4", "mov") else []

    def video_args(self, crf: int, preset: str) -> list[str]:
        """Encoder options for the picture (``preset`` is x264's speed/size trade-off)."""
        if self.video == "vp9":  # realtime speed: VP9's default (good, cpu-used 1) is ~30× slower than x264
            return ["-c:v", "libvpx-vp9", "-crf", str(crf + 12), "-b:v", "0", "-deadline", "realtime",
                    "-cpu-used", "8", "-row-mt", "1", "-pix_fmt", "yuv420p"]  # fmt: skip
        return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]


_AAC = ("-c:a", "aac", "-b:a", "160k")
CONTAINERS = {
    ".mp4": Container("mp4", "h264", _AAC),
    ".m4v": Container("mp4", "h264", _AAC),
    ".mov": Container("mov", "h264", _AAC),
    ".mkv": Container("matroska", "h264", _AAC),
    ".webm": Container("webm", "vp9", ("-c:a", "libopus", "-b:a", "128k")),
    ".gif": Container("gif", "h264", (), gif=True),
}


def container_for(path: str | Path) -> Container:
    """The container the output's name asks for, or an ``InputError`` listing the names cmet writes."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        kinds = ", ".join(CONTAINERS)
        what = f"a {suffix} file" if suffix else "a file without an extension"
        raise InputError(f"Cannot write {path}: cmet does not write {what}; name the output with one of {kinds}.")
    return CONTAINERS[suffix]
