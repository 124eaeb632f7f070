"""The labelled side-by-side grid of ``compare``: one cell per emotion, basic and extended grouped.

Cells are ordered original → basic emotions → extended emotions and carry a coloured caption band
(grey for the original, blue for basic, orange for extended) so the two groups read at a glance.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from cmet.errors import InputError

_BAND = 22
_COLOURS = {"original": (90, 90, 90), "basic": (40, 90, 170), "extended": (200, 110, 20)}
_MAX_WIDTH = 1280
_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.5
MAX_EMOTIONS = 12  # cells beyond the original; each one is a full render of the video
MAX_LABEL = 32  # characters of an emotion's name


def check_emotions(names: Iterable[object]) -> None:
    """Refuse too many emotions, and names that are not short printable text, before any work is done."""
    names = list(names)
    if len(names) > MAX_EMOTIONS:
        raise InputError(f"A comparison holds at most {MAX_EMOTIONS} emotions ({len(names)} given); split it up.")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError("Every emotion needs a name (some text, such as sarcastic).")
        if len(name) > MAX_LABEL:
            raise InputError(f"Emotion names are at most {MAX_LABEL} characters; shorten {name[:MAX_LABEL]!r}….")
        if any(unicodedata.category(ch)[0] in "CZ" and ch != " " for ch in name):
            raise InputError(f"The emotion name {name!r} holds control or invisible characters; use plain text.")


def drawable(label: str, width: int) -> str:
    """``label`` as OpenCV's Hershey font can draw it (ASCII, accents dropped) and cut with "..." to ``width`` px."""
    folded = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    text = "".join(ch if ch.isprintable() else "?" for ch in folded) or "?"
    if cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0] <= width:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "...", _FONT, _SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text + "..."


@dataclass
class GridLayout:
    """Where each input stream goes in the grid and what its caption says."""

    labels: list[str]
    groups: list[str]
    order: list[int]
    columns: int

    @classmethod
    def build(cls, names: list[str], basic: list[bool]) -> GridLayout:
        """``names[0]`` is the original; the rest are emotions, ``basic[i]`` telling which group each is in."""
        groups = ["original"] + ["basic" if b else "extended" for b in basic[1:]]
        rank = {"original": 0, "basic": 1, "extended": 2}
        order = sorted(range(len(names)), key=lambda i: (rank[groups[i]], i))
        columns = math.ceil(math.sqrt(len(names)))
        labels = [names[i] if i == 0 else f"{groups[i]}: {names[i]}" for i in range(len(names))]
        return cls(labels=labels, groups=groups, order=order, columns=columns)

    def compose(self, streams: list[np.ndarray]) -> np.ndarray:
        """``streams[i]`` is ``[N,H,W,3]`` for input ``i``; returns ``[N, grid_h, grid_w, 3]``."""
        n, h, w, _ = streams[0].shape
        scale = min(1.0, _MAX_WIDTH / (w * self.columns))
        cw, ch = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
        rows = math.ceil(len(self.order) / self.columns)
        out = np.zeros((n, rows * (ch + _BAND), self.columns * cw, 3), np.uint8)
        for slot, i in enumerate(self.order):
            r, c = divmod(slot, self.columns)
            y, x = r * (ch + _BAND), c * cw
            out[:, y : y + _BAND, x : x + cw] = _COLOURS[self.groups[i]]
            caption = np.ascontiguousarray(out[0, y : y + _BAND, x : x + cw])
            label = drawable(self.labels[i], cw - 12)
            cv2.putText(caption, label, (6, _BAND - 7), _FONT, _SCALE, (255, 255, 255), 1, cv2.LINE_AA)
            out[:, y : y + _BAND, x : x + cw] = caption
            for k in range(n):
                out[k, y + _BAND : y + _BAND + ch, x : x + cw] = cv2.resize(
                    streams[i][k], (cw, ch), interpolation=cv2.INTER_AREA
                )
        return out
