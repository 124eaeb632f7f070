"""The box framing (cmet.face.framing) reproduces the release's video crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cmet.face import framing
from cmet.face.align import crop
from cmet.face.canonical import apply_similarity, eye_centres, invert_similarity
from cmet.face.landmarks import track

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmet-samples"
RELEASE_CLIP = SAMPLES / "video" / "W009_038.mp4"  # cut by the release's crop_video.py
SCALE_TOL, SHIFT_TOL, ROTATION_TOL = 0.02, 2.0, 1.0  # relative, crop pixels, degrees
CORNERS = np.array([[0.0, 0.0], [256.0, 0.0], [0.0, 256.0], [256.0, 256.0]])


def _deviation(matrix: np.ndarray) -> tuple[float, float, float]:
    """(|scale − 1|, largest corner shift in px, |rotation| in degrees) of a crop → crop matrix."""
    shift = np.linalg.norm(apply_similarity(matrix, CORNERS) - CORNERS, axis=-1).max()
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return abs(scale - 1.0), float(shift), abs(float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` of two ``[2, 3]`` affine matrices."""
    return np.concatenate([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]], axis=1)


def _eyes(image: np.ndarray) -> tuple[np.ndarray, float]:
    """FaceMesh eye centre and inter-ocular distance of one image."""
    right, left = eye_centres(track(image, smooth=False).landmarks[0, :, :2].astype(np.float64))
    return (right + left) / 2, float(np.linalg.norm(left - right))


@pytest.fixture(scope="module")
def release_clip():
    if not RELEASE_CLIP.is_file():
        pytest.skip(f"the release's sample clip is not at {RELEASE_CLIP}")
    from cmet.media import iter_frames

    return np.stack(list(iter_frames(RELEASE_CLIP)))


def test_release_clip_is_cropped_to_itself(release_clip):
    crops = framing.box_transforms(track(release_clip).transforms)
    for matrix in crops:
        scale, shift, rotation = _deviation(matrix)
        assert scale <= SCALE_TOL and shift <= SHIFT_TOL and rotation <= ROTATION_TOL, (scale, shift, rotation)
    corners = apply_similarity(invert_similarity(crops), CORNERS)
    assert np.linalg.norm(np.diff(corners, axis=0), axis=-1).max() <= 0.3  # a steady head: the crop stays put


def test_clip_in_a_larger_frame_is_recovered(release_clip):
    """The clip scaled ×1.5 and placed off-centre in a 640×480 frame is cropped back to the original."""
    zoom, offset = 1.5, np.array([170.0, 50.0])  # pixel edges: x_big = 1.5 x + offset
    place = np.array([[zoom, 0.0, zoom * 0.5 + offset[0] - 0.5], [0.0, zoom, zoom * 0.5 + offset[1] - 0.5]])
    big = np.stack([cv2.warpAffine(f, place, (640, 480), flags=cv2.INTER_CUBIC) for f in release_clip])
    crops = framing.box_transforms(track(big).transforms)
    for matrix in crops:  # big → crop after original → big: the identity if the original is recovered
        scale, shift, rotation = _deviation(_compose(matrix, place))
        assert scale <= SCALE_TOL and shift <= SHIFT_TOL and rotation <= ROTATION_TOL, (scale, shift, rotation)
    # The re-measured table: FaceMesh on our crop of frame 0 against the release's own frame 0.
    (ours, ours_iod), (release, release_iod) = _eyes(crop(big[:1], crops[:1])[0]), _eyes(release_clip[0])
    assert np.linalg.norm(ours - release) <= SHIFT_TOL and abs(ours_iod / release_iod - 1) <= SCALE_TOL


def test_square_transform_matches_crop_and_scale():
    """The matrix cuts the same pixels as slicing the box and resizing it (ffmpeg's crop,scale)."""
    image = cv2.resize(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8), (300, 300))
    matrix = framing.square_transform(40, 70, 128)
    ours = cv2.warpAffine(image, matrix, (256, 256), flags=cv2.INTER_CUBIC)
    sliced = cv2.resize(image[70:198, 40:168], (256, 256), interpolation=cv2.INTER_CUBIC)
    assert np.abs(ours[4:-4, 4:-4].astype(int) - sliced[4:-4, 4:-4]).mean() < 1.0


def test_square_box_grows_the_larger_side_by_ten_percent_each_way():
    left, top, side = framing.square_box(np.array([100.0, 50.0, 200.0, 170.0]))  # 100 wide, 120 tall
    assert side == pytest.approx(144.0) and (left, top) == pytest.approx((78.0, 38.0))


def test_a_wandering_head_gets_a_new_box_and_a_lost_face_ends_a_stretch():
    still = np.tile([100.0, 100.0, 200.0, 200.0], (10, 1))
    moved = still + [60.0, 0.0, 60.0, 0.0]
    boxes = np.concatenate([still, still + 1.0, moved, np.full((2, 4), np.nan), moved])
    assert framing.stretches(boxes) == [(0, 20), (20, 30), (32, 42)]


def test_faceless_frames_have_no_crop():
    transforms = np.full((3, 2, 3), np.nan)
    transforms[1] = [[0.01, 0.0, -1.0], [0.0, 0.01, -1.0]]
    crops = framing.box_transforms(transforms)
    assert np.isnan(crops[[0, 2]]).all() and np.isfinite(crops[1]).all()


def test_paste_back_of_a_box_crop_reproduces_the_frame():
    """Crop and paste back with the box framing: the face region comes back, everything else is untouched."""
    from skimage.data import astronaut

    from cmet.face.align import hull_masks, paste
    from cmet.face.regions import FACE_OVAL

    image = astronaut()
    face = track(image, smooth=False)
    transforms = framing.box_transforms(face.transforms)
    masks = hull_masks(apply_similarity(transforms, face.landmarks[:, list(FACE_OVAL), :2]))
    pasted = paste(image[None], crop(image[None], transforms), transforms, masks)[0]
    support = cv2.warpAffine(masks[0], transforms[0], image.shape[1::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside, outside = support > 0.99, support == 0
    assert inside.sum() > 5000
    error = np.abs(pasted[inside].astype(float) - image[inside]).mean()
    assert error < 3.0 and np.array_equal(pasted[outside], image[outside])
