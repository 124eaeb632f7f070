"""Measure the shading real expressions bring: per emotion, the mean log ratio of a person's expressive to neutral
luminance in the template frame (an expression ratio image, Liu, Shan & Zhang, SIGGRAPH 2001).

Writes ``cmet/data/real_faces/shading.npz``, which ``cmet.face.shading`` applies after the lite warp: one small
float16 map per emotion and a JSON record (``meta``) of the people and photos behind each. Only means over many
people are written, never a photo or anything taken from one alone.

Photos, labels, same-person pairs and landmarks come as in ``tools/measure_real_expressions.py`` (the
github.com/muxspace/facial_expressions checkout, Apache-2.0). Each near-frontal photo's luminance is mapped
piecewise-affinely onto the canonical template's landmarks, so every face has the same shape and the expression's
geometry is gone; only shading is left. Per person the expressive photos' mean log luminance minus the neutral
ones' is one ratio; its mean and tilt over the skin are removed (exposure and light direction differ between
photos). Over people: a winsorised mean, mirrored (light comes from either side, expressions are symmetric on
average), smoothed, and each cell shrunk towards zero by its own noise (m · m² / (m² + se²)), so that an emotion
with few people keeps only what they agree on. Emotions with fewer than ``MIN_PAIRED_PEOPLE`` pairs are left out.

    python tools/measure_expression_shading.py /path/to/facial_expressions
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from measure_real_expressions import MIN_PAIRED_PEOPLE, frontal_landmarks, read_legend  # noqa: E402

from cmet.face import canonical as C  # noqa: E402
from cmet.face import shading as S  # noqa: E402

LOG_FLOOR = 8.0  # grey levels added before the log, so the noise of dark pixels does not dominate
WINSOR = 0.5  # a person's log ratio is clipped to ±this before averaging (shadows cast by hands, hair, glare)
SMOOTH_CELLS = 1.0  # Gaussian sigma of the final low-pass, in grid cells (~0.03 inter-ocular distances)
MAX_LOG = 0.4  # no mean log ratio beyond ±this (a factor of 1.5) is written


def template_log_luminance(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[SIZE, SIZE]`` log luminance of an RGB photo in the template frame (NaN where the grid leaves the photo);
    the photo is blurred to the grid's cell size first, so the sampling does not alias."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    right, left = C.eye_centres(points[:, :2])
    sigma = 0.5 * S.CELL * float(np.linalg.norm(left - right))
    if sigma > 0.3:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    where = S.grid_positions(points)
    sampled = cv2.remap(grey, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderValue=-1.0)
    return np.where(sampled >= 0, np.log(sampled + LOG_FLOOR), np.nan).astype(np.float32)


def collect(rows: list[tuple[str, str, str | None]]) -> list[tuple[str, str, np.ndarray]]:
    """(emotion, person, template log luminance) of every usable near-frontal photo of ``rows`` (``read_legend``'s)."""
    start, samples = time.time(), []
    for number, (path, emotion, person) in enumerate(rows, 1):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None or person is None:
            continue
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        points = frontal_landmarks(rgb)
        if points is not None:
            samples.append((emotion, person, template_log_luminance(rgb, points)))
        if number % 250 == 0:
            print(f"{number}/{len(rows)} photos, {len(samples)} used, {time.time() - start:.0f} s", flush=True)
    return samples


def flatten(ratio: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``ratio`` minus its weighted least-squares plane over the skin: exposure and light direction are the photos'."""
    centres = S.cell_centres().reshape(-1, 2)
    design = np.column_stack([np.ones(len(centres)), centres])
    known = np.isfinite(ratio.reshape(-1))
    w = weights.reshape(-1) * known
    values = np.where(known, ratio.reshape(-1), 0.0)
    coef = np.linalg.lstsq(design * w[:, None] ** 0.5, values * w**0.5, rcond=None)[0]
    return (ratio.reshape(-1) - design @ coef).reshape(ratio.shape).astype(np.float32)


def person_ratios(samples: list[tuple[str, str, np.ndarray]]) -> tuple[dict[str, list[np.ndarray]], dict[str, int]]:
    """Per emotion, one flattened log ratio per person (their mean expressive minus their mean neutral photo), and
    the photos behind them."""
    by_person: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for emotion, person, log_lum in samples:
        by_person[(person, emotion)].append(log_lum)
    mask = S.skin_mask()
    ratios: dict[str, list[np.ndarray]] = defaultdict(list)
    photos: dict[str, int] = defaultdict(int)
    for (person, emotion), own in sorted(by_person.items()):
        neutral = by_person.get((person, "neutral"))
        if emotion == "neutral" or neutral is None:
            continue
        with warnings.catch_warnings():  # cells off a person's photos stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ratio = np.nanmean(own, 0) - np.nanmean(neutral, 0)
        ratios[emotion].append(flatten(ratio, mask))
        photos[emotion] += len(own)
    return ratios, photos


def mean_log_ratio(ratios: list[np.ndarray]) -> np.ndarray:
    """Winsorised, mirrored, smoothed and noise-shrunk mean of per-person log ratios, on the skin only."""
    stack = np.clip(np.stack(ratios), -WINSOR, WINSOR)
    count = np.isfinite(stack).sum(0)
    mean = np.nan_to_num(np.nanmean(stack, 0))
    variance = np.nan_to_num(np.nanvar(stack, 0, ddof=1)) / np.maximum(count, 1)
    mean, variance = 0.5 * (mean + mean[:, ::-1]), 0.5 * 0.5 * (variance + variance[:, ::-1])  # se² of the mean of two
    mean = cv2.GaussianBlur(mean.astype(np.float32), (0, 0), SMOOTH_CELLS)
    variance = cv2.GaussianBlur(variance.astype(np.float32), (0, 0), SMOOTH_CELLS)
    shrunk = mean * mean**2 / np.maximum(mean**2 + variance, 1e-12)
    return np.clip(shrunk * S.skin_mask(), -MAX_LOG, MAX_LOG)


def summarise(samples: list[tuple[str, str, np.ndarray]]) -> tuple[dict[str, np.ndarray], dict]:
    """Maps of the emotions with enough same-person pairs, and the record of what went into each."""
    ratios, photos = person_ratios(samples)
    maps, counts = {}, {}
    for emotion in sorted(ratios):
        people = len(ratios[emotion])
        counts[emotion] = {"people": people, "photos": photos[emotion], "used": people >= MIN_PAIRED_PEOPLE}
        if people >= MIN_PAIRED_PEOPLE:
            maps[emotion] = mean_log_ratio(ratios[emotion])
    meta = {
        "emotions": sorted(maps),
        "counts": counts,
        "neutral_photos": sum(1 for e, _, _ in samples if e == "neutral"),
        "grid": {"size": [S.SIZE, S.SIZE], "origin": list(S.ORIGIN), "cell": S.CELL},
        "units": "natural log of expressive / neutral luminance, same person, template frame (canonical units)",
        "source": "github.com/muxspace/facial_expressions (Apache-2.0), data/legend.csv + images/",
        "command": "python tools/measure_expression_shading.py <facial_expressions checkout>",
    }
    return maps, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="checkout of github.com/muxspace/facial_expressions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=S.SHADING_FILE)
    args = parser.parse_args(argv)
    rows = read_legend(args.dataset, 0, args.seed)  # no unpaired photos: only same-person differences are used
    maps, meta = summarise(collect(rows))
    arrays = {name: value.astype(np.float16) for name, value in maps.items()}
    np.savez_compressed(args.out, meta=np.array(json.dumps(meta)), **arrays)
    for emotion, count in meta["counts"].items():
        extreme = f", log ratio {maps[emotion].min():+.3f}…{maps[emotion].max():+.3f}" if emotion in maps else ""
        print(f"{emotion:10s} {count['people']:4d} people, {count['photos']:4d} photos{extreme}")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
