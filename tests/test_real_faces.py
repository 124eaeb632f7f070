"""The rig against real faces: the measures mean what they say, the committed calibration is what the real-face
table gives, and every fitted prototype moves its emotion's key measures the way real faces do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmet.face import regions as R
from cmet.face.au_rig import CALIBRATION_FILE, EMFACS_PROTOTYPES, PROTOTYPES, build_rig, default_rig
from cmet.face.calibration import Calibration, calibrate
from cmet.face.canonical import canonical_template
from cmet.face.measures import KEY_MEASURES, MEASURES, expression_measures

REAL = CALIBRATION_FILE.parent


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    return canonical_template().astype(np.float64)


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads((REAL / "expressions.json").read_text())


def _change(template: np.ndarray, moved: np.ndarray) -> dict[str, float]:
    before, after = expression_measures(template), expression_measures(moved)
    return {k: float(after[k] - before[k]) for k in MEASURES}


def test_measures_read_what_their_names_say(template):
    up = np.array([0.0, -0.05])
    corners = template.copy()
    corners[list(R.LIP_CORNERS)] += up
    assert _change(template, corners)["corner_lift"] == pytest.approx(0.05)
    brows = template.copy()
    brows[list(R.RIGHT_BROW_INNER + R.LEFT_BROW_INNER)] += up
    change = _change(template, brows)
    assert change["inner_brow_raise"] == pytest.approx(0.05) and change["brow_raise"] > 0.01
    wider = template.copy()
    wider[61, 0] -= 0.02
    wider[291, 0] += 0.02
    assert _change(template, wider)["mouth_width"] == pytest.approx(0.04, abs=1e-3)
    lids = template.copy()
    lids[[159, 386]] += up
    assert _change(template, lids)["eye_open"] == pytest.approx(0.05)
    assert set(_change(template, template).values()) == {0.0}


def test_real_table_is_measured_within_person_where_people_allow(table):
    assert table["_about"]["photos_used"] > 5000 and table["neutral"]["photos"] > 2000
    for emotion in ("happy", "surprised", "angry"):
        assert table[emotion]["method"] == "same person" and table[emotion]["people"] >= 50
    happy = table["happy"]["measures"]
    assert happy["mouth_width"]["mean"] > 10 * happy["mouth_width"]["se"] > 0  # what everyone sees in a smile
    assert happy["corner_lift"]["mean"] > 10 * happy["corner_lift"]["se"]
    angry = table["angry"]["measures"]
    assert angry["inner_brow_raise"]["mean"] < -2 * angry["inner_brow_raise"]["se"]  # brows come down
    surprised = table["surprised"]["measures"]
    assert surprised["brow_raise"]["mean"] > 2 * surprised["brow_raise"]["se"]


def test_committed_calibration_is_what_the_table_gives(template, table):
    """Re-fit from the committed table and fields: the shipped prototypes are reproducible, not hand-set."""
    with np.load(REAL / "fields.npz") as data:
        fields = {k: data[k] for k in data.files}
    rig = build_rig()
    committed = Calibration.load(CALIBRATION_FILE)
    fitted = calibrate(rig.names, rig.bases, template, table, fields, EMFACS_PROTOTYPES, transfer=committed.transfer)
    assert fitted.sources == committed.sources
    for name, apex in committed.apex.items():
        assert fitted.apex[name] == pytest.approx(apex, abs=2e-3)
    for emotion, units in committed.prototypes.items():
        for unit in set(units) | set(fitted.prototypes[emotion]):
            assert fitted.prototypes[emotion].get(unit, 0.0) == pytest.approx(units.get(unit, 0.0), abs=2e-3)


@pytest.mark.parametrize("emotion", ["happy", "surprised", "angry", "sad", "fear", "disgusted"])
def test_prototypes_move_key_measures_like_real_faces(emotion, template, table):
    """Decoded at strength 1 and read through the rendering chain's measured share, each prototype reaches ≥ 80%
    of the real key measures with the right sign where the photos are reliable (same-person pairs, significant);
    fear and disgust rest on a few unpaired photos and FACS, so only their direction is held to the photos."""
    rig = default_rig()
    change = _change(template, template + rig.decode(PROTOTYPES[emotion]))
    shown = Calibration.load(CALIBRATION_FILE).transfer.get(emotion, {})  # the share FaceMesh reads of a render
    real = table[emotion]["measures"]
    for name in KEY_MEASURES[emotion]:
        mean, se = real[name]["mean"], real[name]["se"]
        if abs(mean) < 2 * se:
            continue  # not a reliable yardstick
        fraction = change[name] * shown.get(name, 1.0) / mean
        reliable = table[emotion]["method"] == "same person"  # fear and disgust: a few unpaired photos only
        assert fraction >= 0.8 if reliable else fraction > 0, (emotion, name, change[name], mean)
        assert fraction <= 1.6, (emotion, name, change[name], mean)
    assert abs(change["mouth_open"]) < 0.03, "lips must stay the speaker's: no prototype opens the mouth"


def test_prototypes_keep_the_face_outline_and_are_distinct(template):
    rig = default_rig()
    assert not PROTOTYPES["neutral"].any()
    shapes = {e: rig.decode(p) for e, p in PROTOTYPES.items() if e != "neutral"}
    for emotion, shape in shapes.items():
        assert np.abs(shape[list(R.RIM)]).max() < 1e-6, emotion
        assert 0.01 < np.abs(shape).max() < 0.2, emotion
    names = list(shapes)
    flat = np.stack([shapes[n].reshape(-1) for n in names])
    gaps = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(len(names))
    assert gaps.min() > 0.03
