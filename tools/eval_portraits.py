"""How often an independent classifier sees each emotion appear on faces cmet has never seen.

Every neutral photo given is framed (head and shoulders, 320x320), made to talk as the examples are
(``cmet.assets.talking_clip``: the rig moves the jaw with a spoken sentence, with a small head motion), edited by
``cmet eval`` with every preset at every strength, and counted: a face *shows* an emotion when the classifier's
probability for it rises by at least ``RISE`` over the unedited clip. Files that are not images of a face are skipped.

The README's figures come from the first 12 neutral front photos of the Face Research Lab London Set
(CC BY 4.0; github.com/debruine/webmorphR.stim, ``inst/neutral_front``), none of which cmet was fitted to:

    python tools/eval_portraits.py /path/to/webmorphR.stim/inst/neutral_front --limit 12 \
        --emotions happy sad surprised angry --strength 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmet import assets  # noqa: E402
from cmet.errors import InputError  # noqa: E402
from cmet.evaluation import DEFAULT_EMOTIONS, EmotionResult, EvalOptions, evaluate  # noqa: E402

RISE = 0.01  # the classifier's probabilities are printed to two decimals; a smaller rise is not visible there
SIDE = 320  # the examples' size
FACE_SHARE = 0.45  # face height (brow to chin, FaceMesh) as a share of the frame, as in the examples


def frame_portrait(image: np.ndarray) -> np.ndarray | None:
    """A ``SIDE``² head-and-shoulders crop centred on the face FaceMesh finds, or None without a face."""
    from cmet.face.landmarks import track

    try:
        face = track([image], min_valid_fraction=1.0)
    except InputError:
        return None
    points = face.landmarks[0, :, :2]
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    half = max(x1 - x0, y1 - y0) / FACE_SHARE / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = np.round([cx - half, cy - half, cx + half, cy + half]).astype(int)
    pad = max(0, -box.min(), box[2] - image.shape[1], box[3] - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[box[1] + pad : box[3] + pad, box[0] + pad : box[2] + pad]
    return cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def rise_table(results: list[EmotionResult]) -> str:
    """Per emotion and strength: on how many faces the classifier's target probability rose, and the means."""
    groups: dict[tuple[str, float], list[EmotionResult]] = defaultdict(list)
    for r in results:
        groups[(r.emotion, r.strength)].append(r)
    lines = ["| emotion | strength | faces where it rises | mean before → after |", "|---|---|---|---|"]
    for (emotion, strength), rows in groups.items():
        before = np.array([r.classifier_before for r in rows])
        after = np.array([r.classifier_after for r in rows])
        risen = int(np.sum(after - before >= RISE))
        lines.append(
            f"| {emotion} | {strength:g} | {risen} of {len(rows)} | {before.mean():.2f} → {after.mean():.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="a folder of neutral face photos (.jpg, .png)")
    parser.add_argument("--limit", type=int, default=12, help="how many photos, in name order")
    parser.add_argument("--emotions", nargs="+", default=list(DEFAULT_EMOTIONS))
    parser.add_argument("--strength", nargs="+", type=float, default=[1.0])
    parser.add_argument("-o", "--output", type=Path, default=Path("cmet-eval-portraits"))
    args = parser.parse_args()
    photos = sorted(
        p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and not p.name.startswith(".")
    )[: args.limit]
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cmet-portraits-") as tmp:
        spoken = assets.speak(assets.SPOKEN, Path(tmp) / "spoken.wav", assets.VOICES["reference"])
        clips = []
        for photo in photos:
            image = cv2.imread(str(photo))
            still = None if image is None else frame_portrait(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if still is None:
                print(f"{photo.name}: not an image with a face, skipped", file=sys.stderr)
                continue
            clips.append(assets.talking_clip(spoken, Path(tmp) / f"{photo.stem}.mp4", still=still))
        options = EvalOptions(tuple(args.emotions), tuple(args.strength))
        results = evaluate(clips, args.output, options, log=lambda line: print(line, file=sys.stderr))
    table = rise_table(results)
    (args.output / "rises.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
