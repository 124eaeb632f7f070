"""The example clips are faces that talk: parted lips show a mouth, not stretched lip skin."""

from __future__ import annotations

import numpy as np
import pytest

from cmet.assets import EXAMPLES, FIRST_EXAMPLE, MOUTH_COLOUR, paint_mouth
from cmet.face import regions as R
from cmet.face.canonical import canonical_template
from cmet.face.landmarks import track
from cmet.face.measures import expression_measures


def _face_points() -> np.ndarray:
    template = canonical_template()[:, :2]
    return (template - template.min(0)) * 60 + 20  # a face about 150 pixels tall in a 200-pixel frame


def test_only_the_newly_opened_gap_is_darkened():
    still = _face_points()
    image = np.full((200, 200, 3), 200, np.uint8)
    untouched = image.copy()
    paint_mouth(image, still, still)
    assert np.array_equal(image, untouched)  # nothing opened: nothing painted
    moved = still.copy()
    moved[list(R.LIPS_INNER_LOWER[1:-1])] += (0.0, 8.0)  # the lower lip drops 8 px
    paint_mouth(image, still, moved)
    opened = np.round(moved[14] - (0.0, 3.0)).astype(int)  # just above the dropped lower lip: newly open
    assert np.abs(image[opened[1], opened[0]].astype(int) - MOUTH_COLOUR).max() < 30
    shown = np.round((still[13] + still[14]) / 2).astype(int)  # what the still already showed between its lips
    assert np.array_equal(image[shown[1], shown[0]], untouched[shown[1], shown[0]])
    changed = np.abs(image.astype(int) - untouched).max(-1) > 0
    ys, xs = np.nonzero(changed)
    mouth = np.concatenate([still[list(R.LIPS_INNER_UPPER)], moved[list(R.LIPS_INNER_LOWER)]])
    (left, top), (right, bottom) = mouth.min(0) - 4, mouth.max(0) + 4  # the soft edge
    assert len(ys) and left <= xs.min() and xs.max() <= right and top <= ys.min() and ys.max() <= bottom


def test_first_example_talks_with_visible_opening():
    clip = EXAMPLES / FIRST_EXAMPLE
    if not clip.is_file():
        pytest.skip("assets/examples is incomplete; run `python -m cmet.assets`")
    opening = expression_measures(track(clip).canonical())["mouth_open"]
    assert np.nanpercentile(opening, 95) > 0.03  # FaceMesh sees her lips part (IOD)
    assert np.nanpercentile(opening, 10) < 0.01  # and close again between words


def test_first_example_is_a_neutral_face_without_glasses():
    """The first click must show a face whose every emotion can appear: neutral to an independent classifier, and no
    frames holding its brows and lids still."""
    from cmet.assets import STILLS
    from cmet.expression_classifier import LABELS, classify
    from cmet.face.rigid import detect

    still = STILLS[FIRST_EXAMPLE]()
    probabilities = classify([still])[0]
    assert LABELS[int(np.argmax(probabilities))] == "neutral" and probabilities[LABELS.index("neutral")] > 0.5
    assert detect([still], track([still]).transforms) is None


def test_every_example_clip_has_its_portrait():
    """``python -m cmet.assets`` can rebuild each clip: its portrait loads (the first from assets/portraits, with
    its licence note beside it)."""
    from cmet.assets import PORTRAITS, STILLS

    assert {p.name for p in EXAMPLES.glob("*.mp4")} == set(STILLS)
    assert "CC BY 4.0" in (PORTRAITS / "README.md").read_text()
    for name, still in STILLS.items():
        image = still()
        assert image.dtype == np.uint8 and image.shape == (320, 320, 3), name
