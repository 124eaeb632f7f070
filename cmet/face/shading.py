"""Expression shading for the lite engine: the darkening and lightening of skin that real expressions bring.

A warp moves pixels; it cannot deepen a nasolabial fold or darken a brow furrow. Liu, Shan & Zhang (SIGGRAPH 2001,
"expression ratio images") showed that the ratio of an expressive face to the same person's neutral face, both
aligned, carries that change of illumination and transfers to other faces. ``shading.npz``
(``tools/measure_expression_shading.py``) holds per emotion the mean log ratio of luminance over many people's
photo pairs in the *template frame*: every photo is mapped piecewise-affinely onto the canonical template's
landmarks, so what is left is shading, not geometry.

At render time a frame's AU offsets are credited to the calibrated emotion prototypes they point along (see
:meth:`Shading.shares`; a share of 1 is the real faces' mean expression, and shading stops there); emotion e's share
w_e scales its log ratio L_e, and each face pixel is multiplied by exp(Σ w_e L_e) read at its template position, found
through the frame's *edited* landmarks so the folds follow the moved mouth. One factor on R, G and B changes
luminance and keeps chroma. The maps fade to zero at the face outline and over eyes and lips (the mouth interior lies
between the lips); glasses are left alone. A frame whose offsets are zero is not touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cmet.config import REAL_FACES_DIR
from cmet.face import canonical as C
from cmet.face import regions as R
from cmet.face.au_rig import MESH_POINTS, PROTOTYPES, AURig
from cmet.face.rigid import BOX as RIGID_BOX
from cmet.face.rigid import SCALE as RIGID_SCALE
from cmet.face.rigid import RigidParts

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

SHADING_FILE = REAL_FACES_DIR / "shading.npz"
SIZE = 96  # template-frame grid cells per side
ORIGIN = (-1.3, -0.8)  # canonical x, y of the grid's top-left corner (temples to chin fit inside)
CELL = 2.6 / SIZE  # canonical units (inter-ocular distances) per cell
EDGE_FADE = 0.15  # canonical units over which the maps fade in from the face outline
HOLE_FADE = 0.05  # …and out towards the eyes and lips
GLASSES_FADE = 0.05  # canonical units past a glasses frame over which shading returns
# Emotions whose measured shading is applied. Sad (42 people) and surprised (117) are measured too, but with them the
# independent classifier read the example faces no better (target probability −0.007…+0.008), so the warp alone shows
# them; happy and angry shading raised it (Hopper, strength 1: happy 0.05 → 0.11, angry 0.03 → 0.05).
SHADED = ("happy", "angry")
INVERSE_STEPS = 2  # fixed-point steps inverting the template → frame map (it is close to the identity)


def cell_centres() -> np.ndarray:
    """``[SIZE, SIZE, 2]`` canonical (x, y) of every grid cell's centre."""
    steps = ORIGIN[0] + (np.arange(SIZE) + 0.5) * CELL, ORIGIN[1] + (np.arange(SIZE) + 0.5) * CELL
    return np.stack(np.meshgrid(*steps), -1).astype(np.float32)


@cache
def _interpolation() -> csr_matrix:
    """Sparse ``[SIZE², 468]`` piecewise-affine weights: each cell as a barycentric mix of its template triangle's
    corners; cells outside the face take those of the nearest cell inside (shared, read-only)."""
    from scipy.ndimage import distance_transform_edt
    from scipy.sparse import csr_matrix
    from scipy.spatial import Delaunay

    mesh = Delaunay(np.asarray(C.CANONICAL[:MESH_POINTS], np.float64))
    centres = cell_centres().reshape(-1, 2).astype(np.float64)
    found = mesh.find_simplex(centres)
    _, (rows, cols) = distance_transform_edt((found < 0).reshape(SIZE, SIZE), return_indices=True)
    nearest = (rows * SIZE + cols).reshape(-1)
    affine = mesh.transform[found[nearest]]
    partial = np.einsum("nij,nj->ni", affine[:, :2], centres[nearest] - affine[:, 2])
    weights = np.concatenate([partial, 1.0 - partial.sum(1, keepdims=True)], 1)
    corners = mesh.simplices[found[nearest]]
    cells = np.repeat(np.arange(SIZE * SIZE), 3)
    return csr_matrix((weights.reshape(-1).astype(np.float32), (cells, corners.reshape(-1))), (SIZE**2, MESH_POINTS))


def grid_positions(points: np.ndarray) -> np.ndarray:
    """``[SIZE, SIZE, 2]`` where each template-grid cell lies on a face with landmarks ``points [≥468, 2+]`` (any
    units): the piecewise-affine map that carries the template's landmarks onto ``points``."""
    xy = np.asarray(points, np.float32)[:MESH_POINTS, :2]
    return np.asarray(_interpolation() @ xy).reshape(SIZE, SIZE, 2)


def _polygon_distance(polygons: list[tuple[int, ...]], inside: bool) -> np.ndarray:
    """``[SIZE, SIZE]`` canonical distance from the filled template ``polygons`` (to their edge when ``inside``)."""
    scale = 4  # rasterise finer than the grid, then average down: smooth edges
    canvas = np.zeros((SIZE * scale, SIZE * scale), np.uint8)
    for polygon in polygons:
        pixels = (C.CANONICAL[list(polygon)] - np.array(ORIGIN)) / CELL * scale
        cv2.fillPoly(canvas, [np.round(pixels * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    target = canvas if inside else 1 - canvas
    distance = cv2.distanceTransform(target, cv2.DIST_L2, 5) * (CELL / scale)
    return cv2.resize(distance, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


@cache
def skin_mask() -> np.ndarray:
    """``[SIZE, SIZE]`` float32 in 0…1 (template frame): skin inside the face outline, fading in over EDGE_FADE
    from it and out over HOLE_FADE towards the eyes and lips, whose pixels (and the mouth's) are not skin."""
    face = np.clip(_polygon_distance([R.FACE_OVAL], inside=True) / EDGE_FADE, 0, 1)
    eyes = (R.RIGHT_EYE_UPPER + R.RIGHT_EYE_LOWER[::-1], R.LEFT_EYE_UPPER + R.LEFT_EYE_LOWER[::-1])
    lips = (R.LIPS_OUTER_UPPER + R.LIPS_OUTER_LOWER[::-1],)
    holes = np.clip(_polygon_distance(list(eyes + lips), inside=False) / HOLE_FADE, 0, 1)
    mask = (_smoothstep(face) * _smoothstep(holes)).astype(np.float32)
    mask.flags.writeable = False
    return mask


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Shading:
    """Per-emotion mean log luminance ratios on the template grid, and the prototypes that weigh them."""

    maps: np.ndarray  # [E, SIZE, SIZE] float32, masked (zero off the skin)
    emotions: tuple[str, ...]  # the emotions whose prototypes explain offsets (maps of those without data are zero)
    fields: np.ndarray  # [E, 956] each prototype's canonical landmark displacement
    sharpness: float = 20.0  # κ of the softmax over cosine similarities that credits a frame to prototypes
    min_cosine: float = 0.5  # a frame is credited only to prototypes it points mostly along
    max_share: float = 1.0  # shading never goes beyond the real faces' mean, however far the geometry is pushed

    @classmethod
    def load(cls, rig: AURig, path: Path = SHADING_FILE) -> Shading | None:
        """The committed maps, weighed by ``rig``'s prototypes (None in a checkout without the file)."""
        if not path.is_file():
            return None
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if tuple(meta["grid"]["size"]) != (SIZE, SIZE) or not np.allclose(meta["grid"]["origin"], ORIGIN):
                raise ValueError(f"{path} was measured on another grid; run tools/measure_expression_shading.py")
            measured = {name: data[name].astype(np.float32) for name in meta["emotions"]}
        emotions = tuple(e for e, units in PROTOTYPES.items() if np.any(units))
        fields = rig.decode(np.stack([PROTOTYPES[e] for e in emotions])).reshape(len(emotions), -1)
        zero = np.zeros((SIZE, SIZE), np.float32)
        maps = np.stack([measured[e] if e in SHADED and e in measured else zero for e in emotions]) * skin_mask()
        return cls(maps=maps, emotions=emotions, fields=fields.astype(np.float64))

    def shares(self, displacement: np.ndarray) -> np.ndarray:
        """``[N, E]`` share of each emotion in the canonical ``displacement [N, 478, 2]``: its projection on the
        emotion's prototype (1: as far as the real faces' mean), kept for the prototypes it points along; not capped.

        The prototypes overlap (sad, angry and happy share cheek and lip-corner units), so a least-squares split of
        a connector's output among them is unstable; a frame is credited instead by direction, through a sharp
        softmax of its cosine similarity to each prototype, and never negatively (the reverse of a fold is not a
        face) nor to a prototype it only leans towards (a smile undone lowers the corners as sadness does: cosine
        0.37).
        """
        flat = np.asarray(displacement, np.float64).reshape(len(displacement), -1)
        dots = flat @ self.fields.T
        norms = np.linalg.norm(self.fields, axis=1)
        cosine = dots / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True) * norms, 1e-12)
        credit = np.exp(self.sharpness * (cosine - cosine.max(1, keepdims=True)))
        credit /= credit.sum(1, keepdims=True)
        return np.where(cosine >= self.min_cosine, credit * dots / norms**2, 0.0)

    def apply(
        self,
        frames: list[np.ndarray],
        canonical: np.ndarray,
        displacement: np.ndarray,
        transforms: np.ndarray,
        rigid: RigidParts | None = None,
    ) -> None:
        """Shade ``frames`` (uint8 ``[H, W, 3]`` each) in place. ``canonical [N, 478, 2]``: each frame's landmarks
        before the edit, ``displacement [N, 478, 2]`` the edit (both canonical); ``transforms [N, 2, 3]``: image →
        canonical.

        Beyond ``max_share`` the shading stays at the real faces' mean and so does the geometry it is placed on:
        a fold belongs where a real smile puts it, not where an exaggerated mouth corner drags it.
        """
        keep = _glasses_keep(rigid)
        shares = self.shares(displacement) * self.maps.any((1, 2))  # emotions without a map add nothing
        for frame, before, moved, transform, share in zip(frames, canonical, displacement, transforms, shares):
            total = share.sum()
            if total <= 0:
                continue
            scale = min(1.0, self.max_share / total)
            log_ratio = sum(float(w * scale) * self.maps[e] for e, w in enumerate(share) if w > 0)
            # Template cell under each cell of the frame's canonical grid: invert the map template → frame, a
            # near-identity x ↦ x + drift(x), by fixed-point steps (all in cell units).
            drift = grid_positions(_to_cells(before + scale * moved)) - _CELLS  # interpolation commutes with affines
            position = _CELLS
            for _ in range(INVERSE_STEPS):
                position = _CELLS - cv2.remap(drift, position, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            on_frame = cv2.remap(log_ratio, position, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) * keep
            _multiply(frame, on_frame, np.asarray(transform, np.float64), before + moved)


def _to_cells(canonical: np.ndarray) -> np.ndarray:
    """Canonical positions ``[..., 2]`` as float32 grid (column, row) coordinates, cell centres at integers."""
    return ((canonical - np.array(ORIGIN, np.float32)) / CELL - 0.5).astype(np.float32)


_READ = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
_CELLS = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE)), -1).astype(np.float32)


def _glasses_keep(rigid: RigidParts | None) -> np.ndarray | float:
    """Per grid cell 0 on glasses (frames and what they enclose: light through a lens is not skin's), rising to 1
    within GLASSES_FADE of them; 1 without glasses."""
    if rigid is None:
        return 1.0
    patch = (cell_centres() - np.array(RIGID_BOX[:2], np.float32)) * RIGID_SCALE
    far = float(GLASSES_FADE)
    found = cv2.remap(
        rigid.enclosed_clearance, patch, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=far
    )
    return np.clip(found / GLASSES_FADE, 0.0, 1.0)


def _multiply(frame: np.ndarray, log_ratio: np.ndarray, transform: np.ndarray, points: np.ndarray) -> None:
    """Multiply the face box of ``frame`` by exp of the canonical-grid ``log_ratio`` (the frame's own pose)."""
    height, width = frame.shape[:2]
    outline = np.asarray(points, np.float64)[list(R.FACE_OVAL)] - transform[:, 2]
    image = np.linalg.solve(transform[:, :2], outline.T).T  # the maps are zero outside the face outline
    x0, y0 = np.maximum(np.floor(image.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(image.max(0)).astype(int) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return
    # Half-resolution box pixel → box pixel → canonical → grid cell: one affine map for warpAffine's inverse mode;
    # the map is smooth (cells are a few pixels), so it is read at half resolution and enlarged: half the cost.
    to_cells = np.array([[1 / CELL, 0, -ORIGIN[0] / CELL - 0.5], [0, 1 / CELL, -ORIGIN[1] / CELL - 0.5]])
    from_half = np.array([[2, 0, x0 + 0.5], [0, 2, y0 + 0.5], [0, 0, 1]], np.float64)
    box = to_cells @ np.vstack([transform, [0, 0, 1]]) @ from_half
    size = (int(x1 - x0), int(y1 - y0))
    half = cv2.warpAffine(log_ratio, box, ((size[0] + 1) // 2, (size[1] + 1) // 2), flags=_READ, borderValue=0)
    on_box = cv2.resize(half, size, interpolation=cv2.INTER_LINEAR)
    region = frame[y0:y1, x0:x1]
    # Lightening stops where the brightest channel would clip: clipping one channel only would shift the hue.
    brightest = np.maximum(np.maximum(region[..., 0], region[..., 1]), region[..., 2])
    gain = np.minimum(cv2.exp(on_box), 255.0 / np.maximum(brightest, 1).astype(np.float32))
    region[...] = cv2.multiply(region, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)
