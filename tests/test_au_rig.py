"""The action-unit rig: bases that do what their names say, exact round trips, distinct emotion prototypes.

Basis shapes are checked on the rig as written (EMFACS apexes, ``build_rig``); the shipped rig scales each
apex to real faces (``tests/test_real_faces.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from cmet.face import regions as R
from cmet.face.au_rig import (
    AU_NAMES,
    EMFACS_PROTOTYPES,
    PROTOTYPES,
    AURig,
    build_rig,
    default_rig,
    face_mesh,
    face_mesh_edges,
)
from cmet.face.canonical import canonical_template


@pytest.fixture(scope="module")
def rig() -> AURig:
    return build_rig()


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    return canonical_template().astype(np.float64)


def _basis(rig: AURig, name: str) -> np.ndarray:
    return rig.bases[rig.names.index(name)]


def _coeffs(rig: AURig, **units: float) -> np.ndarray:
    coeffs = np.zeros(len(rig.names))
    for name, value in units.items():
        coeffs[rig.names.index(name)] = value
    return coeffs


def test_bases_are_finite_and_keep_the_outline_still(rig):
    assert rig.names == list(AU_NAMES) and 10 <= len(rig.names) <= 12
    assert rig.bases.shape == (len(rig.names), 478, 2) and np.isfinite(rig.bases).all()
    for name, basis in zip(rig.names, rig.bases):
        assert np.abs(basis[list(R.RIM)]).max() < 1e-9, name
        assert np.abs(basis[468:]).max() == 0.0, name  # irises follow gaze, not expression
        assert 0.02 <= np.abs(basis).max() <= 0.2, name  # a strong but plausible apex, in inter-ocular units


def test_bases_move_what_their_names_say(rig):
    up = -1.0  # canonical y points down
    smile = _basis(rig, "AU12")
    assert smile[61, 1] * up > 0.07 and smile[291, 1] * up > 0.07  # both corners up ~0.08 IOD
    assert smile[61, 0] < 0 < smile[291, 0]  # and outwards
    one_sided = _basis(rig, "R12")
    assert one_sided[61, 1] * up > 0.05 and abs(one_sided[291, 1]) < 0.01  # the subject's right only
    assert _basis(rig, "AU15")[[61, 291], 1].min() > 0.05  # corners down
    stretch = _basis(rig, "AU20")
    assert stretch[61, 0] < -0.06 and stretch[291, 0] > 0.06 and np.abs(stretch[[0, 13, 14, 17]]).max() < 1e-9
    jaw = _basis(rig, "AU26")
    assert jaw[14, 1] > 0.12 and jaw[17, 1] > 0.12  # lower lip down
    assert np.abs(jaw[list(R.LIPS_INNER_UPPER[1:-1])]).max() < 1e-9  # upper lip stays: the mouth opens
    press = _basis(rig, "AU24")
    assert press[0, 1] > 0.02 and press[17, 1] < -0.02  # outer lip contours close in
    lids = _basis(rig, "AU5")
    assert lids[159, 1] * up > 0.03 and lids[386, 1] * up > 0.03 and abs(lids[145, 1]) < 1e-9
    cheeks = _basis(rig, "AU6")
    assert cheeks[145, 1] * up > 0.02 and cheeks[50, 1] * up > 0.03 and abs(cheeks[159, 1]) < 1e-9
    inner, outer = _basis(rig, "AU1"), _basis(rig, "AU2")
    assert inner[107, 1] * up > 0.07 and abs(inner[70, 1]) < 0.5 * abs(inner[107, 1])
    assert outer[70, 1] * up > 0.07 and abs(outer[107, 1]) < 0.5 * abs(outer[70, 1])
    lower = _basis(rig, "AU4")
    assert lower[107, 1] > 0.04 and lower[336, 1] > 0.04 and lower[107, 0] > 0 > lower[336, 0]  # down, together
    nose = _basis(rig, "AU9")
    assert nose[98, 1] * up > 0.03 and nose[0, 1] * up > 0.04 and nose[17, 1] * up > 0.04  # the mouth rises whole
    assert abs(nose[14, 1] - nose[13, 1]) < 1e-9  # and keeps the speaker's gap between the lips


def _areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]


def test_neighbouring_points_move_together(rig, template):
    """Coherent motion: at ±1 of any unit, and at any prototype, no skin triangle folds over."""
    triangles = face_mesh(template)
    rest = _areas(template, triangles)
    for name, basis in zip(rig.names, rig.bases):
        for sign in (1.0, -1.0):
            assert (_areas(template + sign * basis, triangles) / rest).min() > 0.05, (name, sign)
    shipped = default_rig()  # beyond strength 1 the warp takes folds out locally (tests/test_visible_edits.py)
    for name, coeffs in PROTOTYPES.items():
        assert (_areas(template + shipped.decode(coeffs), triangles) / rest).min() > 0.1, name


def test_mesh_has_holes_at_the_mouth_and_eyes_and_is_connected(template):
    edges = face_mesh_edges(template)
    for upper, lower in [
        (R.LIPS_INNER_UPPER, R.LIPS_INNER_LOWER),
        (R.RIGHT_EYE_UPPER, R.RIGHT_EYE_LOWER),
        (R.LEFT_EYE_UPPER, R.LEFT_EYE_LOWER),
    ]:
        a, b = set(upper[1:-1]), set(lower[1:-1])
        assert not any((i in a and j in b) or (i in b and j in a) for i, j in edges)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(468, 468))
    assert connected_components(graph, directed=False)[0] == 1


def test_encode_inverts_decode(rig, template):
    rng = np.random.default_rng(0)
    coeffs = rng.uniform(-1, 1, size=(20, len(rig.names)))
    recovered = rig.encode(template[None] + rig.decode(coeffs), neutral=template)
    assert recovered.shape == (20, len(rig.names)) and recovered.dtype == np.float32
    error = np.abs(recovered - coeffs)
    assert error.max() < 0.08 and error.mean() < 0.01  # only the light ridge shrinks it


def test_default_neutral_is_the_clip_median(rig, template):
    """A clip that is mostly at rest, with a few expressive frames, on a face that is not the template."""
    rng = np.random.default_rng(1)
    identity = template + 0.03 * rng.standard_normal(template.shape)
    coeffs = np.zeros((15, len(rig.names)))
    coeffs[[3, 8, 11]] = [_coeffs(rig, AU12=1.0), _coeffs(rig, AU26=0.8, AU1=0.5), _coeffs(rig, AU4=1.0)]
    clip = identity[None] + rig.decode(coeffs)
    clip[5] = np.nan  # a frame without a face
    encoded = rig.encode(clip)
    assert np.isnan(encoded[5]).all()
    np.testing.assert_allclose(np.delete(encoded, 5, 0), np.delete(coeffs, 5, 0), atol=0.08)


def test_encode_rejects_wrong_shapes(rig):
    with pytest.raises(ValueError, match="478"):
        rig.encode(np.zeros((3, 68, 2)))
    with pytest.raises(ValueError, match="coefficients"):
        rig.decode(np.zeros((3, 5)))


def test_prototypes_follow_facs_and_are_distinguishable(template):
    """The shipped prototypes keep the FACS units each emotion is known by, and the rig tells them apart."""
    rig = default_rig()
    assert set(PROTOTYPES) == set(EMFACS_PROTOTYPES)
    assert set(PROTOTYPES) == {"angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"}
    assert not PROTOTYPES["neutral"].any()
    p = {name: dict(zip(rig.names, vector)) for name, vector in PROTOTYPES.items()}
    assert p["happy"]["AU6"] > 0.3 and p["happy"]["AU12"] > 0.5
    assert p["sad"]["AU1"] > 0 and p["sad"]["AU4"] > 0 and p["sad"]["AU15"] > 0.3
    assert all(p["surprised"][u] > 0.5 for u in ("AU1", "AU2", "AU5"))
    assert p["angry"]["AU4"] > 0.5 and p["angry"]["AU24"] > 0.5
    assert p["contempt"]["R12"] > 0 and p["contempt"]["AU12"] == 0
    assert all(v["AU26"] == 0 for v in p.values()), "the jaw drop belongs to the speech"
    names = list(PROTOTYPES)
    table = np.stack([PROTOTYPES[name] for name in names])
    recovered = rig.encode(template[None] + rig.decode(table), neutral=template)
    distances = np.linalg.norm(recovered[:, None] - table[None], axis=-1)
    assert (distances.argmin(1) == np.arange(len(names))).all()
    # distinct as shapes too, not only as coefficient vectors
    shapes = rig.decode(table).reshape(len(names), -1)
    gaps = np.linalg.norm(shapes[:, None] - shapes[None], axis=-1) + np.eye(len(names))
    assert gaps.min() > 0.1


@pytest.fixture(scope="module")
def astronaut_track():
    from cmet.face.landmarks import track

    return track(astronaut(), smooth=False)


def test_a_rendered_smile_encodes_as_au12(rig, astronaut_track):
    """Warp the astronaut into a stronger smile, track the result again and encode it against the original."""
    from cmet.face.landmarks import track
    from cmet.face.warp import render_expression

    frame = astronaut()
    smile = rig.decode(_coeffs(rig, AU12=1.0))
    edited = render_expression(frame, astronaut_track.landmarks[0], astronaut_track.transforms[0], smile)
    retracked = track(edited, smooth=False)
    coeffs = dict(zip(rig.names, rig.encode(retracked.canonical(), neutral=astronaut_track.canonical()[0])[0]))
    assert coeffs["AU12"] > 0.3
    assert abs(coeffs["AU26"]) < 0.2
    moved = rig.decode(np.array(list(coeffs.values())))
    assert moved[[61, 291], 1].mean() < -0.04  # the encoded expression lifts the corners
    brows = list(R.RIGHT_BROW_UPPER + R.LEFT_BROW_UPPER)
    assert np.abs(moved[brows, 1]).max() < 0.03  # and leaves the brows where they were (re-tracking noise only)


@pytest.mark.parametrize("units", [{"AU1": 1.0, "AU2": 1.0}, {"AU4": 1.0}])
def test_brows_move_as_one_arch(units):
    """Raised or lowered, the middle of the brow moves about as far as its ends (left to the spread it lagged, and
    surprise drew an "M" on the brow)."""
    rig = default_rig()
    shift = rig.decode(np.array([units.get(name, 0.0) for name in rig.names], dtype=np.float32))[:, 1]
    upper = R.RIGHT_BROW_UPPER  # outer → inner
    ends = (shift[upper[0]] + shift[upper[1]] + shift[upper[3]] + shift[upper[4]]) / 4
    assert abs(ends) > 0.02
    assert 0.8 < shift[upper[2]] / ends < 1.25
