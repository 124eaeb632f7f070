"""tools/eval_portraits.py: framing arbitrary portraits like the examples, and counting classifier rises."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from eval_portraits import FACE_SHARE, SIDE, frame_portrait, rise_table  # noqa: E402

from cmet.evaluation import EmotionResult  # noqa: E402
from cmet.face.landmarks import track  # noqa: E402


def test_a_portrait_is_framed_around_its_face_whatever_its_size_and_place():
    from skimage.data import astronaut

    face = astronaut()[0:330, 100:460]  # her head off-centre, near the top edge
    photo = cv2.copyMakeBorder(face, 0, 400, 0, 300, cv2.BORDER_CONSTANT, value=(200, 200, 200))
    framed = frame_portrait(photo)
    assert framed.shape == (SIDE, SIDE, 3)
    points = track([framed]).landmarks[0, :, :2]
    centre = (points.min(0) + points.max(0)) / 2
    height = np.ptp(points, axis=0).max()
    assert np.all(np.abs(centre - SIDE / 2) < 0.05 * SIDE)
    assert abs(height / SIDE - FACE_SHARE) < 0.05


def test_a_photo_without_a_face_is_skipped():
    assert frame_portrait(np.full((300, 300, 3), 128, np.uint8)) is None


def _result(emotion: str, before: float, after: float) -> EmotionResult:
    return EmotionResult("v.mp4", emotion, 1.0, {}, {}, classifier_before=before, classifier_after=after)


def test_the_rise_table_counts_the_faces_where_the_target_rises():
    table = rise_table([_result("sad", 0.10, 0.30), _result("sad", 0.20, 0.205), _result("sad", 0.5, 0.3)])
    assert "| sad | 1 | 1 of 3 | 0.27 → 0.27 |" in table
