"""The labelled side-by-side grid of ``compare``: one cell per emotion, basic and extended grouped.

Cells are ordered original → basic emotions → extended emotions and carry a coloured caption band
(grey for the original, blue for basic, orange for extended) so the two groups read at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_BAND = 22
_COLOURS = {"original": (90, 90, 90), "basic": (40, 90, 170), "extended": (200, 110, 20)}
_MAX_WIDTH = 1280


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
            cv2.putText(
                caption, self.labels[i], (6, _BAND - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
            out[:, y : y + _BAND, x : x + cw] = caption
            for k in range(n):
                out[k, y + _BAND : y + _BAND + ch, x : x + cw] = cv2.resize(
                    streams[i][k], (cw, ch), interpolation=cv2.INTER_AREA
                )
        return out
