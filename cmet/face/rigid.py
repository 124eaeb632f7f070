"""Rigid parts of a face that the lite warp must not bend: eyeglass frames.

A warp fitted to skin landmarks bends whatever lies on that skin; glasses frames are the worst case,
since FaceMesh often puts the brows right on the top rim. Glasses are found once per clip, in
canonical face coordinates (pose removed), on the per-pixel median of a few frames: there the frames
are still and sharp while anything that moves blurs. A pair of glasses shows as a bar across the
nose bridge *and* a rim under each eye, which neither brows, lashes nor eye bags give together. The
frames are then traced as one smooth closed curve round each eye (so wrinkles seen through the lenses
and the eye openings are left to move), plus the bridge and the full width of thick top bars, and
turned into canonical anchor points that the warp keeps still. Landmarks on a frame are left out of
the warp, and landmarks near one move at most half their distance to it, so the skin in between
stretches or squeezes instead of folding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes, median_filter

from cmet.face.canonical import apply_similarity

SCALE = 100  # canonical patch pixels per inter-ocular distance
BOX = (-1.2, -0.8, 1.2, 0.8)  # canonical x0, y0, x1, y1 of the patch: brows to nose tip, ear to ear
SAMPLES = 8  # frames whose median is examined
SAMPLE_EVERY = 6  # source frames between samples
BACKGROUND = 25  # px: median window that a frame bar is thin against
MIN_SCORE = 18.0  # colour distance: weaker bridge/under-eye bar evidence is not glasses (faces without: ≤ 10)
RAYS = 72  # per eye
RIM_SCORE = 18.0  # colour distance from the neighbourhood below which a ray finds no rim
OUTLINE_STEP = 3  # px of the patch (0.03 inter-ocular distances) between anchors along the frames' outline
INNER_STEP = 4  # px between anchors inside (a still outline already holds most of what it encloses)
SKIN_CONTRAST = 100.0  # colour distance from the median skin colour that marks a frame pixel
GROW = 0.3  # canonical units: how far past the traced rims a frame may reach
EDGE = 0.02  # canonical units added round the traced frames
REACH = 0.03  # canonical units: landmarks this close to a frame are held by it, not moved
APPROACH = 0.5  # a landmark moves at most this share of its distance to a frame
EYE_CENTRES = ((-0.5, 0.0), (0.5, 0.0))  # canonical: the origin is midway, 1 apart


@dataclass(frozen=True)
class RigidParts:
    """What stays still in one clip: a canonical patch mask, the distance from it, and anchor points on it."""

    mask: np.ndarray  # [h, w] bool over BOX at SCALE px per unit
    clearance: np.ndarray  # [h, w] float32: canonical distance to the nearest masked pixel
    anchors: np.ndarray  # [M, 2] float64 canonical points on the mask
    enclosed_clearance: np.ndarray  # [h, w] float32: canonical distance to the frames or the lenses they enclose

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> RigidParts:
        """Parts from a patch mask: anchors along its outline (where a bend would show) every OUTLINE_STEP patch
        pixels, and a sparser grid inside."""
        clearance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5) / SCALE
        enclosed = cv2.distanceTransform((~binary_fill_holes(mask)).astype(np.uint8), cv2.DIST_L2, 5) / SCALE
        rows, cols = np.nonzero(mask & _grid(mask.shape))
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        outline = np.concatenate([c[::OUTLINE_STEP, 0] for c in contours] or [np.zeros((0, 2), np.int32)])
        pixels = np.concatenate([np.stack([cols, rows], -1), outline])
        anchors = (pixels / SCALE + np.array(BOX[:2])).astype(np.float64)
        return cls(
            mask=mask,
            clearance=clearance.astype(np.float32),
            anchors=anchors,
            enclosed_clearance=enclosed.astype(np.float32),
        )

    def distance(self, points: np.ndarray) -> np.ndarray:
        """``[..., P]`` canonical distance of ``points [..., P, 2]`` to the nearest rigid part (inf off the patch)."""
        col, row = _to_patch(np.asarray(points, dtype=np.float64))
        col, row = np.round(col).astype(np.int64), np.round(row).astype(np.int64)
        inside = (col >= 0) & (col < self.mask.shape[1]) & (row >= 0) & (row < self.mask.shape[0])
        found = np.full(col.shape, np.inf)
        found[inside] = self.clearance[row[inside], col[inside]]
        return found

    def covers(self, points: np.ndarray) -> np.ndarray:
        """``[..., P]`` bool: canonical ``points [..., P, 2]`` lie on (or within REACH of) a rigid part."""
        return self.distance(points) < REACH

    def limit(self, points: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """``displacement [..., P, 2]`` of canonical ``points [..., P, 2]``, each shortened to at most APPROACH
        times its point's distance to a rigid part: the skin between a still frame and a moving point then
        stretches or squeezes by a bounded factor instead of folding (which the warp's fold guard would have to
        damp, taking the edit with it)."""
        displacement = np.asarray(displacement, dtype=np.float64)
        allowed = APPROACH * self.distance(points)
        length = np.linalg.norm(displacement, axis=-1)
        return displacement * np.minimum(1.0, allowed / np.maximum(length, 1e-12))[..., None]

    def image_anchors(self, transforms: np.ndarray) -> np.ndarray:
        """``[N, M, 2]`` anchor pixels in each frame, through the inverse of its ``[N, 2, 3]`` image→canonical map."""
        linear = np.linalg.inv(np.asarray(transforms, dtype=np.float64)[..., :2, :2])
        shift = -np.matmul(linear, np.asarray(transforms, dtype=np.float64)[..., :, 2:])
        return apply_similarity(np.concatenate([linear, shift], -1), self.anchors)


SAMPLED = tuple(range(0, SAMPLES * SAMPLE_EVERY, SAMPLE_EVERY))  # the source frames looked at


def detect_in_video(
    video: str | Path, transforms: np.ndarray, valid: np.ndarray, kept: dict[int, np.ndarray] | None = None
) -> RigidParts | None:
    """Glasses frames of the face tracked in ``video`` (``transforms [T, 2, 3]`` image→canonical), or None.

    ``kept``: the :data:`SAMPLED` frames, when the tracker kept them; otherwise they are decoded again."""
    from cmet.media import iter_frames

    wanted = [index for index in SAMPLED if index < len(valid) and valid[index]]
    if kept is None or any(index not in kept for index in wanted):
        reader = iter_frames(video, count=min(len(valid), SAMPLES * SAMPLE_EVERY))
        try:
            kept = {index: frame for index, frame in enumerate(reader) if index in wanted}
        finally:
            reader.close()
    frames = [kept[index] for index in wanted if index in kept]
    poses = [transforms[index] for index in wanted if index in kept]
    return detect(frames, np.asarray(poses)) if frames else None


def detect(frames: list[np.ndarray], transforms: np.ndarray) -> RigidParts | None:
    """Glasses frames seen in RGB ``frames`` with image→canonical ``transforms [N, 2, 3]``, or None without."""
    patch = np.median(np.stack([canonical_patch(f, t) for f, t in zip(frames, transforms)]), 0).astype(np.uint8)
    if glasses_score(patch) < MIN_SCORE:
        return None
    return RigidParts.from_mask(frame_mask(patch))


def canonical_patch(frame: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The face region of ``frame`` resampled in canonical coordinates (BOX at SCALE px per unit)."""
    to_patch = np.array([[SCALE, 0, -BOX[0] * SCALE], [0, SCALE, -BOX[1] * SCALE], [0, 0, 1]], dtype=np.float64)
    matrix = (to_patch @ np.vstack([np.asarray(transform, dtype=np.float64), [0, 0, 1]]))[:2]
    size = (round((BOX[2] - BOX[0]) * SCALE), round((BOX[3] - BOX[1]) * SCALE))
    return cv2.warpAffine(frame, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def glasses_score(patch: np.ndarray) -> float:
    """Grey-level contrast of the weaker of two bars: across the nose bridge, and under the eyes (mean of both)."""
    bridge = _bar(patch, (-0.12, -0.3, 0.12, 0.12))
    under = np.mean([_bar(patch, (x - 0.2, 0.2, x + 0.2, 0.6)) for x, _ in EYE_CENTRES])
    return float(min(bridge, under))


def frame_mask(patch: np.ndarray) -> np.ndarray:
    """``[h, w]`` bool: the glasses frames in a canonical ``patch`` (rims traced by rays, plus the bridge)."""
    response = _thin_structures(patch)
    mask = np.zeros(response.shape, dtype=np.uint8)
    for centre in EYE_CENTRES:
        _draw_rim(mask, response, centre)
    _draw_bridge(mask, patch)
    mask = _grow_into_contrast(mask, patch)
    return cv2.dilate(mask, _disc(EDGE * SCALE)).astype(bool)  # the frames' edges, where a bend shows, too


def _draw_bridge(mask: np.ndarray, patch: np.ndarray, half: float = 0.05, strips: int = 12) -> None:
    """Mark the bridge: in each narrow column strip between the lenses, the strongest horizontal bar (its row
    median-filtered across strips, since a bridge is one smooth piece) ± ``half``, which takes in a bridge
    whose strongest contrast is one of its edges or its shadow."""
    reach = round(half * SCALE)
    (left, right), (top, bottom) = (np.round(v).astype(int) for v in _to_patch(np.array([[-0.24, -0.3], [0.24, 0.12]])))
    edges = np.linspace(left, right, strips + 1).astype(int)
    centres = [top + int(_bar_profile(patch, a, b, top, bottom, half).argmax()) for a, b in zip(edges[:-1], edges[1:])]
    for row, a, b in zip(median_filter(np.array(centres), size=5, mode="nearest"), edges[:-1], edges[1:]):
        mask[row - reach : row + reach + 1, a:b] = 1


def _grow_into_contrast(traced: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """``traced`` (uint8) plus what touches it within GROW and stands out from the skin, above the eye openings:
    the full width of thick top bars and their corners, which rays through the middle of a rim can miss. Below
    the eyes rims are thin and the rays find them; growing there would follow nose and cheek shadows."""
    left, right = _to_patch(np.array([[-0.9, 0.0], [0.9, 0.0]]))[0].astype(int)
    top, bottom = _to_patch(np.array([[0.0, -0.6], [0.0, 0.7]]))[1].astype(int)
    skin = np.median(patch[top:bottom, left:right].reshape(-1, 3), 0)
    distinct = np.linalg.norm(patch.astype(np.float32) - skin, axis=-1) > SKIN_CONTRAST
    near = cv2.dilate(traced, _disc(GROW * SCALE)).astype(bool)
    near[int(_to_patch(np.array([0.0, 0.0]))[1]) :] = False
    openings = np.zeros_like(traced)
    for x, y in EYE_CENTRES:
        (col, row), axes = _to_patch(np.array([x, y])), (round(0.32 * SCALE), round(0.14 * SCALE))
        cv2.ellipse(openings, (round(float(col)), round(float(row))), axes, 0, 0, 360, 1, -1)
    candidate = ((distinct & near & ~openings.astype(bool)) | traced.astype(bool)).astype(np.uint8)
    _, labels = cv2.connectedComponents(candidate)
    return np.isin(labels, np.unique(labels[traced.astype(bool)])).astype(np.uint8) * candidate


def _thin_structures(patch: np.ndarray) -> np.ndarray:
    """``[h, w]`` float32 colour distance of each pixel from its neighbourhood median: high on bars and rims."""
    background = cv2.medianBlur(patch, BACKGROUND).astype(np.float32)
    distance = np.linalg.norm(patch.astype(np.float32) - background, axis=-1)
    return cv2.GaussianBlur(distance, (0, 0), 1.0)


def _draw_rim(mask: np.ndarray, response: np.ndarray, centre: tuple[float, float]) -> None:
    """Trace the rim round one eye as the smooth closed curve of strongest thin structure between the eye
    opening and the lens edge, widened where the response stays above half its peak; weak stretches (no
    rim there) are left out."""
    angles = np.linspace(0, 2 * math.pi, RAYS, endpoint=False)
    spacing = 0.5 / SCALE  # canonical units between samples along a ray
    radii = np.arange(0.0, 0.75, spacing)
    direction = np.stack([np.cos(angles), np.sin(angles)], -1)
    start = 1 / np.hypot(direction[:, 0] / 0.32, direction[:, 1] / 0.14)  # just outside the eye opening
    stop = 1 / np.hypot(direction[:, 0] / 0.72, direction[:, 1] / 0.6)  # beyond the widest lens
    points = np.asarray(centre) + radii[None, :, None] * direction[:, None, :]
    col, row = _to_patch(points)
    profile = cv2.remap(response, col.astype(np.float32), row.astype(np.float32), cv2.INTER_LINEAR)
    profile[(radii[None] < start[:, None]) | (radii[None] > stop[:, None])] = 0
    path = _smooth_path(profile)
    strength = profile[np.arange(RAYS), path]
    above = profile >= 0.5 * strength[:, None]
    inner, outer = path.copy(), path.copy()
    widest = round(0.05 / spacing)  # samples each side: no rim is wider than 0.1 inter-ocular distances
    for ray in range(RAYS):
        while path[ray] - inner[ray] < widest and inner[ray] > 0 and above[ray, inner[ray] - 1]:
            inner[ray] -= 1
        while outer[ray] - path[ray] < widest and outer[ray] < len(radii) - 1 and above[ray, outer[ray] + 1]:
            outer[ray] += 1
    clear = strength >= RIM_SCORE
    for ray in range(RAYS):
        after = (ray + 1) % RAYS
        if clear[ray] and clear[after]:
            corners = [(ray, inner[ray]), (after, inner[after]), (after, outer[after]), (ray, outer[ray])]
            quad = np.array([[col[r, i], row[r, i]] for r, i in corners])
            cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)


def _smooth_path(profile: np.ndarray, step: int = 2) -> np.ndarray:
    """``[rays]`` bin per ray maximising the summed ``profile [rays, bins]`` while moving at most ``step`` bins
    from ray to ray (dynamic programming over two laps, the second one kept, so the curve closes smoothly)."""
    rays, bins = profile.shape
    score = profile[0].copy()
    back = np.zeros((2 * rays, bins), dtype=np.int64)
    index = np.arange(bins)
    for lap_ray in range(1, 2 * rays):
        shifted = np.stack([np.roll(score, s) if s else score for s in range(-step, step + 1)])
        origin = index[None] - np.arange(-step, step + 1)[:, None]
        shifted[(origin < 0) | (origin >= bins)] = -np.inf
        best = shifted.argmax(0)
        back[lap_ray] = origin[best, index]
        score = shifted[best, index] + profile[lap_ray % rays]
    path = np.empty(2 * rays, dtype=np.int64)
    path[-1] = int(score.argmax())
    for lap_ray in range(2 * rays - 1, 0, -1):
        path[lap_ray - 1] = back[lap_ray, path[lap_ray]]
    return path[rays:]


def _bar(patch: np.ndarray, box: tuple[float, float, float, float], half: float = 0.05) -> float:
    """Contrast (colour distance) of the strongest horizontal bar in canonical ``box`` that spans its whole width:
    the least over three column strips, at the best row."""
    (left, right), (top, bottom) = (np.round(v).astype(int) for v in _to_patch(np.array([box[:2], box[2:]])))
    strips = np.linspace(left, right, 4).astype(int)
    least = np.min([_bar_profile(patch, a, b, top, bottom, half) for a, b in zip(strips[:-1], strips[1:])], 0)
    return float(least.max())


def _bar_profile(patch: np.ndarray, left: int, right: int, top: int, bottom: int, half: float) -> np.ndarray:
    """``[bottom - top]``: how much each row of ``patch[top:bottom, left:right]`` (its mean colour) differs from
    the mean of the rows ``half`` canonical units above and below. High on a bar; a step or a slope (a shadow,
    the nose root) barely shows."""
    reach = round(half * SCALE)
    rows = patch[top - reach : bottom + reach, left:right].astype(np.float32).mean(1)
    return np.linalg.norm(rows[reach:-reach] - 0.5 * (rows[: -2 * reach] + rows[2 * reach :]), axis=-1)


def _to_patch(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patch (column, row) of canonical ``points [..., 2]``."""
    return (points[..., 0] - BOX[0]) * SCALE, (points[..., 1] - BOX[1]) * SCALE


def _grid(shape: tuple[int, ...]) -> np.ndarray:
    """``[h, w]`` bool: every INNER_STEP-th pixel in both directions."""
    rows, cols = np.indices(shape[:2])
    return (rows % INNER_STEP == 0) & (cols % INNER_STEP == 0)


def _disc(radius: float) -> np.ndarray:
    size = 2 * max(round(radius), 1) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
