"""The canonical face frame: a frontal template for MediaPipe's 478 landmarks and similarity fits to it.

mediapipe 0.10.21 does not ship its canonical face model, so the template is measured once per
process from ``skimage.data.astronaut()`` (a frontal face bundled with scikit-image): the 3D
landmarks are turned so that the face's plane of symmetry faces the camera, each point is averaged
with its mirror partner, and the result is projected orthographically. Canonical units: x right,
y down, origin midway between the eye centres, inter-ocular distance 1.
"""

from __future__ import annotations

from functools import cache

import numpy as np

N_LANDMARKS = 478
RIGHT_EYE_CORNERS = (33, 133)  # the subject's right eye: on the image's left
LEFT_EYE_CORNERS = (362, 263)
RIGHT_IRIS_CENTRE = 468
LEFT_IRIS_CENTRE = 473
# Points that expressions barely move: eye corners, nose bridge, forehead and the face outline
# down to cheek level. Lips, brows, eyelids and the jaw are left out so a smile or a mouth opening
# does not shift the frame.
STABLE = np.array(
    [33, 133, 362, 263, 168, 6, 197, 195, 5, 151, 10, 338, 297, 332, 284, 251, 389, 356, 454, 323]
    + [109, 67, 103, 54, 21, 162, 127, 234, 93],
    dtype=np.int64,
)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eye centres of ``[..., 478, D]`` points: the mean of each eye's two corners, which gaze does
    not move (iris centres do)."""
    right = points[..., RIGHT_EYE_CORNERS, :].mean(axis=-2)
    left = points[..., LEFT_EYE_CORNERS, :].mean(axis=-2)
    return right, left


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``[..., 2, 3]`` mapping 2D ``src [..., N, 2]`` onto ``dst [..., N, 2]``.

    Umeyama's closed form without reflection, batched over the leading axes (one fit per frame).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s = src.mean(-2, keepdims=True)
    mu_d = dst.mean(-2, keepdims=True)
    s0, d0 = src - mu_s, dst - mu_d
    count = src.shape[-2]
    var = (s0**2).sum((-2, -1)) / count
    cov = np.swapaxes(d0, -1, -2) @ s0 / count
    u, sig, vt = np.linalg.svd(cov)
    signs = np.ones_like(sig)
    signs[..., 1] = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    linear = ((sig * signs).sum(-1) / var)[..., None, None] * (u @ (signs[..., :, None] * vt))
    shift = mu_d[..., 0, :] - (linear @ mu_s[..., 0, :, None])[..., 0]
    return np.concatenate([linear, shift[..., None]], axis=-1)


def apply_similarity(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``[..., 2, 3]`` affine matrices to ``[..., N, 2]`` points (broadcasting over the leading axes)."""
    linear = np.swapaxes(matrix[..., :2], -1, -2)
    return np.matmul(points, linear) + matrix[..., None, :, 2]


def invert_similarity(matrix: np.ndarray) -> np.ndarray:
    """Inverse of ``[..., 2, 3]`` affine matrices."""
    linear_inv = np.linalg.inv(matrix[..., :2])
    shift = -np.matmul(linear_inv, matrix[..., 2:])
    return np.concatenate([linear_inv, shift], axis=-1)


def _mirror_permutation(points: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair every landmark with its mirror partner across the face's symmetry plane.

    Alternates two steps until the pairing settles: reflect the points across the current plane and
    match them one-to-one to the originals (Hungarian assignment), then re-estimate the plane normal
    as the dominant direction of the differences between partners.
    """
    from scipy.optimize import linear_sum_assignment

    perm = np.arange(len(points))
    for _ in range(6):
        depth = (points - points.mean(0)) @ normal
        mirrored = points - 2.0 * np.outer(depth, normal)
        cost = ((points[:, None, :] - mirrored[None, :, :]) ** 2).sum(-1)
        new_perm = linear_sum_assignment(cost)[1]
        _, _, vt = np.linalg.svd(points - points[new_perm], full_matrices=False)
        normal = vt[0] * np.sign(vt[0] @ normal)
        if np.array_equal(new_perm, perm):
            break
        perm = new_perm
    return perm, normal


def _astronaut_landmarks() -> np.ndarray:
    """478 MediaPipe landmarks (x, y, z in pixels) of the bundled astronaut portrait."""
    import mediapipe as mp
    from skimage.data import astronaut

    image = astronaut()
    height, width = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe found no face in skimage.data.astronaut(); the canonical template needs it.")
    return np.array([[p.x * width, p.y * height, p.z * width] for p in result.multi_face_landmarks[0].landmark])


@cache
def _template() -> tuple[np.ndarray, np.ndarray]:
    points = _astronaut_landmarks()
    right, left = eye_centres(points)
    across = (left - right) / np.linalg.norm(left - right)
    perm, x_axis = _mirror_permutation(points, across)
    # Smallest turn that brings the symmetry normal onto x: keep the view axis as close to the camera's as possible.
    z_axis = np.array([0.0, 0.0, 1.0]) - x_axis[2] * x_axis
    z_axis /= np.linalg.norm(z_axis)
    y_axis = np.cross(z_axis, x_axis)
    frontal = (points - points.mean(0)) @ np.stack([x_axis, y_axis, z_axis]).T
    partner = frontal[perm] * np.array([-1.0, 1.0, 1.0])
    symmetric = 0.5 * (frontal + partner)[:, :2]
    right, left = eye_centres(symmetric)
    template = ((symmetric - 0.5 * (right + left)) / np.linalg.norm(left - right)).astype(np.float32)
    perm = perm.astype(np.int64)
    template.flags.writeable = False
    perm.flags.writeable = False
    return template, perm


def canonical_template() -> np.ndarray:
    """``[478, 2]`` float32 frontal template in canonical units (a fresh copy: callers may modify it)."""
    return _template()[0].copy()


def mirror_index() -> np.ndarray:
    """``[478]`` permutation pairing each landmark with its left/right mirror partner (midline points map to
    themselves): ``points[mirror_index()]`` with x negated is the mirrored face."""
    return _template()[1].copy()


def __getattr__(name: str) -> np.ndarray:
    """``CANONICAL`` and ``MIRROR`` are built on first access (they run MediaPipe once) and are read-only."""
    if name == "CANONICAL":
        return _template()[0]
    if name == "MIRROR":
        return _template()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
