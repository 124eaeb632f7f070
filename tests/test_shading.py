"""Expression shading: nothing without an edit, happy's folds where real smiles have them and nowhere off the face,
and the committed maps as the tool writes them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cmet import media
from cmet.face import shading as S
from cmet.face.au_rig import PROTOTYPES, default_rig
from cmet.face.canonical import apply_similarity
from cmet.face.landmarks import FaceTrack, track
from cmet.lite_engine import Analysis, LiteEngine
from tests.conftest import REPO

ASTRONAUT = REPO / "assets" / "examples" / "astronaut_talking.mp4"
DATASET = Path("/tmp/fe")  # a checkout of github.com/muxspace/facial_expressions, where present
NASOLABIAL = (206, 426)  # FaceMesh points on the fold from the nose wings to beyond the mouth corners
CHEEK = (50, 280)  # over the cheekbones, which a smile lifts into the light


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, FaceTrack]:
    frame = media.read_frame(ASTRONAUT, 10)
    return frame, track([frame], smooth=False, min_valid_fraction=0.0)


@pytest.fixture(scope="module")
def shading() -> S.Shading:
    loaded = S.Shading.load(default_rig())
    assert loaded is not None, "cmet/data/real_faces/shading.npz is missing"
    return loaded


def _happy() -> np.ndarray:
    return default_rig().decode(PROTOTYPES["happy"])[None]


def test_zero_offsets_render_bit_identical_frames(face):
    frame, found = face
    engine = LiteEngine(device="cpu")
    assert engine.shading is not None
    units = len(engine.rig.names)
    analysis = Analysis(info=media.probe(ASTRONAUT), track=found, coeffs=np.zeros((1, units), np.float32))
    frames = np.repeat(frame[None], 2, 0)
    out = engine.render(frames, np.zeros(2, np.int64), analysis, np.zeros((2, units), np.float32))
    assert np.array_equal(out, frames)


def test_shares_follow_the_prototype_and_never_go_negative(shading):
    happy = _happy()
    shares = shading.shares(np.concatenate([happy, 0.5 * happy, -happy, np.zeros_like(happy)]))
    column = shading.emotions.index("happy")
    assert shares[0, column] == pytest.approx(1.0, abs=0.02) and shares[1, column] == pytest.approx(0.5, abs=0.01)
    assert np.delete(shares[:2], column, axis=1).max() < 0.02  # credited to happy, not to its overlapping neighbours
    assert np.all(shares[2:] == 0)


def test_no_share_no_change(face, shading):
    frame, found = face
    canonical = apply_similarity(found.transforms, found.landmarks[..., :2])
    for displacement in (np.zeros_like(_happy()), -_happy()):
        out = frame.copy()
        shading.apply([out], canonical, displacement, found.transforms)
        assert np.array_equal(out, frame)


def test_happy_darkens_the_nasolabial_fold_against_the_cheek_and_nothing_off_the_face(face, shading):
    frame, found = face
    grey = np.full_like(frame, 128)  # a flat picture: every change is the shading's
    canonical = apply_similarity(found.transforms, found.landmarks[..., :2])
    out = grey.copy()
    shading.apply([out], canonical, _happy(), found.transforms)
    ratio = out.astype(np.float64).mean(-1) / 128.0
    moved = found.to_image((canonical + _happy())[0], 0)

    def around(indices: tuple[int, ...]) -> float:
        return float(
            np.mean([ratio[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] for x, y in moved[[*indices]]])
        )

    fold, cheek = around(NASOLABIAL), around(CHEEK)
    assert fold < 0.95 and fold < cheek - 0.05
    changed = np.argwhere((out != grey).any(-1))
    assert len(changed)
    (x0, y0), (x1, y1) = moved.min(0), moved.max(0)
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() <= x1 + 1
    assert changed[:, 0].min() >= y0 and changed[:, 0].max() <= y1 + 1


def test_committed_maps_match_their_record():
    with np.load(S.SHADING_FILE) as data:
        meta = json.loads(str(data["meta"]))
        maps = {name: data[name] for name in meta["emotions"]}
    assert meta["grid"] == {"size": [S.SIZE, S.SIZE], "origin": list(S.ORIGIN), "cell": S.CELL}
    assert set(S.SHADED) <= set(maps)
    for emotion, count in meta["counts"].items():
        assert count["used"] == (emotion in maps) and (count["people"] >= 25) == count["used"]
    off_skin = S.skin_mask() == 0
    for values in maps.values():
        assert values.shape == (S.SIZE, S.SIZE) and values.dtype == np.float16
        assert np.all(values[off_skin] == 0) and np.abs(values).max() <= 0.4
    assert maps["happy"].min() < -0.05  # the fold is there


@pytest.mark.skipif(not (DATASET / "data" / "legend.csv").is_file(), reason="the facial_expressions photos are absent")
def test_the_tool_writes_the_committed_layout():
    """A few people's photos through the tool give a record of the committed layout, and the committed counts fit in
    what the legend offers (the whole measurement takes minutes: ``python tools/measure_expression_shading.py``)."""
    sys.path.insert(0, str(REPO / "tools"))
    from measure_expression_shading import collect, summarise
    from measure_real_expressions import read_legend

    rows = read_legend(DATASET, 0, 0)
    people = sorted({p for _, e, p in rows if e == "happy"})[:3]
    samples = collect([row for row in rows if row[2] in people])
    assert samples and all(np.isfinite(s[2][S.skin_mask() > 0]).mean() > 0.9 for s in samples)
    _, meta = summarise(samples)
    with np.load(S.SHADING_FILE) as data:
        committed = json.loads(str(data["meta"]))
    assert set(meta) == set(committed) and meta["grid"] == committed["grid"]
    assert 0 < meta["counts"]["happy"]["people"] <= 3 and not meta["counts"]["happy"]["used"]
    for emotion, count in committed["counts"].items():
        pairs = {p for _, e, p in rows if e == emotion} & {p for _, e, p in rows if e == "neutral"}
        assert count["people"] <= len(pairs)
