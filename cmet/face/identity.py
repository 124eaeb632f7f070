"""One person for the whole clip: faces found frame by frame are linked into people, and one person is kept.

Picking "the largest face" frame by frame jumps between two people of about the same size (someone beside a
mirror, two speakers side by side). Instead each face joins the person whose last seen box it overlaps (or
starts a new one), and the person with the largest face on average over the whole clip — absent frames count
as zero, so a passer-by does not win — is edited in every frame where they are seen, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmet.face.canonical import N_LANDMARKS

MAX_STEP = 0.5  # a face's centre moves at most half its size between two sightings of the same person


@dataclass
class Chosen:
    """The kept person's landmarks per frame (NaN where unseen), where they are, and when someone else shows."""

    landmarks: np.ndarray  # [T, 478, 3]
    detected: np.ndarray  # [T] bool
    others_at: int | None  # first frame showing a face of someone else; None: one person only
    position: str  # "on the left", "at the top right", "in the centre"…


def _box(face: np.ndarray) -> np.ndarray:
    xy = face[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def link(boxes_per_frame: list[list[np.ndarray]]) -> list[list[int]]:
    """A person number for every face box of every frame: the nearest person (by box centre, relative to face
    size) that is not taken in that frame, or a new person."""
    last: list[np.ndarray] = []  # each person's most recent box
    labels: list[list[int]] = []
    for boxes in boxes_per_frame:
        pairs = []
        for i, box in enumerate(boxes):
            centre, size = (box[:2] + box[2:]) / 2, max(float(np.max(box[2:] - box[:2])), 1.0)
            for person, seen in enumerate(last):
                step = float(np.linalg.norm(centre - (seen[:2] + seen[2:]) / 2)) / size
                if step < MAX_STEP:
                    pairs.append((step, i, person))
        found = [-1] * len(boxes)
        taken: set[int] = set()
        for _, i, person in sorted(pairs):
            if found[i] < 0 and person not in taken:
                found[i] = person
                taken.add(person)
        for i, box in enumerate(boxes):
            if found[i] < 0:
                found[i] = len(last)
                last.append(box)
            last[found[i]] = box
        labels.append(found)
    return labels


def follow_one(faces: list[list[np.ndarray]], size: tuple[int, int], min_fraction: float = 0.5) -> Chosen:
    """The person with the largest face on average (among those seen in at least ``min_fraction`` of the frames,
    when anyone is), with their landmarks in every frame where they are seen."""
    boxes = [[_box(face) for face in frame] for frame in faces]
    labels = link(boxes)
    people = 1 + max((p for frame in labels for p in frame), default=-1)
    area = np.zeros(people)
    seen = np.zeros(people)
    centres = np.zeros((people, 2))
    for frame, found in zip(boxes, labels):
        for box, person in zip(frame, found):
            area[person] += float(np.prod(box[2:] - box[:2]))
            seen[person] += 1
            centres[person] += (box[:2] + box[2:]) / 2
    landmarks = np.full((len(faces), N_LANDMARKS, 3), np.nan, np.float32)
    if not people:
        return Chosen(landmarks, np.zeros(len(faces), bool), None, "")
    eligible = seen >= min_fraction * len(faces)
    person = int(np.argmax(np.where(eligible, area, -1.0) if eligible.any() else area))
    others_at = None
    for t, (frame, found) in enumerate(zip(faces, labels)):
        if person in found:
            landmarks[t] = frame[found.index(person)]
        if others_at is None and any(p != person for p in found):
            others_at = t
    centre = centres[person] / seen[person] / np.array(size, dtype=np.float64)
    return Chosen(landmarks, ~np.isnan(landmarks[:, 0, 0]), others_at, _position(*centre))


def _position(x: float, y: float) -> str:
    """Where a point (as fractions of the frame) is, in words."""
    across = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    down = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    if across and down:
        return f"at the {down} {across}"
    if across:
        return f"on the {across}"
    return f"at the {down}" if down else "in the centre"
