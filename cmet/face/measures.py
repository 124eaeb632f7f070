"""Expression measures a person reads on a face, in canonical units (inter-ocular distance 1, y down).

The same few numbers are computed on real photos (``tools/measure_real_expressions.py`` builds the real-face
table from them) and on cmet's edits (``cmet eval``), so an edit is judged against what real faces do, not
against the rig's own coefficients. Every measure is signed so that "more" is what its name says: a positive
``corner_lift`` is lip corners going up, a negative ``brow_raise`` is brows coming down.
"""

from __future__ import annotations

import numpy as np

from cmet.face import regions as R

_INNER_BROWS = R.RIGHT_BROW_INNER + R.LEFT_BROW_INNER
_ALL_BROWS = R.RIGHT_BROW_UPPER + R.RIGHT_BROW_LOWER + R.LEFT_BROW_UPPER + R.LEFT_BROW_LOWER


def _y(points: np.ndarray, indices: tuple[int, ...]) -> np.ndarray:
    return points[..., list(indices), 1].mean(-1)


def _distance(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[..., a, :2] - points[..., b, :2], axis=-1)


MEASURES: dict[str, str] = {
    "mouth_width": "distance between the outer lip corners",
    "corner_lift": "height of the lip corners (up is positive)",
    "mouth_open": "gap between the inner lips at the centre",
    "upper_lip_raise": "height of the upper lip's centre (up is positive)",
    "lip_thickness": "upper plus lower lip thickness at the centre (pressed lips are thinner)",
    "inner_brow_raise": "height of the inner brow ends (up is positive)",
    "brow_raise": "mean height of both brows (up is positive)",
    "brow_gap": "distance between the inner brow ends (drawn together is negative)",
    "eye_open": "mean upper-to-lower lid distance of both eyes",
}


def expression_measures(canonical: np.ndarray) -> dict[str, np.ndarray]:
    """``{name: [...]}`` for canonical landmarks ``[..., 478, 2]`` (see ``MEASURES``)."""
    p = np.asarray(canonical, dtype=np.float64)
    return {
        "mouth_width": _distance(p, 61, 291),
        "corner_lift": -_y(p, R.LIP_CORNERS),
        "mouth_open": p[..., 14, 1] - p[..., 13, 1],
        "upper_lip_raise": -p[..., 0, 1],
        "lip_thickness": (p[..., 13, 1] - p[..., 0, 1]) + (p[..., 17, 1] - p[..., 14, 1]),
        "inner_brow_raise": -_y(p, _INNER_BROWS),
        "brow_raise": -_y(p, _ALL_BROWS),
        "brow_gap": _distance(p, 55, 285),
        "eye_open": 0.5 * ((p[..., 145, 1] - p[..., 159, 1]) + (p[..., 374, 1] - p[..., 386, 1])),
    }


# What a person looks for to read each emotion: the measures the real-face table shows clearly and FACS names
# (happy 6+12, sad 1+4+15, surprise 1+2+5+26, anger 4+5+7+23, fear 1+2+4+5+20+26, disgust 9+10+15).
KEY_MEASURES: dict[str, tuple[str, ...]] = {
    "happy": ("mouth_width", "corner_lift"),
    "sad": ("inner_brow_raise", "eye_open"),
    "surprised": ("brow_raise", "eye_open"),
    "angry": ("inner_brow_raise", "brow_raise"),
    "fear": ("brow_raise", "eye_open"),
    "disgusted": ("upper_lip_raise", "brow_raise"),
}
