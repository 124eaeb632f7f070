"""EDTalk-framed face crops and paste-back (cmet.face.align)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from cmet.face import align
from cmet.face.canonical import apply_similarity, invert_similarity, mirror_index
from cmet.face.landmarks import track
from cmet.face.regions import FACE_OVAL

EDTALK_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "edtalk"
SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmet-samples" / "video" / "W009_038.mp4"

# dlib-68 left/right partners and midline points (iBUG 300-W numbering).
MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
)
MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)


@pytest.fixture(scope="module")
def portrait():
    """The astronaut image, its single-frame track and its crop transform."""
    image = astronaut()
    face = track(image, smooth=False)
    return image, face, align.crop_transforms(face.transforms)


def _template() -> np.ndarray:
    path = EDTALK_DATA / "M003_template.npy"
    if not path.is_file():
        pytest.skip(f"EDTalk template not found at {path}")
    return np.load(path).astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _after_motion(matrix: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Image → crop matrix for an image moved by ``motion`` (``matrix`` composed with the inverse motion)."""
    back = invert_similarity(np.asarray(motion, dtype=np.float64))
    return np.concatenate([matrix[:, :2] @ back[:, :2], matrix[:, :2] @ back[:, 2:] + matrix[:, 2:]], axis=1)


def _frame_mask(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(mask, matrix.astype(np.float64), (shape[1], shape[0]), flags=flags)


def test_dlib_table_is_mirror_symmetric():
    table = align.DLIB68_FROM_FACEMESH
    mirror = mirror_index()
    assert table.shape == (68,) and len(set(table.tolist())) == 68 and table.max() < 478
    for right, left in MIRROR_PAIRS:
        assert mirror[table[right]] == table[left], (right, left)
    for point in MIDLINE:
        assert mirror[table[point]] == table[point], point


def test_round_trip_reproduces_the_frame(portrait):
    image, face, transforms = portrait
    crops = align.crop(image[None], transforms)
    assert crops.shape == (1, align.CROP_SIZE, align.CROP_SIZE, 3) and crops.dtype == np.uint8
    outline = apply_similarity(transforms, face.landmarks[:, list(FACE_OVAL), :2])
    masks = align.hull_masks(outline)
    pasted = align.paste(image[None], crops, transforms, masks)[0]
    in_frame = _frame_mask(masks[0], transforms[0], image.shape[:2])
    inside, outside = in_frame > 0.99, in_frame == 0
    assert inside.sum() > 5000  # the face, not a sliver
    assert _psnr(pasted[inside], image[inside]) >= 30.0
    assert np.array_equal(pasted[outside], image[outside])


def test_crop_puts_eyes_and_mouth_where_the_template_has_them(portrait):
    template = _template()
    image, _, transforms = portrait
    crop = align.crop(image[None], transforms)
    points = align.dlib68(track(crop, smooth=False).landmarks[0, :, :2])  # found again, on the crop itself
    for part, tolerance in ((align.RIGHT_EYE_68, 5.0), (align.LEFT_EYE_68, 5.0), (align.OUTER_LIPS_68, 12.0)):
        error = np.linalg.norm(points[part].mean(0) - template[part].mean(0))
        assert error < tolerance, f"{part}: {error:.1f} px from the template"


def test_stored_relation_matches_the_template_file():
    _template()
    scale, angle, tx, ty = align.fit_template_relation(EDTALK_DATA / "M003_template.npy")
    stored = align.CANONICAL_TO_CROP
    assert scale == pytest.approx(stored[0], rel=0.01)
    assert angle == pytest.approx(stored[1], abs=0.005)
    assert (tx, ty) == pytest.approx(stored[2:], abs=0.75)


def test_crop_undoes_head_motion(portrait):
    """Frames of a moving head (shift, turn, zoom) give the same crop: the transform follows the face."""
    image, _, transforms = portrait
    height, width = image.shape[:2]
    motions = [cv2.getRotationMatrix2D((width / 2, height / 2), a, z) for a, z in ((0, 1), (8, 1.1), (-6, 0.85))]
    motions[1][:, 2] += (12, -7)
    frames = np.stack([cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_CUBIC) for m in motions])
    crops = align.crop(frames, np.stack([_after_motion(transforms[0], m) for m in motions]))
    centre = (slice(60, 200), slice(60, 200))
    for other in crops[1:]:
        assert _psnr(other[centre], crops[0][centre]) > 25.0


def test_paste_matches_colour_at_the_seam(portrait):
    image, face, transforms = portrait
    crops = align.crop(image[None], transforms)
    tinted = np.clip(crops.astype(np.int16) + np.array([-30, 15, -20]), 0, 255).astype(np.uint8)
    outline = apply_similarity(transforms, face.landmarks[:, list(FACE_OVAL), :2])
    masks = align.hull_masks(outline)
    pasted = align.paste(image[None], tinted, transforms, masks)[0]
    inside = _frame_mask(masks[0], transforms[0], image.shape[:2]) > 0.99
    drift = pasted[inside].astype(np.float64).mean(0) - image[inside].astype(np.float64).mean(0)
    assert np.abs(drift).max() < 4.0, drift  # the renderer's tint is gone


def test_face_at_the_frame_edge(portrait):
    """A face half out of the picture: crops repeat the border, paste only touches pixels inside the frame."""
    image, _, transforms = portrait
    shift = np.float64([[1, 0, -200], [0, 1, 0]])
    frame = cv2.warpAffine(image, shift, image.shape[1::-1])
    moved = _after_motion(transforms[0], shift)[None]
    crops = align.crop(frame[None], moved)
    mask = np.ones((align.CROP_SIZE, align.CROP_SIZE), np.float32)
    pasted = align.paste(frame[None], crops, moved, mask)[0]
    visible = _frame_mask(mask, moved[0], frame.shape[:2]) > 0.99
    assert visible.any() and not visible.all()
    assert _psnr(pasted[visible], frame[visible]) > 30.0


def test_faceless_frames_are_left_alone(portrait):
    image, _, transforms = portrait
    nan = np.full_like(transforms, np.nan)
    crops = align.crop(image[None], nan)
    assert not crops.any()
    pasted = align.paste(image[None], np.full_like(crops, 255), nan, np.ones((256, 256), np.float32))
    assert np.array_equal(pasted[0], image)


def test_crop_does_not_jitter_on_real_video():
    """Frame-to-frame acceleration of the crop on a real talking-head clip stays well below a pixel."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"sample video not found at {SAMPLE_VIDEO}")
    from cmet.media import iter_frames

    face = track(itertools.islice(iter_frames(SAMPLE_VIDEO), 75))
    crop_to_image = invert_similarity(align.crop_transforms(face.transforms))
    corners = apply_similarity(crop_to_image, np.array([[0.0, 0.0], [256.0, 0.0], [0.0, 256.0], [256.0, 256.0]]))
    acceleration = np.linalg.norm(np.diff(corners, 2, axis=0), axis=-1)
    assert np.sqrt(np.mean(acceleration**2)) < 0.5


def test_mask_fades_out_inside_the_crop_when_the_face_fills_it():
    """A face outline reaching past the crop still fades to zero at the crop's edge: no seam where the crop ends."""
    outline = np.array([[[-20.0, -20.0], [280.0, -20.0], [280.0, 280.0], [-20.0, 280.0]]])
    mask = align.hull_masks(outline)[0]
    edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert edge.max() == 0.0 and mask[128, 128] == 1.0
    assert mask[int(align.FEATHER) // 3, 128] < 0.5  # the fade happens inside the crop


def test_paste_fades_the_face_in_over_the_feather_width():
    """Blend weight read off a pasted checkerboard (±100 around the frame's grey, so the seam's colour matching
    has nothing to shift): 1 at the centre, 0 outside the outline, and a ramp about ``FEATHER`` pixels wide, so
    the edited face has no hard edge."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    outline = 128 + 80 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    mask = align.hull_masks(outline[None])[0]
    grey = np.full((1, 256, 256, 3), 128, np.uint8)
    checker = (np.indices((256, 256)).sum(0) % 2 * 2 - 1)[..., None] * np.ones(3)
    crop = (128 + 100 * checker).astype(np.uint8)[None]
    pasted = align.paste(grey, crop, np.eye(2, 3)[None], mask)[0]
    weight = np.abs(pasted[128, 128:, 0].astype(np.float64) - 128) / 100  # centre → right edge
    assert weight[:40].min() > 0.97 and weight[90:].max() == 0.0
    ramp = int(((weight > 0.05) & (weight < 0.95)).sum())
    assert 0.5 * align.FEATHER <= ramp <= 1.0 * align.FEATHER, weight.round(2)
