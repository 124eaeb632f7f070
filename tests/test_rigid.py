"""Rigid parts in the lite warp: glasses are found once per clip and their frames stay put while the skin moves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from cmet import media
from cmet.face import regions as R
from cmet.face import rigid as rigid_module
from cmet.face.au_rig import AU_NAMES, EMFACS_PROTOTYPES, default_rig
from cmet.face.landmarks import FaceTrack, track
from cmet.face.rigid import RigidParts, detect, detect_in_video
from cmet.face.warp import Warper, expression_points, render_expressions
from cmet.lite_engine import LiteEngine
from tests.conftest import REPO

HOPPER = REPO / "assets" / "examples" / "hopper_talking.mp4"  # thick dark brow-line glasses
ASTRONAUT = REPO / "assets" / "examples" / "astronaut_talking.mp4"  # no glasses
FRAMES = np.arange(0, 120, 20)


@pytest.fixture(scope="module")
def hopper() -> FaceTrack:
    return track(HOPPER)


@pytest.fixture(scope="module")
def glasses(hopper) -> RigidParts:
    found = detect_in_video(HOPPER, hopper.transforms, hopper.valid)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def rig():
    return default_rig()


def _emotion(rig, name: str, strength: float) -> np.ndarray:
    """Canonical displacement of an EMFACS prototype (fixed here, whatever the shipped calibration says)."""
    units = EMFACS_PROTOTYPES[name]
    return rig.decode(strength * np.array([units.get(unit, 0.0) for unit in AU_NAMES], dtype=np.float32))


def _frame_pixels(glasses: RigidParts, transform: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Image pixels of the glasses frames themselves (the mask less its safety edge) in one frame."""
    scale, (x0, y0) = rigid_module.SCALE, rigid_module.BOX[:2]
    edge = 2 * round(rigid_module.EDGE * scale) + 1
    core = cv2.erode(glasses.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (edge, edge)))
    to_patch = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    matrix = to_patch @ np.vstack([transform, [0, 0, 1]])
    return cv2.warpAffine(core, cv2.invertAffineTransform(matrix), size, flags=cv2.INTER_NEAREST).astype(bool)


def _frame_motion(hopper: FaceTrack, displacement: np.ndarray, parts: RigidParts | None, glasses: RigidParts):
    """Pixels each glasses-frame pixel moves by (over the sampled frames), and the warp's point arguments."""
    transforms = hopper.transforms[FRAMES].astype(np.float64)
    points = expression_points(hopper.landmarks[FRAMES], transforms, displacement, parts)
    reads = Warper().source_map(points[0], points[1], hopper.size, *points[2:])
    width, height = hopper.size
    identity = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1)
    motion = np.linalg.norm(reads - identity, axis=-1)
    on_frames = [motion[k][_frame_pixels(glasses, transforms[k], hopper.size)] for k in range(len(FRAMES))]
    return np.concatenate(on_frames), points


def test_glasses_are_found_on_hopper_and_not_on_faces_without(hopper, glasses):
    assert len(glasses.anchors) > 300
    # the frames run across the nose bridge and round both eyes, and leave the eye openings free
    assert glasses.covers(np.array([[0.0, -0.1], [-0.5, 0.4], [0.5, 0.4]])).all()
    assert not glasses.covers(np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.6]])).any()
    clear = track(ASTRONAUT)
    assert detect_in_video(ASTRONAUT, clear.transforms, clear.valid) is None
    image = astronaut()
    still = track(image, smooth=False)
    assert detect([image], still.transforms[:1]) is None


def test_the_glasses_check_reads_the_frames_the_tracker_kept(glasses, monkeypatch):
    """The check's frames come from the tracking decode (no second decode of the clip), with the same result."""
    tracked = track(HOPPER, workers=2, keep=rigid_module.SAMPLED)
    assert sorted(tracked.kept) == list(rigid_module.SAMPLED)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(media, "iter_frames", no_decoding)
    found = detect_in_video(HOPPER, tracked.transforms, tracked.valid, tracked.kept)
    assert found is not None and np.array_equal(found.mask, glasses.mask)


def test_a_face_without_glasses_in_a_sample_video(samples_dir):
    video = samples_dir / "video" / "W009_038.mp4"
    face = track(video)
    assert detect_in_video(video, face.transforms, face.valid) is None


def test_drawn_glasses_are_found_and_traced():
    image = astronaut().copy()
    face = track(image, smooth=False)
    points = face.landmarks[0, :, :2]
    scale = float(np.linalg.norm(points[263] - points[33])) / 1.6  # about one inter-ocular distance
    for eye in (R.RIGHT_EYE_CORNERS, R.LEFT_EYE_CORNERS):
        centre = points[list(eye)].mean(0) + [0, 0.08 * scale]
        axes = (round(0.42 * scale), round(0.3 * scale))
        cv2.ellipse(
            image, np.round(centre).astype(int).tolist(), axes, 0, 0, 360, (25, 25, 30), max(2, round(0.05 * scale))
        )
    bridge = [
        points[list(eye)].mean(0) + [side * 0.4 * scale, 0.02 * scale]
        for eye, side in ((R.RIGHT_EYE_CORNERS, 1), (R.LEFT_EYE_CORNERS, -1))
    ]
    cv2.line(image, *[np.round(p).astype(int).tolist() for p in bridge], (25, 25, 30), max(2, round(0.05 * scale)))
    worn = track(image, smooth=False)
    found = detect([image], worn.transforms[:1])
    assert found is not None
    assert found.covers(np.array([[0.0, 0.02], [-0.5, 0.38], [0.5, 0.38]])).all()
    assert not found.covers(np.array([[-0.5, 0.0], [0.5, 0.0]])).any()


@pytest.mark.parametrize("emotion", ["surprised", "angry"])
def test_glasses_frames_stay_still_at_strength_two(hopper, glasses, rig, emotion):
    displacement = _emotion(rig, emotion, 2.0)
    bent, _ = _frame_motion(hopper, displacement, None, glasses)
    assert bent.max() > 3.0  # pixels: without rigidity this edit visibly bends the frames
    held, _ = _frame_motion(hopper, displacement, glasses, glasses)
    assert held.max() <= 0.5


def test_a_smile_behind_glasses_lifts_the_lip_corners_as_much_as_without(hopper, glasses, rig):
    displacement = _emotion(rig, "happy", 2.0)
    corners = list(R.LIP_CORNERS)
    lifted = []
    for parts in (glasses, None):
        _, points = _frame_motion(hopper, displacement, parts, glasses)
        reads = Warper().source_map(points[0], points[1], hopper.size, *points[2:])
        # where the pixels that were the lip corners show now: the output pixel that reads from them
        at = np.round(points[0][:, corners]).astype(int)
        lifted.append(np.stack([reads[k, at[k, :, 1], at[k, :, 0], 1] for k in range(len(FRAMES))]) - at[..., 1])
    with_glasses, without = lifted
    assert with_glasses.min() > 2.0  # the skin below the corners is read up there: the corners rose by pixels
    assert np.abs(with_glasses - without).max() < 0.25


def test_the_engine_keeps_glasses_still_and_leaves_other_clips_as_they_were(tmp_path, monkeypatch, rig):
    monkeypatch.setenv("CMET_CACHE", str(tmp_path))
    engine = LiteEngine(device="cpu")
    offsets = np.zeros((200, len(AU_NAMES)), dtype=np.float32)
    offsets[:, AU_NAMES.index("AU1")] = offsets[:, AU_NAMES.index("AU2")] = 2.0
    for video, has_glasses in ((HOPPER, True), (ASTRONAUT, False)):
        analysis = engine.analyse(video, media.probe(video))
        assert (analysis.rigid is not None) == has_glasses
        frames = np.stack(list(media.iter_frames(video, count=4)))
        face, index = analysis.track, np.arange(4)
        with torch.inference_mode():
            plain = render_expressions(
                frames, face.landmarks[:4], face.transforms[:4], rig.decode(offsets[:4]), engine.warper
            )
        assert np.array_equal(engine.render(frames, index, analysis, offsets), plain) != has_glasses
