"""How cmet asks ffmpeg to open a user's file: as a local file, and only as a real media container.

A media file can name other files or addresses: an HLS playlist lists segments, a concat list lists files,
an image2 pattern expands to a numbered sequence, an XML manifest points at streams. Opened blindly, a file
uploaded to a public app could make ffmpeg read private files of the server, or reach the network. So every
user file is opened with ``-protocol_whitelist file`` (no network, no nested protocols) and
``-format_whitelist`` of the containers cmet supports: ffmpeg refuses anything else while opening, before
anything is decoded, and ``refusal`` turns that into one sentence; ``check_not_a_list`` names the common list
formats from their first bytes before ffmpeg sees them. This module is part of the media floor:
it imports nothing of cmet's but ``errors``.
"""

from __future__ import annotations

import re
from pathlib import Path

from cmet.errors import InputError

# Demuxer names as ffmpeg spells them: "mov" also reads mp4/m4a/3gp, "matroska" also reads webm. The
# mpeg family (program streams, raw H.264/HEVC/MPEG video) is single-file like mpeg-ts.
VIDEO_DEMUXERS = ("mov", "matroska", "avi", "mpegts", "mpeg", "h264", "hevc", "mpegvideo")
AUDIO_DEMUXERS = ("wav", "mp3", "ogg", "flac", "aac")
# Single pictures, opened only so that a photo passed as a video is named as such ("is a still image").
IMAGE_DEMUXERS = ("png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
ALLOWED_DEMUXERS = VIDEO_DEMUXERS + AUDIO_DEMUXERS + IMAGE_DEMUXERS
SUPPORTED = "MP4/MOV, MKV/WebM, AVI or MPEG-TS video, or WAV, MP3, M4A, OGG, FLAC or WebM audio"

# First bytes of the list and playlist formats people meet: refused, by name, before ffmpeg opens them.
_LISTS = (
    (re.compile(rb"\s*#EXTM3U"), "an M3U/HLS playlist"),
    (re.compile(rb"\s*ffconcat\b"), "an ffmpeg concat list"),
    (re.compile(rb"\s*file\s+'"), "an ffmpeg concat list"),
    (re.compile(rb"\s*\[playlist\]", re.IGNORECASE), "a PLS playlist"),
    (re.compile(rb"\s*(<\?xml|<MPD|<smil|<asx)", re.IGNORECASE), "an XML manifest or playlist (DASH, SMIL, ASX…)"),
)
_PATTERN = re.compile(r"%0?\d*d")


def input_args(path: Path) -> list[str]:
    """ffmpeg options that open ``path`` as one local media file (a ``file:`` URL, so a name is never a protocol)."""
    return [
        "-protocol_whitelist", "file", "-format_whitelist", ",".join(ALLOWED_DEMUXERS),
        "-i", "file:" + str(path.absolute()),
    ]  # fmt: skip


def check_not_a_list(path: Path) -> None:
    """Refuse a playlist or list of files by its first bytes, before ffmpeg is asked anything about it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256).removeprefix(b"\xef\xbb\xbf")
    except OSError:
        return  # ffmpeg's own open reports it
    for pattern, what in _LISTS:
        if pattern.match(head):
            raise InputError(
                f"{path} is {what}, which points at other files or streams; cmet opens only a media file itself "
                f"({SUPPORTED})."
            )


def refusal(path: Path, stderr: str) -> InputError | None:
    """The sentence for a file ffmpeg refused to open under ``input_args``; None if it failed for another reason."""
    if "not on whitelist" not in stderr:
        return None
    if _PATTERN.search(path.name):
        return InputError(
            f"{path} is named as an image-sequence pattern, which points at other files; rename it "
            f"(no %d in the name) or pass a {SUPPORTED} file."
        )
    if "Protocol" in stderr:
        return InputError(f"{path} refers to other files or network addresses; pass a self-contained {SUPPORTED} file.")
    return InputError(
        f"{path} is not a readable video or audio file (its format is not one cmet opens: {SUPPORTED}); "
        "re-export it as MP4 (H.264) or WAV."
    )
