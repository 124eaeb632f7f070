"""Face tracking with MediaPipe FaceMesh: 478 landmarks per frame, gap filling, lag-free smoothing.

FaceMesh runs in video mode, so each frame starts from the previous frame's face and the detector
only runs when tracking is lost. Smoothing is zero-phase (a centred Savitzky–Golay fit over time)
and touches only the head's similarity pose and the stable points; lips, jaw, brows and eyelids keep
their per-frame values, so a mouth opening shows on the frame where it happens.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmet import quiet
from cmet.config import MODEL_FPS
from cmet.errors import CmetWarning, InputError
from cmet.face import canonical as _canonical
from cmet.face import identity
from cmet.face.canonical import (
    STABLE,
    apply_similarity,
    eye_centres,
    fit_similarity,
    invert_similarity,
)

MAX_FACES = 4
SAMPLE_EVERY = 25  # frames between looks for a second face while one is followed
MAX_GAP = 5
POSE_WINDOW = 9  # frames of the centred pose fit (0.36 s at 25 fps)
STABLE_WINDOW = 5  # lighter: stable points only jitter, they do not move on their own
POLYORDER = 2
SMOOTH_CHUNK = 1000  # frames
FORMAT_VERSION = 1
MIN_SEGMENT = 50  # frames: shorter stretches are not worth a second decoder and a fresh detection
WINDOW = 3.0  # a followed face is read from a square this many times its size…
WINDOW_SHARE = 0.25  # …when that square is smaller than this share of the frame (small faces in HD frames)
RECENTRE = 1 / 6  # the window moves when the face's centre is this share of its side off the window's centre
SEARCH_EVERY = 5  # frames between searches of a frame's parts while no face is found in the whole frame

_local = threading.local()
_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_pool_lock = threading.Lock()


@dataclass
class FaceTrack:
    """Per-frame landmarks of the tracked face; frames without a known face hold NaN everywhere."""

    landmarks: np.ndarray  # [T, 478, 3] float32: x, y in pixels, z in the same pixel scale
    valid: np.ndarray  # [T] bool: a face is known (detected or interpolated)
    detected: np.ndarray  # [T] bool: detected by the model, before gap filling
    boxes: np.ndarray  # [T, 4] float32 x0, y0, x1, y1 of the landmarks
    transforms: np.ndarray  # [T, 2, 3] float32 similarity image → canonical
    size: tuple[int, int]  # (width, height)
    fps: float
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # frames asked for by ``track(keep=)``; not saved

    def __len__(self) -> int:
        return len(self.landmarks)

    def canonical(self) -> np.ndarray:
        """``[T, 478, 2]`` landmarks in canonical coordinates (pose removed)."""
        return apply_similarity(self.transforms, self.landmarks[..., :2]).astype(np.float32)

    def to_image(self, points: np.ndarray, t: int | slice | None = None) -> np.ndarray:
        """Map canonical ``[..., N, 2]`` points to image pixels with frame ``t``'s (or every frame's) inverse pose."""
        matrices = self.transforms if t is None else self.transforms[t]
        return apply_similarity(invert_similarity(matrices.astype(np.float64)), points).astype(np.float32)

    def inter_ocular(self) -> np.ndarray:
        """``[T]`` pixel distance between the eye centres."""
        right, left = eye_centres(self.landmarks[..., :2])
        return np.linalg.norm(left - right, axis=-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write an npz (atomically, so a cache is never half written)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            np.savez_compressed(
                out,
                version=np.array(FORMAT_VERSION),
                landmarks=self.landmarks,
                valid=self.valid,
                detected=self.detected,
                boxes=self.boxes,
                transforms=self.transforms,
                size=np.array(self.size),
                fps=np.array(self.fps),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FaceTrack:
        """Read a track written by :meth:`save`."""
        try:
            with np.load(path) as data:
                if int(data["version"]) != FORMAT_VERSION:
                    raise KeyError("version")
                width, height = (int(v) for v in data["size"])
                return cls(
                    landmarks=data["landmarks"],
                    valid=data["valid"],
                    detected=data["detected"],
                    boxes=data["boxes"],
                    transforms=data["transforms"],
                    size=(width, height),
                    fps=float(data["fps"]),
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise InputError(
                f"{path} is not a face track saved by this version of cmet ({err}); delete it so the video is tracked "
                "again."
            ) from err


def __getattr__(name: str) -> np.ndarray:
    """``CANONICAL`` is measured on first access (see :mod:`cmet.face.canonical`)."""
    if name == "CANONICAL":
        return _canonical.CANONICAL
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def track(
    source: str | os.PathLike | np.ndarray | Iterable[np.ndarray],
    fps: float | None = None,
    smooth: bool = True,
    min_valid_fraction: float = 0.5,
    workers: int = 1,
    keep: tuple[int, ...] = (),
) -> FaceTrack:
    """Track one person's face through a video file or a sequence of RGB uint8 frames (the largest on average).

    ``fps``: for a file, the rate to read it at (``None`` keeps its own); for frames, their rate
    (``None`` means the model rate, 25). Gaps of up to 5 frames are interpolated; a clip where
    fewer than ``min_valid_fraction`` of the frames show a face raises :class:`InputError`.
    ``workers`` > 1 splits a file read at its own rate into that many stretches tracked at once (one
    FaceMesh per thread; MediaPipe releases the GIL), each starting with a fresh detection. The frames numbered
    in ``keep`` are kept (``FaceTrack.kept``), so a later look at them needs no second decode.
    """
    frames, rate, name, times = _open(source, fps)
    segments = _segments(source, fps, workers)
    kept: dict[int, np.ndarray] = {}
    if segments:
        faces, size = _detect_segments(Path(source), segments, name, keep, kept)
    else:
        faces, size = _detect(frames, name, keep, kept)
    person = identity.follow_one(faces, size, min_valid_fraction)
    clock = times if times is not None and len(times) == len(faces) else np.arange(len(faces)) / rate
    clock = np.append(clock, clock[-1] + 1 / rate)  # seconds at each frame's start, and at the end
    if person.others_at is not None:
        warnings.warn(
            f"Several faces were found in {name} (another from {clock[person.others_at]:.1f} s); the one "
            f"{person.position}, the largest on average, is edited wherever it is seen, and no other.",
            CmetWarning,
            stacklevel=2,
        )
    raw, detected = person.landmarks, person.detected
    points, valid = fill_gaps(raw, detected)
    _check_coverage(valid, clock, name, min_valid_fraction)
    transforms = np.full((len(points), 2, 3), np.nan)
    transforms[valid] = fit_similarity(points[valid][:, STABLE, :2], _canonical.CANONICAL[STABLE])
    if smooth:
        points, transforms = smooth_track(points, transforms, valid)
    return FaceTrack(
        landmarks=points.astype(np.float32),
        valid=valid,
        detected=detected,
        boxes=_boxes(points),
        transforms=transforms.astype(np.float32),
        size=size,
        fps=float(rate),
        kept=kept,
    )


def _open(source: object, fps: float | None) -> tuple[Iterator[np.ndarray], float, str, np.ndarray | None]:
    """Frames, their rate, a name for messages and, for a file read at its own rate, each frame's time (s)."""
    if isinstance(source, (str, os.PathLike)):
        from cmet.media import iter_frames, probe

        path = Path(source)
        info = probe(path)
        times = info.frame_times() if fps is None else None  # variable frame rate: messages give real times
        return iter_frames(path, fps=fps), float(fps or info.fps), f"the video {path.name}", times
    if isinstance(source, np.ndarray) and source.ndim == 3:
        source = source[None]
    return iter(source), float(fps or MODEL_FPS), "the frames", None


def _face_mesh(faces: int, static: bool = False):
    """This thread's FaceMesh for up to ``faces`` faces; a video-mode one is reset so a new clip does not
    start from the last clip's face."""
    if not hasattr(_local, "meshes"):
        _local.meshes = {}
    mesh = _local.meshes.get((faces, static))
    if mesh is None:
        import mediapipe as mp

        with quiet.hidden():
            mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=faces,
                refine_landmarks=True,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        _local.meshes[(faces, static)] = mesh
    elif not static:
        mesh.reset()
    return mesh


def _rgb(frame: np.ndarray, index: int, name: str) -> np.ndarray:
    """The frame as contiguous HxWx3 uint8 (grey and RGBA are converted)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise InputError(f"Frame {index} of {name} is {frame.dtype}; pass RGB frames as uint8 arrays (0–255).")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"Frame {index} of {name} has shape {frame.shape}; pass RGB frames shaped height×width×3.")
    return np.ascontiguousarray(frame)


def _detect(
    frames: Iterable[np.ndarray],
    name: str,
    keep: tuple[int, ...] = (),
    kept: dict[int, np.ndarray] | None = None,
    first: int = 0,
) -> tuple[list[list[np.ndarray]], tuple[int, int]]:
    """Every face's pixel landmarks ``[478, 3]`` in every frame, and the frame size (width, height); frames
    numbered (from ``first``) in ``keep`` are copied into ``kept``."""
    # FaceMesh runs its face detector on every frame while it tracks fewer faces than it may, so tracking
    # one face at a time is ~30% cheaper. A look for other faces every SAMPLE_EVERY frames switches to
    # following up to MAX_FACES once a second face shows up (``identity`` then keeps one person).
    follower = _Follower(_face_mesh(1))
    mesh = None
    rows: list[list[np.ndarray]] = []
    size: tuple[int, int] | None = None
    for index, frame in enumerate(frames):
        frame = _rgb(frame, index, name)
        if kept is not None and first + index in keep:
            kept[first + index] = frame.copy()
        height, width = frame.shape[:2]
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise InputError(
                f"Frame {index} of {name} is {width}×{height} but the first was {size[0]}×{size[1]}; "
                "pass frames of one size."
            )
        with quiet.hidden():
            if mesh is None and index % SAMPLE_EVERY == 0:
                if len(_face_mesh(MAX_FACES, static=True).process(frame).multi_face_landmarks or []) > 1:
                    mesh = _face_mesh(MAX_FACES)
            if mesh is None:
                rows.append(follower.find(frame))
            else:
                rows.append(_pixels(mesh.process(frame).multi_face_landmarks or [], width, height))
    if size is None:
        raise InputError(f"{name[0].upper()}{name[1:]} has no frames; pass a video with at least one frame.")
    return rows, size


class _Follower:
    """Follows one face, reading it from a window around where it was when the face is small in the frame.

    FaceMesh looks for a face on a 128² copy of the whole frame, so a face that fills a small part of an HD
    frame (a few pixels there) is missed on some frames and found on others; read from a window three times
    its size it fills a third of the detector's view, and only the window's pixels are copied into MediaPipe.
    The window stays put while the face stays near its centre (the video-mode tracker then follows from
    frame to frame); when it moves, the tracker restarts in the new window. A frame where the window holds
    no face is read whole, and while the whole frame shows none, its four overlapping two-thirds are
    searched every :data:`SEARCH_EVERY` frames.
    """

    def __init__(self, mesh):
        self.mesh = mesh
        self.window: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1
        self.misses = 0

    def find(self, frame: np.ndarray) -> list[np.ndarray]:
        """This frame's face (pixel landmarks ``[478, 3]``), as a list of one, or an empty list."""
        if self.window is not None:
            faces = self._read(frame, self.window, self.mesh)
            if faces:
                self._place(faces[0], frame.shape, self.window)
                return faces
            self.window = None
            self.mesh.reset()
        height, width = frame.shape[:2]
        faces = self._read(frame, (0, 0, width, height), self.mesh)
        if not faces and self.misses % SEARCH_EVERY == 0:
            faces = self._search(frame)
        self.misses = 0 if faces else self.misses + 1
        if faces:
            self._place(faces[0], frame.shape, None)
        return faces

    @staticmethod
    def _read(frame: np.ndarray, box: tuple[int, int, int, int], mesh) -> list[np.ndarray]:
        x0, y0, x1, y1 = box
        part = frame if (x1 - x0, y1 - y0) == frame.shape[1::-1] else np.ascontiguousarray(frame[y0:y1, x0:x1])
        faces = _pixels(mesh.process(part).multi_face_landmarks or [], x1 - x0, y1 - y0)
        return [face + np.array([x0, y0, 0], np.float32) for face in faces[:1]]

    def _search(self, frame: np.ndarray) -> list[np.ndarray]:
        """The largest face in any of the frame's four overlapping two-thirds (each holds any face smaller than a
        third of the frame whole)."""
        height, width = frame.shape[:2]
        part_w, part_h = 2 * width // 3, 2 * height // 3
        static = _face_mesh(MAX_FACES, static=True)
        found = [
            face
            for x0 in (0, width - part_w)
            for y0 in (0, height - part_h)
            for face in self._read(frame, (x0, y0, x0 + part_w, y0 + part_h), static)
        ]
        return [max(found, key=_area)] if found else []

    def _place(self, face: np.ndarray, shape: tuple[int, ...], current: tuple[int, int, int, int] | None) -> None:
        """Keep, move or drop the window for ``face``; the tracker restarts whenever what it reads changes."""
        height, width = shape[:2]
        lo, hi = face[:, :2].min(0), face[:, :2].max(0)
        side = min(WINDOW * float((hi - lo).max()), width, height)
        if side * side > WINDOW_SHARE * width * height:
            if current is not None:
                self.window = None
                self.mesh.reset()
            return
        centre = (lo + hi) / 2
        if current is not None:
            middle = np.array([(current[0] + current[2]) / 2, (current[1] + current[3]) / 2])
            near = np.abs(centre - middle).max() < RECENTRE * (current[2] - current[0])
            if near and 0.8 < side / (current[2] - current[0]) < 1.25:
                return
        size = int(round(side))
        x0 = int(np.clip(round(centre[0] - side / 2), 0, width - size))
        y0 = int(np.clip(round(centre[1] - side / 2), 0, height - size))
        self.window = (x0, y0, x0 + size, y0 + size)
        self.mesh.reset()


def _area(face: np.ndarray) -> float:
    return float(np.prod(face[:, :2].max(0) - face[:, :2].min(0)))


def _segments(source: object, fps: float | None, workers: int) -> list[tuple[int, int]]:
    """``[(start, count)]`` stretches of a video file for parallel tracking; empty when it is not worth it."""
    if workers <= 1 or fps is not None or not isinstance(source, (str, os.PathLike)):
        return []
    from cmet.media import probe

    info = probe(source)
    if not info.seekable:
        return []
    parts = min(workers, info.frames // MIN_SEGMENT)
    if parts <= 1:
        return []
    bounds = np.linspace(0, info.frames, parts + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


def _detect_segments(
    path: Path,
    segments: list[tuple[int, int]],
    name: str,
    keep: tuple[int, ...] = (),
    kept: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], int | None]:
    """:func:`_detect` over stretches of one file at once, joined in order.

    A seek is trusted only where it is proven: each stretch also decodes the frame after its end, which
    must equal the next stretch's first frame, pixel for pixel. Containers whose seeks miss (MPEG-TS with a
    start offset lands up to a second off) are then tracked in one pass instead.
    """
    from cmet.media import iter_frames

    def one(segment: tuple[int, int], last: bool):
        start, count = segment
        ends: dict[str, np.ndarray] = {}

        def frames() -> Iterator[np.ndarray]:
            for index, frame in enumerate(iter_frames(path, start=start, count=count + (not last))):
                if index == 0:
                    ends["first"] = frame
                if index == count:
                    ends["next"] = frame  # the seam check's frame: not tracked here
                    return
                yield frame

        return _detect(frames(), name, keep, kept, start), ends

    lasts = [False] * (len(segments) - 1) + [True]
    results = list(_pool(len(segments)).map(one, segments, lasts))
    parts = [part for part, _ in results]
    seams_hold = all(
        "next" in before and np.array_equal(before["next"], after["first"])
        for (_, before), (_, after) in zip(results[:-1], results[1:])
    )
    if not seams_hold or sum(len(part[0]) for part in parts) != sum(count for _, count in segments):
        return _detect(iter_frames(path), name, keep, kept)
    return [faces for part in parts for faces in part[0]], parts[0][1]


def _pool(workers: int) -> ThreadPoolExecutor:
    """Tracking threads live on between videos, so each keeps its FaceMesh graph (building one takes ~0.1 s)."""
    global _executor, _executor_size
    with _pool_lock:
        if _executor is None or _executor_size < workers:
            _executor, _executor_size = ThreadPoolExecutor(workers, thread_name_prefix="cmet-track"), workers
        return _executor


def _pixels(faces: list, width: int, height: int) -> list[np.ndarray]:
    """Each FaceMesh result as pixel landmarks ``[478, 3]``."""
    scale = np.array([width, height, width], dtype=np.float32)
    return [np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32) * scale for face in faces]


def _largest(faces: list, width: int, height: int) -> np.ndarray:
    """Pixel landmarks of the face whose landmark box has the largest area."""
    return max(_pixels(faces, width, height), key=_area)


def image_landmarks(image: np.ndarray) -> np.ndarray | None:
    """Pixel landmarks ``[478, 3]`` of the largest face in one RGB (or grey) photo, or None without a face."""
    rgb = _rgb(image, 0, "the image")
    with quiet.hidden():
        result = _face_mesh(MAX_FACES, static=True).process(rgb)
    if not result.multi_face_landmarks:
        return None
    return _largest(result.multi_face_landmarks, rgb.shape[1], rgb.shape[0])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fill_gaps(points: np.ndarray, detected: np.ndarray, max_gap: int = MAX_GAP) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate landmarks linearly across gaps of at most ``max_gap`` frames between two detections.

    Leading and trailing gaps and longer gaps stay NaN: there is nothing on one side to trust.
    """
    points = np.array(points, dtype=np.float64)
    valid = detected.copy()
    for start, stop in _runs(~detected):
        if start == 0 or stop == len(detected) or stop - start > max_gap:
            continue
        before, after = points[start - 1], points[stop]
        weights = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
        points[start:stop] = before + weights[:, None, None] * (after - before)
        valid[start:stop] = True
    return points, valid


def _check_coverage(valid: np.ndarray, clock: np.ndarray, name: str, min_fraction: float) -> None:
    """Raise when too few frames have a face; warn when some do not (``clock``: seconds at each frame and the end)."""
    gaps = _runs(~valid)
    if not gaps:
        return
    shown = [f"{clock[start]:.1f}–{clock[stop]:.1f} s" for start, stop in gaps[:4]]
    where = ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]
    if len(gaps) > 4:
        where += f" (and {len(gaps) - 4} more stretches)"
    fraction = valid.mean()
    if fraction < min_fraction:
        raise InputError(
            f"No face found in {name} at {where} (a face is seen in {fraction:.0%} of the frames, "
            f"{min_fraction:.0%} needed); use a clip where one face is clearly visible, well lit and turned "
            "towards the camera most of the time."
        )
    warnings.warn(f"No face found in {name} at {where}; those frames are left unedited.", CmetWarning, stacklevel=3)


def _savgol(values: np.ndarray, window: int) -> np.ndarray:
    """Centred (zero-lag) quadratic fit over time along axis 0; short runs are left as they are."""
    from scipy.signal import savgol_filter

    window = min(window, len(values) - (len(values) % 2 == 0))
    if window <= POLYORDER + 1:
        return values
    return savgol_filter(values, window, POLYORDER, axis=0, mode="interp")


def smooth_track(points: np.ndarray, transforms: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove tracking jitter without delaying expressions.

    The pose (scale, angle and the eye midpoint in pixels) is smoothed with a centred window, the
    stable points are lightly smoothed in canonical space, every other point keeps its per-frame
    canonical position, and the landmarks are mapped back with the smoothed pose. Each run of valid
    frames is smoothed on its own. Returns smoothed ``(points [T, 478, 3], transforms [T, 2, 3])``.
    """
    points = points.astype(np.float64).copy()
    transforms = transforms.astype(np.float64).copy()
    for start, stop in _runs(valid):
        span = slice(start, stop)
        stable = _savgol(apply_similarity(transforms[span], points[span][:, STABLE, :2]), STABLE_WINDOW)
        to_image = invert_similarity(transforms[span])
        scale = np.hypot(to_image[:, 0, 0], to_image[:, 1, 0])
        angle = np.unwrap(np.arctan2(to_image[:, 1, 0], to_image[:, 0, 0]))
        pose = _savgol(np.column_stack([np.log(scale), angle, to_image[:, :, 2]]), POSE_WINDOW)
        new_scale, cos, sin = np.exp(pose[:, 0]), np.cos(pose[:, 1]), np.sin(pose[:, 1])
        smoothed = np.empty_like(to_image)
        smoothed[:, 0, 0], smoothed[:, 0, 1], smoothed[:, 1, 0], smoothed[:, 1, 1] = cos, -sin, sin, cos
        smoothed[:, :, :2] *= new_scale[:, None, None]
        smoothed[:, :, 2] = pose[:, 2:]
        for chunk in range(start, stop, SMOOTH_CHUNK):  # whole-face copies only a chunk at a time (long videos)
            rows, local = (
                slice(chunk, min(chunk + SMOOTH_CHUNK, stop)),
                slice(chunk - start, chunk - start + SMOOTH_CHUNK),
            )
            canonical = apply_similarity(transforms[rows], points[rows, :, :2])
            canonical[:, STABLE] = stable[local]
            points[rows, :, :2] = apply_similarity(smoothed[local], canonical)
        points[span, :, 2] *= (new_scale / scale)[:, None]
        transforms[span] = invert_similarity(smoothed)
    return points, transforms


def _boxes(points: np.ndarray) -> np.ndarray:
    """``[T, 4]`` landmark boxes; NaN rows where there is no face."""
    xy = points[..., :2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=1).astype(np.float32)


def track_cached(
    video: str | os.PathLike, cache_file: str | os.PathLike, workers: int = 1, keep: tuple[int, ...] = ()
) -> FaceTrack:
    """:func:`track` of a video file through an on-disk cache; a damaged or outdated entry is rebuilt (a cached
    track keeps no frames)."""
    cache = Path(cache_file)
    if cache.is_file():
        try:
            return FaceTrack.load(cache)
        except InputError:
            pass
    face = track(video, workers=workers, keep=keep)
    face.save(cache)
    return face
