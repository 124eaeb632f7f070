"""Measure what real faces do per emotion: FaceMesh geometry of labelled photos, emotion minus neutral.

Writes ``cmet/data/real_faces/expressions.json`` (per emotion and measure: mean, standard error, counts) and
``cmet/data/real_faces/fields.npz`` (the mean canonical displacement of every landmark), which calibrate the lite
rig's emotion prototypes and are the yardstick of ``cmet eval``. Only these aggregate numbers are committed,
never the photos.

Source: github.com/muxspace/facial_expressions (Apache-2.0; ``data/legend.csv`` + ``images/``). Many of its photos
are from Labeled Faces in the Wild and named ``First_Last_0001.jpg``, so one person often has a neutral photo and
an emotional one: for each emotion with enough such people the difference is taken *within person* (identity,
age and camera cancel out) and averaged over people; otherwise all emotional photos against all neutral ones.

    python tools/measure_real_expressions.py /path/to/facial_expressions   # measure, then fit the rig
    python tools/measure_real_expressions.py /path/to/facial_expressions --calibrate-only   # keep the table
    python tools/measure_real_expressions.py                                # re-fit, keeping the read-back shares
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmet.face import canonical as C  # noqa: E402
from cmet.face.au_rig import EMFACS_PROTOTYPES, build_rig  # noqa: E402
from cmet.face.calibration import Calibration, calibrate, transfer_shares  # noqa: E402
from cmet.face.landmarks import image_landmarks  # noqa: E402
from cmet.face.measures import MEASURES, expression_measures  # noqa: E402

LABELS = {  # the dataset's labels → cmet's emotion names
    "neutral": "neutral",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fear",
    "contempt": "contempt",
}
MAX_YAW = 0.5  # |depth difference of the outer eye corners| / IOD (they are ~1.9 IOD apart): about 15° of head turn
MIN_IOD_PX = 30.0
READ_BACK_ROUNDS = 2
MIN_PAIRED_PEOPLE = 25  # fewer same-person pairs than this: compare against all neutral photos instead
PERSON = re.compile(r"(.+)_\d{4}\.\w+$")


def frontal_landmarks(image: np.ndarray) -> np.ndarray | None:
    """``[478, 3]`` pixel landmarks of a near-frontal face, or None (no face, turned, or too small)."""
    points = image_landmarks(image)
    if points is None:
        return None
    right, left = C.eye_centres(points)
    iod = float(np.linalg.norm(left[:2] - right[:2]))
    yaw = abs(float(points[263, 2] - points[33, 2])) / max(iod, 1e-6)
    return None if iod < MIN_IOD_PX or yaw > MAX_YAW else points


def canonical_face(image: np.ndarray) -> np.ndarray | None:
    """``[478, 2]`` canonical landmarks of a near-frontal face, or None (no face, turned, or too small)."""
    points = frontal_landmarks(image)
    if points is None:
        return None
    matrix = C.fit_similarity(points[C.STABLE, :2], C.CANONICAL[C.STABLE])
    return C.apply_similarity(matrix, points[:, :2])


def read_legend(root: Path, max_per_class: int, seed: int) -> list[tuple[str, str, str | None]]:
    """(image path, emotion, person or None), all rare classes and up to ``max_per_class`` of the common ones.

    Photos of people who have both a neutral and an emotional photo are always kept (they make the pairs).
    """
    rows = []
    with open(root / "data" / "legend.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            emotion = LABELS.get(row["emotion"].strip().lower())
            if emotion is None:
                continue
            match = PERSON.match(row["image"])
            rows.append((str(root / "images" / row["image"]), emotion, match.group(1) if match else None))
    emotions_of: dict[str, set[str]] = defaultdict(set)
    for _, emotion, person in rows:
        if person:
            emotions_of[person].add(emotion)
    paired = {p for p, found in emotions_of.items() if "neutral" in found and len(found) > 1}
    rng = np.random.default_rng(seed)
    keep, by_class = [], defaultdict(list)
    for row in rows:
        (keep if row[2] in paired else by_class[row[1]]).append(row)
    for group in by_class.values():
        order = rng.permutation(len(group))[: max(0, max_per_class)]
        keep += [group[i] for i in sorted(order)]
    return keep


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarise(faces: list[tuple[str, str | None, np.ndarray]]) -> tuple[dict, dict[str, np.ndarray]]:
    """The table (per emotion: method, counts, per-measure mean and SE) and mean displacement fields."""
    by_emotion: dict[str, list[np.ndarray]] = defaultdict(list)
    by_person: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for emotion, person, points in faces:
        by_emotion[emotion].append(points)
        if person:
            by_person[(person, emotion)].append(points)
    neutral = np.stack(by_emotion["neutral"])
    table: dict = {"neutral": {"photos": len(neutral)}}
    fields: dict[str, np.ndarray] = {}
    for emotion in sorted(set(by_emotion) - {"neutral"}):
        people = sorted(p for (p, e) in by_person if e == emotion and (p, "neutral") in by_person)
        if len(people) >= MIN_PAIRED_PEOPLE:
            own = np.stack([np.mean(by_person[(p, emotion)], 0) for p in people])
            rest = np.stack([np.mean(by_person[(p, "neutral")], 0) for p in people])
            diffs = own - rest  # [P, 478, 2]
            stats = {k: _mean_se(v) for k, v in _measure_diffs(own, rest).items()}
            entry = {"method": "same person", "people": len(people), "photos": len(by_emotion[emotion])}
            fields[emotion] = diffs.mean(0)
        else:
            own = np.stack(by_emotion[emotion])
            a, b = expression_measures(own), expression_measures(neutral)
            stats = {
                k: (
                    float(a[k].mean() - b[k].mean()),
                    float(np.sqrt(a[k].var(ddof=1) / len(own) + b[k].var(ddof=1) / len(neutral)))
                    if len(own) > 1
                    else float("nan"),
                )
                for k in MEASURES
            }
            entry = {"method": "all photos", "people": None, "photos": len(own)}
            fields[emotion] = own.mean(0) - neutral.mean(0)
        entry["measures"] = {k: {"mean": round(m, 4), "se": round(s, 4)} for k, (m, s) in stats.items()}
        table[emotion] = entry
    return table, fields


def _measure_diffs(own: np.ndarray, rest: np.ndarray) -> dict[str, np.ndarray]:
    a, b = expression_measures(own), expression_measures(rest)
    return {k: a[k] - b[k] for k in MEASURES}


def measure(dataset: Path, out: Path, max_per_class: int, seed: int) -> None:
    """Landmarks of every kept photo → ``expressions.json`` and ``fields.npz`` in ``out``."""
    rows = read_legend(dataset, max_per_class, seed)
    start, faces, skipped = time.time(), [], 0
    for number, (path, emotion, person) in enumerate(rows, 1):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        points = None if image is None else canonical_face(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if points is None:
            skipped += 1
        else:
            faces.append((emotion, person, points))
        if number % 1000 == 0:
            print(f"{number}/{len(rows)} photos, {skipped} skipped, {time.time() - start:.0f} s", flush=True)
    table, fields = summarise(faces)
    table["_about"] = {
        "source": "github.com/muxspace/facial_expressions (Apache-2.0), data/legend.csv + images/",
        "units": "canonical: inter-ocular distance 1, y down; emotion minus neutral",
        "landmarks": "MediaPipe FaceMesh 0.10.21, static image mode, refined (478 points)",
        "filter": f"near-frontal (outer-eye-corner depth difference <= {MAX_YAW} IOD), IOD >= {MIN_IOD_PX} px",
        "photos_read": len(rows),
        "photos_used": len(faces),
        "command": "python tools/measure_real_expressions.py <facial_expressions checkout>",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "expressions.json").write_text(json.dumps(table, indent=1) + "\n")
    np.savez_compressed(out / "fields.npz", **{k: v.astype(np.float32) for k, v in fields.items()})
    print(f"{len(faces)} faces used of {len(rows)} photos in {time.time() - start:.0f} s → {out}")


def neutral_photos(dataset: Path, count: int, seed: int) -> list[np.ndarray]:
    """``count`` near-frontal neutral photos of the dataset, each also at 60% size (the face sizes of videos)."""
    rows = [r for r in read_legend(dataset, 0, seed) if r[1] == "neutral"]
    order = np.random.default_rng(seed).permutation(len(rows))
    stills = []
    for i in order:
        image = cv2.imread(rows[i][0], cv2.IMREAD_COLOR)
        if image is None or canonical_face(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) is None:
            continue
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        stills += [rgb, cv2.resize(rgb, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)]
        if len(stills) >= 2 * count:
            break
    return stills


def read_back(result: Calibration, rig_names: list[str], bases: np.ndarray, stills: list[np.ndarray]) -> dict:
    """Render every fitted prototype on real neutral faces, track the results again and compare what FaceMesh reads
    with what the landmarks were moved by: the rendering chain's share per emotion and measure."""
    from cmet.face.au_rig import AURig
    from cmet.face.landmarks import track
    from cmet.face.warp import Warper, render_expressions

    rig = AURig(names=rig_names, bases=bases * np.array([result.apex[n] for n in rig_names])[:, None, None])
    fitted = [e for e, source in result.sources.items() if source.startswith("fitted")]
    shifts = rig.decode(np.array([[result.prototypes[e].get(n, 0.0) for n in rig_names] for e in fitted]))
    intended: dict[str, list] = {e: [] for e in fitted}
    read: dict[str, list] = {e: [] for e in fitted}
    for still in stills:
        face = track([still], smooth=False, min_valid_fraction=0.0)
        seen_before = canonical_face(still)
        if not face.valid[0] or seen_before is None:
            continue
        start, before = face.canonical()[0], expression_measures(seen_before)
        base = expression_measures(start)
        images = render_expressions(
            np.repeat(still[None], len(shifts), 0),
            np.repeat(face.landmarks[:1, :, :2], len(shifts), 0),
            np.repeat(face.transforms[:1], len(shifts), 0),
            shifts,
            Warper(),
        )
        for emotion, shift, image in zip(fitted, shifts, images):
            seen = canonical_face(image)
            if seen is None:
                continue
            moved, after = expression_measures(start + shift), expression_measures(seen)
            intended[emotion].append([moved[k] - base[k] for k in MEASURES])
            read[emotion].append([after[k] - before[k] for k in MEASURES])
    print(f"read back {sum(map(len, read.values()))} rendered edits on {len(stills)} photos")
    return {e: transfer_shares(np.array(intended[e]), np.array(read[e])) for e in fitted}


def calibrate_rig(out: Path, stills: list[np.ndarray] | None) -> None:
    """Fit the rig's prototypes and apexes to the table in ``out``; with ``stills``, measure how much of each measure
    a rendered edit shows and fit again with that compensated (otherwise the committed shares are kept)."""
    table = json.loads((out / "expressions.json").read_text())
    with np.load(out / "fields.npz") as data:
        fields = {k: data[k] for k in data.files}
    rig = build_rig()
    template = C.canonical_template()
    if stills:
        # The read-back is not quite linear (FaceMesh follows strong edits better), so fit and read twice.
        shares = None
        for _ in range(READ_BACK_ROUNDS):
            fitted = calibrate(rig.names, rig.bases, template, table, fields, EMFACS_PROTOTYPES, transfer=shares)
            shares = read_back(fitted, rig.names, rig.bases, stills)  # at the size the last fit asks for
        shares = {e: {k: round(v, 3) for k, v in m.items()} for e, m in shares.items()}  # as committed
    else:
        shares = Calibration.load(out / "calibration.json").transfer
    for emotion, by_measure in shares.items():
        print(f"read back, {emotion}: " + ", ".join(f"{k} {v:.2f}" for k, v in by_measure.items()))
    result = calibrate(rig.names, rig.bases, template, table, fields, EMFACS_PROTOTYPES, transfer=shares)
    result.save(out / "calibration.json")
    for emotion, units in result.prototypes.items():
        print(f"{emotion:10s} {result.sources[emotion]:45s} {units}")
    print(f"apex scales: {result.apex}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", help="checkout of github.com/muxspace/facial_expressions")
    parser.add_argument("--max-per-class", type=int, default=1200, help="unpaired photos kept per common class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "cmet" / "data" / "real_faces")
    parser.add_argument("--calibrate-only", action="store_true", help="keep the table, redo the rig fit")
    parser.add_argument("--read-back-photos", type=int, default=40, help="neutral photos the rendering is read on")
    args = parser.parse_args(argv)
    stills = None
    if args.dataset is not None:
        if not args.calibrate_only:
            measure(args.dataset, args.out, args.max_per_class, args.seed)
        stills = neutral_photos(args.dataset, args.read_back_photos, args.seed)
    calibrate_rig(args.out, stills)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
