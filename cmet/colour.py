"""Colour signalling kept from input to output: the YUV matrix, range, primaries and transfer of a video.

Frames are decoded to RGB by ffmpeg, which reads the input's tags (a BT.709 or full-range "JPEG-style" video
decodes to the right RGB). The writer pipes them out as BT.601 limited-range YUV (OpenCV's fast conversion);
when the input was BT.709 or full range, ffmpeg's ``colorspace`` filter re-expresses that in the input's matrix
and range (matrix only: 0.3 ms/frame at 512², in the encoder's process), and the output is tagged the same way,
so players show the colours the input had. Tags an 8-bit SDR output cannot honestly carry (BT.2020, HDR
transfers) are not copied; such a matrix is written, and tagged, as BT.601.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEPT = ("bt709", "bt470bg", "smpte170m", "bt470m")  # SDR tags whose meaning survives an 8-bit RGB round trip


@dataclass(frozen=True)
class Colour:
    """How a video's pixels are to be read; ``None`` where the file does not say."""

    full_range: bool = False
    matrix: str | None = None
    primaries: str | None = None
    transfer: str | None = None

    @classmethod
    def parse(cls, pixel_format: str) -> Colour:
        """From ``ffmpeg -i``'s pixel-format field: ``yuv420p(tv, bt709, progressive)``,
        ``yuvj420p(pc, bt470bg/unknown/unknown)``, ``yuv420p``…"""
        inside = re.search(r"\((.*)\)", pixel_format)
        items = [item.strip() for item in inside.group(1).split(",")] if inside else []
        full = pixel_format.startswith("yuvj") or "pc" in items
        for item in items:
            if item in ("tv", "pc", "progressive") or " " in item or not re.fullmatch(r"[\w/-]+", item):
                continue
            names = item.split("/")
            matrix, primaries, transfer = (names * 3)[:3] if len(names) == 1 else (names + [None] * 3)[:3]
            return cls(full, _known(matrix), _known(primaries), _known(transfer))
        return cls(full)

    def filters(self) -> str:
        """ffmpeg filters that turn the writer's BT.601 limited-range YUV into this matrix and range, and tag it."""
        bt709 = self.matrix == "bt709"
        full = "pc" if self.full_range else "tv"
        chain = []
        if bt709 or self.full_range:
            space = "bt709" if bt709 else "bt601-6-625"
            chain.append(f"colorspace=all={space}:iall=bt601-6-625:range={full}:irange=tv:fast=1")
        # A matrix the output cannot keep (BT.2020) was written as BT.601: say so, or HD players would assume 709.
        matrix = self.matrix if self.matrix in _KEPT or self.matrix is None else "bt470bg"
        tags = [f"range={full}"]
        tags += [f"{key}={value}" for key, value in
                 (("colorspace", matrix), ("color_primaries", self.primaries), ("color_trc", self.transfer))
                 if value in _KEPT]  # fmt: skip
        return ",".join([*chain, "setparams=" + ":".join(tags)])


def _known(name: str | None) -> str | None:
    return None if name in (None, "unknown", "reserved", "unspecified") else name
