"""The landmark-driven warp: identity at rest, edits that land where asked, a still background, no tearing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from cmet.face import regions as R
from cmet.face.au_rig import default_rig
from cmet.face.landmarks import FaceTrack, track
from cmet.face.warp import Warper, image_displacement, render_expression, render_expressions


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="module")
def face(frame) -> FaceTrack:
    return track(frame, smooth=False)


@pytest.fixture(scope="module")
def rig():
    return default_rig()


def _unit(rig, name: str, value: float = 1.0) -> np.ndarray:
    coeffs = np.zeros(len(rig.names))
    coeffs[rig.names.index(name)] = value
    return rig.decode(coeffs)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _far_from_face(points: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    """Pixels more than ``margin`` × face size outside the landmarks' convex hull."""
    inside = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(inside, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return distance > margin * np.ptp(points, axis=0).max()


def _retrack(image: np.ndarray) -> np.ndarray:
    return track(image, smooth=False).landmarks[0, :, :2]


def test_zero_displacement_reproduces_the_frame(frame, face):
    out = render_expression(frame, face.landmarks[0], face.transforms[0], np.zeros((478, 2)))
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert _psnr(out, frame) >= 40
    crossed = face.landmarks[0, :, :2].copy()  # a tracker glitch: the inner lips overlap by a pixel
    crossed[list(R.LIPS_INNER_LOWER[1:-1]), 1] = crossed[list(R.LIPS_INNER_UPPER[1:-1]), 1] - 1.0
    assert np.array_equal(Warper().warp(frame, crossed, crossed), frame)


def test_a_smile_lifts_the_lip_corners_and_leaves_the_background(frame, face, rig):
    points = face.landmarks[0, :, :2]
    smile = 1.5 * _unit(rig, "AU12")
    out = render_expression(frame, face.landmarks[0], face.transforms[0], smile)
    assert out.shape == frame.shape and out.dtype == np.uint8
    commanded = image_displacement(face.transforms[0], smile)[list(R.LIP_CORNERS), 1].mean()
    moved = (_retrack(out) - points)[list(R.LIP_CORNERS), 1].mean()
    assert commanded < -3.0  # pixels: a clear lift at this face size
    assert 0.6 * commanded > moved > 1.3 * commanded  # FaceMesh reads back about 2/3 of a corner lift (calibration)
    still = _far_from_face(points, frame.shape[:2], 0.15)
    assert still.mean() > 0.5 and np.array_equal(out[still], frame[still])


def test_a_jaw_drop_opens_the_mouth_without_tearing(frame, face, rig):
    points = face.landmarks[0, :, :2]
    jaw = _unit(rig, "AU26")
    out = render_expression(frame, face.landmarks[0], face.transforms[0], jaw)
    dst = points + image_displacement(face.transforms[0], jaw)
    before, commanded = points[14, 1] - points[13, 1], dst[14, 1] - dst[13, 1]
    after = np.subtract(*_retrack(out)[[14, 13], 1])
    assert after - before > 0.6 * (commanded - before) > 2.0
    # no tearing: the map from output to input pixels neither folds (duplicated content) nor jumps (torn content)
    source = Warper().source_map(points, dst, (frame.shape[1], frame.shape[0]))[0].astype(np.float64)
    assert np.isfinite(source).all()
    dx, dy = np.diff(source[..., 0], axis=1), np.diff(source[..., 1], axis=0)
    assert dx.min() > 0.1 and dy.min() > 0.1
    assert max(np.abs(np.diff(source, axis=axis)).max() for axis in (0, 1)) < 2.5
    # and no colour outliers: the face gets no edges sharper than the frame already had
    (x0, y0), (x1, y1) = points.min(0).astype(int), points.max(0).astype(int)
    box = slice(y0, y1), slice(x0, x1)
    sharpest = [np.abs(np.diff(img[box].astype(int), axis=axis)).max() for img in (frame, out) for axis in (0, 1)]
    assert max(sharpest[2:]) <= max(sharpest[:2]) + 10


def test_closing_a_closed_mouth_does_not_fold_the_lips(frame, face, rig):
    points = face.landmarks[0, :, :2]
    dst = points + image_displacement(face.transforms[0], _unit(rig, "AU26", -1.6))  # lower lip past the upper
    source = Warper().source_map(points, dst, (frame.shape[1], frame.shape[0]))[0]
    assert np.gradient(source[..., 1], axis=0).min() > 0.0


def test_edits_follow_the_head_pose(frame):
    """The same canonical 'up' points along the tilted face in a rotated frame."""
    turned = cv2.warpAffine(frame, cv2.getRotationMatrix2D((225, 130), 30, 1.0), (512, 512))
    tilted = track(turned, smooth=False)
    points = tilted.landmarks[0, :, :2]
    up_the_face = points[list(R.LEFT_EYE_CORNERS + R.RIGHT_EYE_CORNERS)].mean(0) - points[list(R.LIP_CORNERS)].mean(0)
    offset = image_displacement(tilted.transforms[0], np.array([[0.0, -1.0]]))[0]
    cosine = offset @ up_the_face / np.linalg.norm(offset) / np.linalg.norm(up_the_face)
    assert cosine > 0.97
    assert np.linalg.norm(offset) == pytest.approx(tilted.inter_ocular()[0], rel=0.05)  # 1 canonical unit = 1 IOD


def test_batches_torch_and_missing_faces(frame, face, rig):
    frames = np.stack([frame, frame, frame])
    landmarks = np.repeat(face.landmarks[:1], 3, axis=0)
    transforms = np.repeat(face.transforms[:1], 3, axis=0)
    transforms[2] = np.nan  # a frame where no face was found
    offsets = np.stack([_unit(rig, "AU12"), _unit(rig, "AU4"), _unit(rig, "AU12")])
    out = render_expressions(frames, landmarks, transforms, offsets)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(out[0], render_expression(frame, face.landmarks[0], face.transforms[0], offsets[0]))
    assert np.array_equal(out[1], render_expression(frame, face.landmarks[0], face.transforms[0], offsets[1]))
    assert not np.array_equal(out[0], out[1])
    assert np.array_equal(out[2], frame)
    src = face.landmarks[0, :, :2]
    dst = src + image_displacement(face.transforms[0], offsets[0])
    tensor_out = Warper().warp(torch.from_numpy(frame), torch.from_numpy(src), torch.from_numpy(dst))
    assert isinstance(tensor_out, torch.Tensor) and tensor_out.dtype == torch.uint8
    assert np.array_equal(tensor_out.numpy(), out[0])


def test_bad_inputs_are_refused(frame, face):
    src = face.landmarks[0, :, :2]
    with pytest.raises(ValueError, match="uint8"):
        Warper().warp(frame.astype(np.float32), src, src)
    with pytest.raises(ValueError, match="differ"):
        Warper().warp(frame, src, src[:100])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(frame, face, rig):
    src = face.landmarks[0, :, :2]
    dst = src + image_displacement(face.transforms[0], _unit(rig, "AU12"))
    cpu = Warper().warp(frame, src, dst)
    gpu = Warper(device="cuda").warp(frame, src, dst)
    on_device = Warper().warp(torch.from_numpy(frame).cuda(), src, dst)
    assert on_device.is_cuda
    for other in (gpu, on_device.cpu().numpy()):
        assert np.abs(other.astype(int) - cpu).max() <= 2 and _psnr(other, cpu) > 45


def test_inplace_draws_on_the_frames_and_otherwise_leaves_them(frame, face, rig):
    """A single edit hands its decoded batch to the warp (no 6 MB copy per HD frame); everyone else keeps theirs."""
    src = face.landmarks[0, :, :2]
    dst = src + image_displacement(face.transforms[0], 1.5 * _unit(rig, "AU12"))
    frames = np.stack([frame, frame])
    copied = Warper().warp(frames, src, dst)
    assert np.array_equal(frames[0], frame) and not np.array_equal(copied[0], frame)
    drawn = Warper().warp(frames, src, dst, inplace=True)
    assert np.shares_memory(drawn, frames) and np.array_equal(drawn, copied)
