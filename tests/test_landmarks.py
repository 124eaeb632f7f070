"""Face tracking: motion following, pose normalisation, gaps, several faces, lag-free smoothing, caching."""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from cmet.errors import CmetWarning, InputError
from cmet.face import canonical as canon
from cmet.face.landmarks import CANONICAL, FaceTrack, fill_gaps, smooth_track, track

CENTRE = (225.0, 130.0)  # roughly the astronaut's face


def _warp(image: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    matrix = cv2.getRotationMatrix2D(CENTRE, angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT), matrix


@pytest.fixture(scope="module")
def moving() -> tuple[list[np.ndarray], np.ndarray]:
    """20 frames of the astronaut turning ±8°, growing 15% and drifting, with the warp matrices."""
    frames, matrices = [], []
    for t in range(20):
        a = t / 19
        frame, matrix = _warp(astronaut(), 8 * np.sin(2 * np.pi * a), 1 + 0.15 * a, (20 * a, -10 * a))
        frames.append(frame)
        matrices.append(matrix)
    return frames, np.stack(matrices)


@pytest.fixture(scope="module")
def moving_track(moving) -> FaceTrack:
    return track(moving[0])


def _no_warnings_track(frames, **kwargs) -> FaceTrack:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CmetWarning)
        return track(frames, **kwargs)


def test_canonical_template_is_frontal_and_normalised():
    assert CANONICAL.shape == (478, 2) and CANONICAL.dtype == np.float32
    right, left = canon.eye_centres(CANONICAL)
    np.testing.assert_allclose(right, [-0.5, 0.0], atol=1e-5)
    np.testing.assert_allclose(left, [0.5, 0.0], atol=1e-5)
    mirrored = CANONICAL[canon.MIRROR] * np.array([-1.0, 1.0])
    np.testing.assert_allclose(mirrored, CANONICAL, atol=1e-5)
    assert canon.MIRROR[33] == 263 and canon.MIRROR[468] == 473 and canon.MIRROR[1] == 1
    nose_tip, upper_lip, chin, forehead = CANONICAL[[4, 13, 152, 10], 1]
    assert forehead < 0 < nose_tip < upper_lip < chin  # y points down
    assert not CANONICAL.flags.writeable


def test_landmarks_follow_affine_motion(moving, moving_track):
    frames, matrices = moving
    result = moving_track
    assert len(result) == 20 and result.size == (512, 512) and result.fps == 25.0
    assert result.detected.all() and result.valid.all()
    still = _no_warnings_track([astronaut()], smooth=False).landmarks[0, :, :2]
    expected = canon.apply_similarity(matrices, still)
    error = np.linalg.norm(result.landmarks[..., :2] - expected, axis=-1)
    assert np.median(error) < 2.0 and error.mean(axis=1).max() < 3.0
    assert result.canonical().std(axis=0).max() < 0.03  # pose removed: the face stands still
    scale = np.sqrt(np.linalg.det(matrices[:, :, :2]))
    np.testing.assert_allclose(result.inter_ocular() / result.inter_ocular()[0], scale / scale[0], rtol=0.03)
    np.testing.assert_allclose(result.to_image(result.canonical()), result.landmarks[..., :2], atol=1e-2)
    assert result.to_image(CANONICAL, 3).shape == (478, 2)
    assert result.to_image(CANONICAL, slice(2, 5)).shape == (3, 478, 2)
    boxes = result.boxes
    assert (boxes[:, 0] < expected[:, 1, 0]).all() and (boxes[:, 3] > expected[:, 152, 1]).all()


def test_no_face_raises_naming_the_times():
    face = astronaut()
    noise = np.random.default_rng(0).integers(0, 256, (30, 512, 512, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"0\.4–1\.6 s"):
        track([face] * 10 + list(noise))
    with pytest.raises(InputError, match=r"No face found in the frames at 0\.0–0\.8 s"):
        track(np.zeros((20, 64, 64, 3), np.uint8))


def test_short_gap_is_interpolated_and_long_gap_left_invalid(moving):
    frames = list(moving[0])
    blank = np.zeros_like(frames[0])
    clip = frames[:8] + [blank] * 3 + frames[11:] + [blank] * 8 + frames[:4]
    with pytest.warns(CmetWarning, match=r"at 0\.8–1\.1 s;"):
        result = track(clip)
    gap = slice(8, 11)
    assert not result.detected[gap].any() and result.valid[gap].all()
    assert not result.valid[20:28].any() and np.isnan(result.landmarks[20:28]).all()
    assert result.valid[28:].all() and result.valid[:20].all()
    reference = track(frames)
    error = np.linalg.norm(result.landmarks[gap, :, :2] - reference.landmarks[gap, :, :2], axis=-1)
    assert error.mean() < 4.0  # linear in-between of a slow motion


def test_fill_gaps_is_linear_and_keeps_edges():
    points = np.zeros((10, 478, 3))
    points[:, :, 0] = np.arange(10)[:, None]
    detected = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0], bool)
    points[~detected] = np.nan
    filled, valid = fill_gaps(points, detected, max_gap=2)
    np.testing.assert_array_equal(valid, [0, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(filled[1:6, 0, 0], [1, 2, 3, 4, 5])
    assert np.isnan(filled[0]).all() and np.isnan(filled[6:]).all()


def test_several_faces_use_the_largest_and_warn():
    crop = astronaut()[20:300, 80:360]
    small = cv2.resize(crop, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((280, small.shape[1] + 300, 3), 128, np.uint8)
    canvas[40 : 40 + small.shape[0], : small.shape[1]] = small
    canvas[:, -280:] = crop
    with pytest.warns(CmetWarning, match="Several faces") as caught:
        result = track([canvas] * 3)
    assert sum("Several faces" in str(w.message) for w in caught) == 1
    assert (result.landmarks[:, :, 0].min(axis=1) > canvas.shape[1] - 280).all()


def test_smoothing_removes_jitter_without_delaying_the_mouth():
    rng = np.random.default_rng(1)
    frames, step = 30, 12
    shapes = np.repeat(CANONICAL[None].astype(np.float64), frames, axis=0)
    lower = np.flatnonzero(CANONICAL[:, 1] > CANONICAL[14, 1] - 1e-6)  # lower lip, chin, jaw
    shapes[step:, lower, 1] += 0.2  # the mouth drops open at one frame
    angle = 0.02 * rng.standard_normal(frames)
    scale = 100 * (1 + 0.01 * rng.standard_normal(frames))
    shift = np.array([256.0, 200.0]) + rng.standard_normal((frames, 2))
    to_image = np.zeros((frames, 2, 3))
    to_image[:, 0, 0] = to_image[:, 1, 1] = scale * np.cos(angle)
    to_image[:, 1, 0] = scale * np.sin(angle)
    to_image[:, 0, 1] = -to_image[:, 1, 0]
    to_image[:, :, 2] = shift
    points = np.zeros((frames, 478, 3))
    points[..., :2] = canon.apply_similarity(to_image, shapes)
    points[..., :2] += 0.5 * rng.standard_normal(points[..., :2].shape)
    valid = np.ones(frames, bool)
    transforms = canon.fit_similarity(points[:, canon.STABLE, :2], CANONICAL[canon.STABLE])
    smoothed, smoothed_transforms = smooth_track(points, transforms, valid)
    opening = np.linalg.norm(smoothed[:, 14, :2] - smoothed[:, 13, :2], axis=-1) / scale
    closed, opened = CANONICAL[14, 1] - CANONICAL[13, 1], CANONICAL[14, 1] - CANONICAL[13, 1] + 0.2
    np.testing.assert_allclose(opening[:step], closed, atol=0.03)
    np.testing.assert_allclose(opening[step:], opened, atol=0.03)
    pose_jitter = np.abs(np.diff(smoothed_transforms[:, :, 2], axis=0)).mean()
    assert pose_jitter < 0.5 * np.abs(np.diff(transforms[:, :, 2], axis=0)).mean()


def test_save_load_round_trip(tmp_path, moving_track):
    path = tmp_path / "cache" / "track.npz"
    original = replace(moving_track, valid=moving_track.valid.copy(), landmarks=moving_track.landmarks.copy())
    original.valid[0] = False  # exercise an invalid (NaN) frame too
    original.landmarks[0] = np.nan
    original.save(path)
    loaded = FaceTrack.load(path)
    for field in ("landmarks", "valid", "detected", "boxes", "transforms"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(original, field))
    assert loaded.size == (512, 512) and loaded.fps == 25.0
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        FaceTrack.load(tmp_path / "bad.npz")


def test_bad_frames_are_input_errors():
    with pytest.raises(InputError, match="uint8"):
        track([np.zeros((64, 64, 3), np.float32)])
    with pytest.raises(InputError, match="no frames"):
        track([])
    with pytest.raises(InputError, match="one size"):
        track([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 32, 3), np.uint8)], min_valid_fraction=0)


def test_sample_video(samples_dir):
    result = track(samples_dir / "video" / "W009_038.mp4")
    assert len(result) > 100 and result.fps == pytest.approx(25.0)
    assert result.valid.mean() > 0.95
    iod = result.inter_ocular()[result.valid] / result.size[0]
    assert 0.1 < np.median(iod) < 0.5


@pytest.fixture(scope="module")
def talking_file(tmp_path_factory):
    """110 frames of a moving face as an MP4 file, long enough to be tracked in two stretches."""
    from cmet import media

    frames = [_warp(astronaut(), 4 * np.sin(t / 8), 1.0, (t / 4, 0))[0] for t in range(110)]
    return media.write_video(tmp_path_factory.mktemp("talk") / "talk.mp4", frames, 25.0)


def test_parallel_stretches_track_like_one_pass(talking_file):
    """Two FaceMesh threads on two halves of a file give the one-pass track, and fd 2 is restored after."""
    import os

    before = os.fstat(2)
    one = track(talking_file)
    two = track(talking_file, workers=2)
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
    assert len(two) == len(one) == 110 and two.valid.all()
    error = np.abs(two.landmarks[..., :2] - one.landmarks[..., :2]).max(axis=(1, 2))
    assert np.median(error) < 0.05 and error.max() < 3.0  # only the frames near the seam may differ


def test_a_seek_that_misses_falls_back_to_one_pass(talking_file, tmp_path, monkeypatch):
    """Stretches are joined only when each seam's frame matches: a seek landing early (simulated) or an
    MPEG-TS file (whose seeks land late) is tracked in one pass, exactly like workers=1."""
    import imageio_ffmpeg

    from cmet import media

    one = track(talking_file)
    real_seek = media._seek_args
    monkeypatch.setattr(media, "_seek_args", lambda probed, source: real_seek(probed, max(source - 3, 0)))
    np.testing.assert_array_equal(track(talking_file, workers=2).landmarks, one.landmarks)
    monkeypatch.setattr(media, "_seek_args", real_seek)

    stream = tmp_path / "talk.ts"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(talking_file), "-c:v", "libx264", "-bf", "2"]
    subprocess.run([*command, "-g", "50", str(stream)], check=True)
    np.testing.assert_array_equal(track(stream, workers=2).landmarks, track(stream).landmarks)


def _two_faces(sizes, hide_left=()) -> list[np.ndarray]:
    """A face beside its mirror image, scaled by ``sizes(t)`` (left, right); the left one hidden at ``hide_left``."""
    crop = cv2.resize(astronaut()[20:300, 80:360], (200, 200), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(24):
        canvas = np.full((240, 480, 3), 128, np.uint8)
        for side, (image, grow) in enumerate(zip((crop, crop[:, ::-1]), sizes(t))):
            face = cv2.resize(image, None, fx=grow, fy=grow, interpolation=cv2.INTER_AREA)
            x = 20 + side * 240
            if not (side == 0 and t in hide_left):
                canvas[20 : 20 + face.shape[0], x : x + face.shape[1]] = face
        frames.append(canvas)
    return frames


def test_two_similar_faces_keep_one_person():
    """Each face a little larger on alternate frames: "the largest per frame" would jump between them."""
    frames = _two_faces(lambda t: (1.0, 0.94) if t % 2 else (0.94, 1.0))
    pattern = r"Several faces .* the one (on|at) the (\w+ )?(left|right), the largest on average"
    with pytest.warns(CmetWarning, match=pattern):
        result = track(frames, smooth=False)
    assert result.valid.all()
    xs = result.landmarks[:, :, 0]
    assert (xs.max(axis=1) < 240).all() or (xs.min(axis=1) > 240).all(), "the edit switched person"


def test_a_hidden_person_is_not_replaced_by_another():
    """While the kept (larger on average) person is hidden for longer than a filled gap, nobody is tracked."""
    frames = _two_faces(lambda t: (1.0, 0.7), hide_left=range(8, 16))
    with pytest.warns(CmetWarning, match="the one on the left"):
        result = track(frames, smooth=False)
    assert not result.valid[8:16].any() and result.valid[:8].all() and result.valid[16:].all()
    assert (result.landmarks[result.valid, :, 0] < 240).all()


def test_a_small_face_in_an_hd_frame_is_found_on_every_frame(tmp_path):
    """A face about 200 px wide in a 1080p frame is a few pixels on FaceMesh's whole-frame detector view: before
    faces were read from a window around them, a tracking thread starting mid-clip lost it for 17 frames."""
    from cmet.bench import make_input

    clip = make_input(tmp_path, 4.2, (1920, 1080))
    one, two = track(clip), track(clip, workers=2)
    assert one.detected.all() and two.detected.all()
    assert np.median(np.linalg.norm(two.landmarks[..., :2] - one.landmarks[..., :2], axis=-1)) < 0.5
