"""256×256 face crops and paste-back of rendered crops into the frame; the template framing for still images.

Two framings come from the release. Videos are cut with a face-detector box (``cmet.face.framing``; what
EDTalk was trained on and what the official engine uses). Still images are cut with EDTalk's template method
(``crop_image2.py``): a similarity from the first 47 dlib-68 landmarks (jaw, brows, nose, right eye and five
left-eye points) to ``M003_template.npy`` (pixel coordinates in a 256 crop). That one we get without dlib:
the face track already maps every frame into the canonical FaceMesh frame (``cmet.face.canonical``), and one
fixed similarity maps the canonical frame onto the template, stored as four numbers (below), so the
template file is not needed at run time. Against dlib's own template crops (seven images of five people) it is
within 4% in scale, 1.6° and 5 px. The template framing shows the face about 16% smaller than the box
framing (eye distance 57.3 px against 68.5 px on the release's clip).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cmet.face.canonical import apply_similarity, canonical_template, fit_similarity, invert_similarity

CROP_SIZE = 256
N_FIT = 47  # EDTalk fits the crop on the first 47 of the 68 points

# FaceMesh index of each dlib/iBUG-300W point, in dlib order. Built by hand from the FaceMesh topology:
# jaw 0-16 follows the face oval from the subject's right ear (FaceMesh 127, beside the eye line) down to
# the chin (152) and up to the left ear (356), taking the oval points whose height matches the evenly spaced
# dlib jaw points (the pairs are mirror images, so the table is symmetric); brows 17-26 are the upper brow
# edge, outer→inner on the right and inner→outer on the left; nose 27-30 runs down the bridge from the
# nasion (168) to the tip (4), 31-35 along the nostril base; eyes 36-47 take the corners and the lid points
# a third of the way along each lid; mouth 48-59 the outer and 60-67 the inner lip contour.
DLIB68_FROM_FACEMESH = np.array(
    [127, 93, 132, 58, 136, 150, 176, 148, 152, 377, 400, 379, 365, 288, 361, 323, 356]  # jaw
    + [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # brows
    + [168, 197, 5, 4, 75, 97, 2, 326, 305]  # nose
    + [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]  # eyes
    + [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91]  # outer lips
    + [78, 82, 13, 312, 308, 317, 14, 87],  # inner lips
    dtype=np.int64,
)
RIGHT_EYE_68 = slice(36, 42)
LEFT_EYE_68 = slice(42, 48)
OUTER_LIPS_68 = slice(48, 60)

# Similarity canonical → crop pixels as (scale, angle in radians, x shift, y shift): canonical template
# points DLIB68_FROM_FACEMESH[:47] fitted to M003_template.npy[:47]. Recompute with
# ``fit_template_relation("../shared/data/edtalk/M003_template.npy")`` (the canonical template is re-measured
# by MediaPipe on each machine; tests/test_align.py checks the two still agree).
CANONICAL_TO_CROP = (59.4137, 0.011858, 135.0223, 115.5179)

FEATHER = 12.0  # crop pixels over which the paste-back mask fades from 1 to 0 inside the face outline
HULL_GROW = 1.04  # the face outline is pushed out this much about its centre so the edited edge is covered


def dlib68(points: np.ndarray) -> np.ndarray:
    """``[..., 478, D]`` FaceMesh points → ``[..., 68, D]`` in dlib order."""
    return np.asarray(points)[..., DLIB68_FROM_FACEMESH, :]


def similarity_matrix(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    """``[2, 3]`` matrix of a similarity given as scale, rotation and shift."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def fit_template_relation(template_path: str | Path) -> tuple[float, float, float, float]:
    """The canonical → crop similarity (scale, angle, tx, ty) from EDTalk's 68-point crop template file."""
    template = np.load(template_path).astype(np.float64)
    matrix = fit_similarity(dlib68(canonical_template())[:N_FIT], template[:N_FIT])
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    angle = float(np.arctan2(matrix[1, 0], matrix[0, 0]))
    return scale, angle, float(matrix[0, 2]), float(matrix[1, 2])


def crop_transforms(track_transforms: np.ndarray) -> np.ndarray:
    """Image → crop similarities ``[T, 2, 3]`` from the track's image → canonical ones (NaN rows stay NaN)."""
    to_crop = similarity_matrix(*CANONICAL_TO_CROP)
    track_transforms = np.asarray(track_transforms, dtype=np.float64)
    linear = to_crop[:, :2] @ track_transforms[..., :2]
    shift = (to_crop[:, :2] @ track_transforms[..., 2:])[..., 0] + to_crop[:, 2]
    return np.concatenate([linear, shift[..., None]], axis=-1)


def _scale(matrix: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _roi(matrix: np.ndarray, size: int, width: int, height: int, margin: int = 3) -> tuple[int, int, int, int] | None:
    """Integer image box ``(x0, y0, x1, y1)`` covering the crop square mapped back by ``matrix`` (image → crop)."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    in_image = apply_similarity(invert_similarity(matrix), corners)
    x0, y0 = np.floor(in_image.min(0)).astype(int) - margin
    x1, y1 = np.ceil(in_image.max(0)).astype(int) + margin
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def _shifted(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The image → crop matrix for coordinates measured from ``(x0, y0)``."""
    out = matrix.copy()
    out[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return out


def crop(frames: np.ndarray, transforms: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp each frame ``[N, H, W, 3]`` by its image → crop similarity into ``[N, size, size, 3]`` crops.

    Faces larger than the crop are low-passed first (a plain warp would alias when shrinking); pixels
    outside the frame repeat the border, as EDTalk's crops of faces near the edge do.
    """
    frames = np.asarray(frames)
    out = np.zeros((len(frames), size, size, frames.shape[-1]), dtype=frames.dtype)
    height, width = frames.shape[1:3]
    for n, (frame, matrix) in enumerate(zip(frames, np.asarray(transforms, dtype=np.float64))):
        box = _roi(matrix, size, width, height, margin=8) if np.isfinite(matrix).all() else None
        if box is None:
            continue
        x0, y0, x1, y1 = box
        region = frame[y0:y1, x0:x1]
        shrink = _scale(matrix)
        if shrink < 0.8:
            sigma = 0.5 * np.sqrt(1.0 / shrink**2 - 1.0)
            region = cv2.GaussianBlur(region, (0, 0), sigma)
        out[n] = cv2.warpAffine(
            np.ascontiguousarray(region),
            _shifted(matrix, x0, y0),
            (size, size),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return out


def hull_masks(points: np.ndarray, size: int = CROP_SIZE, feather: float = FEATHER, grow: float = HULL_GROW):
    """Feathered convex-hull masks ``[N, size, size]`` float32 in [0, 1] of face outlines ``[N, K, 2]`` (crop px).

    The mask is 0 outside the (slightly grown) hull and rises smoothly to 1 over ``feather`` pixels inside
    it, so everything outside the hull keeps the original frame exactly.
    """
    points = np.asarray(points, dtype=np.float64)
    masks = np.zeros((len(points), size, size), dtype=np.float32)
    for n, outline in enumerate(points):
        if not np.isfinite(outline).all():
            continue
        centre = outline.mean(0)
        grown = centre + grow * (outline - centre)
        hull = cv2.convexHull(np.round(grown * 16).astype(np.int32))
        binary = np.zeros((size, size), dtype=np.uint8)
        cv2.fillConvexPoly(binary, hull, 1, lineType=cv2.LINE_8, shift=4)
        binary[[0, -1], :] = binary[:, [0, -1]] = 0  # a face reaching the crop's edge still fades out inside it
        inside = cv2.distanceTransform(binary, cv2.DIST_L2, 5)
        ramp = np.clip(inside / feather, 0.0, 1.0)
        masks[n] = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no visible seam where the fade starts or ends
    return masks


def paste(frames: np.ndarray, crops: np.ndarray, transforms: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend rendered crops ``[N, S, S, 3]`` back into copies of ``frames`` ``[N, H, W, 3]`` (uint8).

    ``transforms`` are the image → crop similarities the crops were cut with; ``mask`` is ``[S, S]`` or
    ``[N, S, S]`` in [0, 1]. Each crop is first shifted in colour so that its mean over the mask's fade band
    equals the frame's there, which hides seams from the renderer's colour drift; then it is warped back
    into the frame (only the box the crop covers is touched) and blended through the mask.
    """
    frames = np.asarray(frames)
    out = frames.copy()
    size = crops.shape[1]
    masks = np.broadcast_to(np.asarray(mask, dtype=np.float32), (len(frames), size, size))
    height, width = frames.shape[1:3]
    for n, matrix in enumerate(np.asarray(transforms, dtype=np.float64)):
        box = None if not np.isfinite(matrix).all() else _roi(matrix, size, width, height)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        local = _shifted(matrix, x0, y0)
        flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        face = cv2.warpAffine(crops[n], local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(
            np.ascontiguousarray(masks[n]), local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        region = frames[n, y0:y1, x0:x1].astype(np.float32)
        face = face.astype(np.float32)
        band = (alpha[..., 0] > 0.02) & (alpha[..., 0] < 0.5)
        if band.any():
            face += region[band].mean(0) - face[band].mean(0)
        blended = region + alpha * (face - region)
        out[n, y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(frames.dtype)
    return out
