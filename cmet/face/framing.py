"""Where the official engine's 256² crop sits in each frame: the box framing EDTalk's training videos were cut with.

The release crops videos with a face-detector box (its ``crop_video.py``): the detector's boxes of every frame
of a clip are joined into one box, grown by 10% of its size on each side and made square (the larger side
wins), and that fixed square is scaled to 256². MEAD, which EDTalk was trained on, was cut this way, and so
were the release's sample clip and identity frames. The crop keeps the head's roll and moves with nothing:
the face moves inside it as the head moves.

We have no detector box, so each frame gets a stand-in computed from the face track's similarity pose:
a square of ``DETECTOR_HALF`` canonical units around the canonical point ``DETECTOR_CENTRE``. Those three
numbers were fitted so that the release's sample clip ``W009_038.mp4`` (already cropped this way) is
cropped to itself; ``tools/fit_framing.py`` re-derives them. Because the stand-in comes from the
expression-proof pose, speech does not move it.

One fixed box per clip reproduces the release (the face moves a few pixels inside its crops) and does not
move at all for a still head; a box that follows the head cannot match the release's crops and adds its
own jitter. A head that wanders far would make one box much larger than the face, showing the face smaller
than EDTalk was trained on; so a clip is split, as the release does, where the stand-in box overlaps the
first box of its stretch too little, and each stretch gets its own box. Where the square leaves the picture
the release cuts it to the frame and squashes the face when scaling; we keep it square and repeat the border.
"""

from __future__ import annotations

import numpy as np

from cmet.face.canonical import apply_similarity, invert_similarity

CROP_SIZE = 256
INCREASE = 0.1  # the release's ``increase_area``: the joined box grows by 10% of its size on each side
# Detector stand-in: centre (canonical units: origin between the eyes, inter-ocular distance 1, y down) and
# half side, fitted on the release's W009_038.mp4 (tools/fit_framing.py).
DETECTOR_CENTRE = (-0.0105, 0.3422)
DETECTOR_HALF = 1.4290
# A stretch ends where a frame's stand-in box overlaps the stretch's first box by less than this (the release
# uses 0.25 with real detector boxes, for MEAD's steady heads; stricter keeps the joined box within ~10% of
# the face's own box when a head wanders).
MIN_OVERLAP = 0.8


def detector_boxes(track_transforms: np.ndarray) -> np.ndarray:
    """``[T, 4]`` stand-in detector boxes ``(x0, y0, x1, y1)`` in image pixels from the track's image → canonical
    similarities (NaN rows stay NaN)."""
    to_image = invert_similarity(np.asarray(track_transforms, dtype=np.float64))
    centre = apply_similarity(to_image, np.array([DETECTOR_CENTRE], dtype=np.float64))[:, 0]
    half = DETECTOR_HALF * np.hypot(to_image[:, 0, 0], to_image[:, 1, 0])
    return np.column_stack([centre - half[:, None], centre + half[:, None]])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def stretches(boxes: np.ndarray, min_overlap: float = MIN_OVERLAP) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of frames with a box, each ending where a box overlaps the run's first too little."""
    runs: list[tuple[int, int]] = []
    start = None
    for t, box in enumerate(boxes):
        if not np.isfinite(box).all():
            if start is not None:
                runs.append((start, t))
            start = None
        elif start is None:
            start = t
        elif overlap(boxes[start], box) < min_overlap:
            runs.append((start, t))
            start = t
    if start is not None:
        runs.append((start, len(boxes)))
    return runs


def square_box(box: np.ndarray, increase: float = INCREASE) -> tuple[float, float, float]:
    """The release's enlargement of a joined box: ``(left, top, side)`` of the square grown by ``increase`` of
    the larger side on each side, around the box's centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = (1.0 + 2.0 * increase) * max(x1 - x0, y1 - y0)
    return 0.5 * (x0 + x1 - side), 0.5 * (y0 + y1 - side), side


def square_transform(left: float, top: float, side: float, size: int = CROP_SIZE) -> np.ndarray:
    """``[2, 3]`` image → crop matrix (OpenCV pixel centres) that scales the square ``side`` at ``(left, top)``
    (pixel edges, as the landmarks are) onto ``size``², as ``ffmpeg crop,scale`` does."""
    k = size / side
    return np.array([[k, 0.0, k * (0.5 - left) - 0.5], [0.0, k, k * (0.5 - top) - 0.5]], dtype=np.float64)


def box_transforms(track_transforms: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Image → crop similarities ``[T, 2, 3]`` of the box framing: one joined, enlarged square per stretch of the
    track (frames without a face stay NaN)."""
    boxes = detector_boxes(track_transforms)
    out = np.full((len(boxes), 2, 3), np.nan)
    for start, stop in stretches(boxes):
        joined = np.concatenate([boxes[start:stop, :2].min(0), boxes[start:stop, 2:].max(0)])
        out[start:stop] = square_transform(*square_box(joined), size=size)
    return out
