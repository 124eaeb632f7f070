"""The lite engine's expression space: FACS action units as displacement fields on FaceMesh landmarks.

Each basis is one action unit at a strong but plausible apex (coefficient 1), in canonical units
(inter-ocular distance 1, x right, y down). A basis is specified by a few *driver* landmark groups
with a prescribed motion (lip corners up and out, lower lip down…) and *pinned* groups that must not
move; every other landmark follows a screened-Laplace interpolation over the face mesh. The mesh
has holes at the mouth and the eyes, so motion spreads through skin but never jumps from the lower
lip to the upper lip or from one eyelid to the other; the screening makes it fade over a set reach;
the outline from temple to jaw is always pinned, so the face keeps its shape and the renderer can leave
the background alone. The forehead's part of the oval is free: raised brows pull the forehead skin up
with them instead of squeezing it against a fixed line (at strength 2 that squeeze folded the image).

Coefficients of a video are a ridge-regularised least-squares fit of each frame's displacement from
the video's own neutral shape (by default its median shape), so identity never leaks into them.

``EMFACS_PROTOTYPES`` are the EMFACS emotion predictions (Ekman & Friesen, EMFACS-7, 1978/1983; see also
Ekman, Friesen & Hager, FACS Investigator's Guide, 2002): happy 6+12; sad 1+4+15 (and 6+15); surprise
1+2+5B+26; fear 1+2+4+5+7+20+26; anger 4+5+7+23 (or 24); disgust 9+15+16 (or 10);
contempt R12A+R14A (one-sided), written in this rig's units. The shipped ``PROTOTYPES`` and each unit's apex
are fitted to real faces (``cmet.face.calibration``, ``cmet/data/real_faces/calibration.json``), with the EMFACS
sets as the prior and as the fallback where the photos are too few.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from cmet.config import REAL_FACES_DIR
from cmet.errors import InputError
from cmet.face import regions as R
from cmet.face.calibration import Calibration
from cmet.face.canonical import N_LANDMARKS, canonical_template, mirror_index

MESH_POINTS = 468  # the iris points sit on the eyeball, under the lids: they are not skin


@dataclass(frozen=True)
class Driver:
    """Prescribed motion of a landmark group, written for the subject's right side (and the midline).

    ``out`` moves points away from the midline (sign taken from each point's side), ``dx`` moves
    them along +x whatever their side, ``dy`` along +y (down); ``share`` moves each point that
    fraction of the way to its partner in ``toward`` (scales with the face: lip thickness, say).
    """

    indices: tuple[int, ...]
    dy: float = 0.0
    out: float = 0.0
    dx: float = 0.0
    toward: tuple[int, ...] = ()
    share: float = 0.0


@dataclass(frozen=True)
class ActionUnit:
    """How one basis is built: drivers, extra pinned groups and how far the motion spreads."""

    name: str
    description: str
    drivers: tuple[Driver, ...]
    pins: tuple[int, ...] = ()
    reach: float = 0.15  # canonical units: screening length of the spread
    bilateral: bool = True  # drivers are mirrored onto the subject's left side


_EYE_MARGINS = R.RIGHT_EYE_UPPER + R.RIGHT_EYE_LOWER + R.LEFT_EYE_UPPER + R.LEFT_EYE_LOWER
_UPPER_LIP = tuple(sorted(set(R.LIPS_OUTER_UPPER + R.LIPS_INNER_UPPER) - set(R.LIP_CORNERS + R.INNER_LIP_CORNERS)))
_LOWER_LIP = tuple(sorted(set(R.LIPS_OUTER_LOWER + R.LIPS_INNER_LOWER) - set(R.LIP_CORNERS + R.INNER_LIP_CORNERS)))
# The upper-lip raiser lifts the closed mouth as a whole (EMFACS disgust 10+17: the chin pushes the lower lip up
# with it): the philtrum shortens, the lips keep the speaker's gap, so closures stay closed. Lifting the upper lip
# alone parted every closure over stretched skin; lifting only its outer edge swelled the lip. The corners stay,
# so the mouth arches as in a sneer, and a little negative AU9 that the connector adds to other emotions does not
# pull smiling corners down.
_MOUTH_MIDDLE = tuple(sorted(set(_UPPER_LIP + _LOWER_LIP) - {185, 191, 409, 415, 146, 95, 375, 324}))
_MOUTH_NEAR_CORNERS = (185, 191, 146, 95)
_CORNERS = (R.LIP_CORNERS[0], R.INNER_LIP_CORNERS[0])  # the subject's right corner, outer and inner contour
_UPPER_LIDS = R.RIGHT_EYE_UPPER + R.LEFT_EYE_UPPER
_LOWER_LIDS = R.RIGHT_EYE_LOWER + R.LEFT_EYE_LOWER
_EYE_CORNERS = R.RIGHT_EYE_CORNERS + R.LEFT_EYE_CORNERS
_BROWS = R.RIGHT_BROW_UPPER + R.RIGHT_BROW_LOWER + R.LEFT_BROW_UPPER + R.LEFT_BROW_LOWER
# The middle of the brow, between its inner and outer drivers: driven by both brow raisers (and the lowerer) so the
# brow moves as one arch; left to the spread it lagged, and raised brows got a kink ("M" shape) at ×2.
_BROW_MIDDLE = tuple(
    sorted(set(R.RIGHT_BROW_UPPER + R.RIGHT_BROW_LOWER) - set(R.RIGHT_BROW_INNER + R.RIGHT_BROW_OUTER))
)

ACTION_UNITS: tuple[ActionUnit, ...] = (
    ActionUnit(
        "AU1",
        "inner brow raiser",
        (
            Driver(R.RIGHT_BROW_INNER, dy=-0.08),
            Driver(_BROW_MIDDLE, dy=-0.035),
            Driver((9,), dy=-0.04),
            Driver((108, 151), dy=-0.03),
        ),
        pins=_EYE_MARGINS,
        reach=0.3,
    ),
    ActionUnit(
        "AU2",
        "outer brow raiser",
        (Driver(R.RIGHT_BROW_OUTER, dy=-0.08), Driver(_BROW_MIDDLE, dy=-0.04)),
        pins=_EYE_MARGINS,
        reach=0.3,
    ),
    ActionUnit(
        "AU4",
        "brow lowerer: brows down and drawn together",
        (
            Driver(R.RIGHT_BROW_INNER, dy=0.055, out=-0.02),
            Driver(R.RIGHT_BROW_OUTER, dy=0.035),
            Driver(_BROW_MIDDLE, dy=0.045, out=-0.01),
            Driver((9,), dy=0.03),
        ),
        pins=_EYE_MARGINS + (108, 151),
    ),
    ActionUnit(
        "AU5",
        "upper lid raiser",
        (
            Driver((159,), dy=-0.04),
            Driver((160, 158), dy=-0.035),
            Driver((161, 157), dy=-0.025),
            Driver((246, 173), dy=-0.012),
        ),
        pins=_LOWER_LIDS + _EYE_CORNERS + _BROWS,
        reach=0.08,
    ),
    ActionUnit(
        "AU6",
        "cheek raiser and lid tightener (AU6+AU7): lower lids and cheeks up",
        (
            Driver((145, 144, 153), dy=-0.025),
            Driver((163, 154), dy=-0.018),
            Driver((7, 155), dy=-0.01),
            Driver(R.RIGHT_CHEEK, dy=-0.04, out=0.01),
        ),
        pins=_UPPER_LIDS + _EYE_CORNERS + _BROWS,
        reach=0.12,
    ),
    ActionUnit(
        "AU9",
        "nose wrinkler and upper lip raiser (AU9+AU10, with AU17): nose wings and the closed mouth up",
        (
            Driver(R.RIGHT_NOSE_WING, dy=-0.04),
            Driver(_MOUTH_MIDDLE, dy=-0.045),
            Driver(_MOUTH_NEAR_CORNERS, dy=-0.02),
        ),
        pins=_EYE_MARGINS + _CORNERS,
        reach=0.12,
    ),
    ActionUnit(
        "AU12",
        "lip corner puller (smile): corners up and out, lower cheeks lifted",
        (Driver(_CORNERS, dy=-0.08, out=0.045), Driver((50, 205, 187, 36), dy=-0.03, out=0.01)),
        pins=_LOWER_LIDS,
        reach=0.2,
    ),
    ActionUnit(
        "R12",
        "one-sided lip corner puller and dimpler on the subject's right (R12+R14: contempt, sarcasm)",
        (Driver(_CORNERS, dy=-0.06, dx=-0.04),),
        reach=0.2,
        bilateral=False,
    ),
    ActionUnit(
        "AU15",
        "lip corner depressor: corners and the skin below them down, cheeks stay",
        (Driver(_CORNERS, dy=0.06, out=0.01), Driver((43, 106, 182), dy=0.03)),
        pins=R.RIGHT_CHEEK + R.LEFT_CHEEK + R.UPPER_LIP_CENTRE,
        reach=0.15,
    ),
    ActionUnit(
        "AU20",
        "lip stretcher: corners drawn sideways, lip centres stay",
        (Driver(_CORNERS, dy=0.01, out=0.07),),
        pins=R.UPPER_LIP_CENTRE + R.LOWER_LIP_CENTRE,
        reach=0.2,
    ),
    ActionUnit(
        "AU24",
        "lip presser: lips thinned against each other (outer contours 40% of the way to the inner ones)",
        (
            Driver(R.LIPS_OUTER_UPPER[1:-1], toward=R.LIPS_INNER_UPPER[1:-1], share=0.4),
            Driver(R.LIPS_OUTER_LOWER[1:-1], toward=R.LIPS_INNER_LOWER[1:-1], share=0.4),
            Driver(_CORNERS, out=-0.015),
        ),
        pins=R.LIPS_INNER_UPPER[1:-1] + R.LIPS_INNER_LOWER[1:-1],
        reach=0.1,
    ),
    ActionUnit(
        "AU26",
        "jaw drop: lower lip and the skin under it down, upper lip stays",
        (
            Driver((14, 17, 87, 84), dy=0.15),
            Driver((178, 181), dy=0.13),
            Driver((88, 91), dy=0.1),
            Driver((95, 146), dy=0.07),
            Driver(_CORNERS, dy=0.015),
        ),
        pins=_UPPER_LIP,
        reach=0.3,
    ),
)
AU_NAMES: tuple[str, ...] = tuple(unit.name for unit in ACTION_UNITS)

# The EMFACS sets of the module docstring in this rig's units: AU7 lives in the AU6 basis, AU10 in AU9,
# AU23 (lip tightener) is rendered as the lip press AU24, AU16 (lower lip depressor) as a light jaw
# drop, R12A+R14A as 0.6 of the combined one-sided R12 basis; intensity letters map A≈0.3, B≈0.5,
# C–D≈0.8, E≈1. They are the starting point; ``cmet.face.calibration`` replaces them with fits to real faces
# wherever the real-face table has enough photos.
EMFACS_PROTOTYPES: dict[str, dict[str, float]] = {
    "angry": {"AU4": 1.0, "AU5": 0.6, "AU6": 0.6, "AU24": 0.8},
    "contempt": {"R12": 0.6},
    "disgusted": {"AU9": 1.0, "AU15": 0.6, "AU26": 0.25},
    "fear": {"AU1": 0.8, "AU2": 0.6, "AU4": 0.5, "AU5": 1.0, "AU6": 0.4, "AU20": 1.0, "AU26": 0.6},
    "happy": {"AU6": 1.0, "AU12": 1.0},
    "neutral": {},
    "sad": {"AU1": 1.0, "AU4": 0.6, "AU6": 0.5, "AU15": 1.0},
    "surprised": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.5, "AU26": 1.0},
}
CALIBRATION_FILE = REAL_FACES_DIR / "calibration.json"


@cache
def calibration() -> Calibration | None:
    """The committed fit of the rig to real faces (None in a checkout without it: EMFACS units then)."""
    return Calibration.load(CALIBRATION_FILE) if CALIBRATION_FILE.is_file() else None


def _prototypes() -> dict[str, np.ndarray]:
    fitted = calibration()
    table = fitted.prototypes if fitted else EMFACS_PROTOTYPES
    return {
        emotion: np.array([units.get(name, 0.0) for name in AU_NAMES], dtype=np.float32)
        for emotion, units in table.items()
    }


PROTOTYPES: dict[str, np.ndarray] = _prototypes()


def face_mesh(template: np.ndarray) -> np.ndarray:
    """``[F, 3]`` skin triangles over the 468 non-iris landmarks: a Delaunay mesh with the mouth and eyes cut out."""
    from scipy.spatial import Delaunay
    from skimage.measure import points_in_poly

    points = np.asarray(template, dtype=np.float64)[:MESH_POINTS]
    triangles = Delaunay(points).simplices
    keep = np.ones(len(triangles), dtype=bool)
    holes = (
        (R.LIPS_INNER_UPPER, R.LIPS_INNER_LOWER),
        (R.RIGHT_EYE_UPPER, R.RIGHT_EYE_LOWER),
        (R.LEFT_EYE_UPPER, R.LEFT_EYE_LOWER),
    )
    centroids = points[triangles].mean(1)
    for upper, lower in holes:
        corners = set(upper) & set(lower)
        top = np.isin(triangles, list(set(upper) - corners)).any(1)
        bottom = np.isin(triangles, list(set(lower) - corners)).any(1)
        outline = points[list(upper) + list(reversed(lower))]
        keep &= ~(top & bottom) & ~points_in_poly(centroids, outline)
    return triangles[keep]


def face_mesh_edges(template: np.ndarray) -> np.ndarray:
    """``[E, 2]`` unique edges of :func:`face_mesh`."""
    triangles = face_mesh(template)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0)


def _spread(template: np.ndarray, edges: np.ndarray, fixed: dict[int, np.ndarray], reach: float) -> np.ndarray:
    """``[478, 2]`` field equal to ``fixed`` at its keys that decays away from them over the mesh.

    Solves the screened Laplace equation −Δd + d/reach² = 0 on the free landmarks. The graph
    Laplacian is weighted by 1/length² and normalised by each point's neighbour count, so the decay
    length is the same in the dense lips as on the sparse forehead.
    """
    n = N_LANDMARKS
    length2 = ((template[edges[:, 0]] - template[edges[:, 1]]) ** 2).sum(1)
    weights = np.zeros((n, n))
    weights[edges[:, 0], edges[:, 1]] = 1.0 / length2
    weights[edges[:, 1], edges[:, 0]] = 1.0 / length2
    neighbours = np.maximum((weights > 0).sum(1), 1)
    laplacian = 4.0 * (np.diag(weights.sum(1)) - weights) / neighbours[:, None]
    system = laplacian + np.eye(n) / reach**2
    values = np.zeros((n, 2))
    known = np.zeros(n, dtype=bool)
    for index, value in fixed.items():
        values[index] = value
        known[index] = True
    known[MESH_POINTS:] = True  # irises: zero (the eyeball does not move with the skin)
    free = ~known
    rhs = -system[np.ix_(free, known)] @ values[known]
    values[free] = np.linalg.solve(system[np.ix_(free, free)], rhs)
    return values


def build_basis(unit: ActionUnit, template: np.ndarray, edges: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """``[478, 2]`` displacement field of one action unit at coefficient 1."""
    template = np.asarray(template, dtype=np.float64)
    side = np.sign(np.round(template[:, 0], 6))
    fixed: dict[int, np.ndarray] = {}
    for index in unit.pins + R.RIM:
        fixed[index] = np.zeros(2)
    for driver in unit.drivers:
        pairs = list(zip(driver.indices, driver.toward or driver.indices))
        if unit.bilateral:
            pairs += [(int(mirror[i]), int(mirror[j])) for i, j in pairs]
        for index, partner in pairs:
            shift = driver.share * (template[partner] - template[index])
            fixed[index] = shift + np.array([driver.dx + driver.out * side[index], driver.dy])
    for index in R.RIM:  # the outline wins over any driver
        fixed[index] = np.zeros(2)
    return _spread(template, edges, fixed, unit.reach)


def _encode_weights() -> np.ndarray:
    """Iris points follow gaze, not expression: they are left out of the fit."""
    weights = np.ones(N_LANDMARKS)
    weights[MESH_POINTS:] = 0.0
    return weights


@dataclass
class AURig:
    """Action-unit bases on canonical landmarks: ``decode`` coefficients to displacements, ``encode`` back."""

    names: list[str]
    bases: np.ndarray  # [K, 478, 2] canonical units per unit coefficient
    weights: np.ndarray = field(default_factory=_encode_weights)  # [478] per-landmark fit weight
    ridge: float = 1e-3  # relative to each basis's own energy, so small units (eyelids) are not shrunk more
    _solver: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.bases = np.asarray(self.bases, dtype=np.float64)
        if self.bases.shape != (len(self.names), N_LANDMARKS, 2):
            raise ValueError(f"bases must be [{len(self.names)}, {N_LANDMARKS}, 2], got {self.bases.shape}")
        flat = self.bases.reshape(len(self.names), -1)  # [K, 956]
        w = np.repeat(np.asarray(self.weights, dtype=np.float64), 2)
        gram = (flat * w) @ flat.T
        penalty = self.ridge * np.diag(np.diag(gram))
        self._solver = np.linalg.solve(gram + penalty, flat * w)  # [K, 956]

    def decode(self, coeffs: np.ndarray) -> np.ndarray:
        """``[..., K]`` coefficients → ``[..., 478, 2]`` canonical displacements (float32)."""
        coeffs = np.asarray(coeffs, dtype=np.float64)
        if coeffs.shape[-1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} coefficients ({', '.join(self.names)}), got {coeffs.shape}")
        return np.einsum("...k,kpd->...pd", coeffs, self.bases).astype(np.float32)

    def encode(self, canonical_landmarks: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """``[T, 478, 2]`` canonical landmarks → ``[T, K]`` coefficients (float32).

        ``neutral`` is the face's own rest shape; by default the per-landmark median over the
        frames, which for a talking-face clip is its typical, mostly relaxed face. Frames with
        NaN landmarks (no face) get NaN coefficients.
        """
        points = np.asarray(canonical_landmarks, dtype=np.float64)
        if points.ndim != 3 or points.shape[1:] != (N_LANDMARKS, 2):
            raise ValueError(f"canonical landmarks must be [T, {N_LANDMARKS}, 2], got {points.shape}")
        if neutral is None:
            neutral = neutral_shape(points)
        displacement = (points - np.asarray(neutral, dtype=np.float64)[None, :, :2]).reshape(len(points), -1)
        return (displacement @ self._solver.T).astype(np.float32)


def neutral_shape(canonical_landmarks: np.ndarray) -> np.ndarray:
    """``[478, 2]`` robust rest shape of a clip: the per-landmark median over frames with a face."""
    points = np.asarray(canonical_landmarks, dtype=np.float64)
    if np.isnan(points).all():
        raise InputError("No frame of the clip has a face, so its neutral expression cannot be estimated.")
    return np.nanmedian(points, axis=0)


def build_rig(template: np.ndarray | None = None, units: tuple[ActionUnit, ...] = ACTION_UNITS) -> AURig:
    """An :class:`AURig` built on ``template`` (default: the canonical FaceMesh template)."""
    template = np.asarray(canonical_template() if template is None else template, dtype=np.float64)
    edges = face_mesh_edges(template)
    mirror = mirror_index()
    bases = np.stack([build_basis(unit, template, edges, mirror) for unit in units])
    return AURig(names=[unit.name for unit in units], bases=bases)


@cache
def default_rig() -> AURig:
    """The rig on the canonical template with the real-face apexes, built once per process and shared (read-only)."""
    rig = build_rig()
    fitted = calibration()
    if fitted:
        scale = np.array([fitted.apex.get(name, 1.0) for name in rig.names])
        rig = AURig(names=rig.names, bases=rig.bases * scale[:, None, None])
    rig.bases.flags.writeable = False
    return rig
