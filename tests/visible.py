"""Reading what a user sees in cmet's output: PSNR per frame, a grid's cells, a face's lip-corner lift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmet.face.landmarks import track
from cmet.face.measures import expression_measures
from cmet.grid import GridLayout
from cmet.presets import is_basic


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of ``[N, H, W, 3]`` stacks (or one frame each, giving one value)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = (diff**2).reshape(-1, *diff.shape[-3:]).mean(axis=(1, 2, 3))
    return 10 * np.log10(255**2 / np.maximum(mse, 1e-10))


def grid_layout(emotions: Sequence[str]) -> GridLayout:
    """The layout ``EmotionEditor.compare`` gives these emotions (the original first)."""
    return GridLayout.build(["original", *emotions], basic=[is_basic(n) for n in ["neutral", *emotions]])


def grid_pictures(grid: np.ndarray, emotions: Sequence[str], source_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Each cell's picture ``[N, h, w, 3]`` in input order (the original first): cells fill the grid, the picture
    sits under its caption band and keeps the source's aspect ratio (to even pixels)."""
    layout = grid_layout(emotions)
    rows = -(-len(layout.order) // layout.columns)
    width, pitch = grid.shape[2] // layout.columns, grid.shape[1] // rows
    height = int(width * source_shape[-3] / source_shape[-2]) // 2 * 2
    pictures: list[np.ndarray] = [np.empty(0)] * len(layout.order)
    for slot, i in enumerate(layout.order):
        r, c = divmod(slot, layout.columns)
        pictures[i] = grid[:, (r + 1) * pitch - height : (r + 1) * pitch, c * width : (c + 1) * width]
    return pictures


def corner_lift(frames: Sequence[np.ndarray]) -> float:
    """Mean lip-corner height of the face in ``frames`` (RGB), re-tracked, in inter-ocular distances."""
    return float(np.nanmean(expression_measures(track(list(frames)).canonical())["corner_lift"]))
