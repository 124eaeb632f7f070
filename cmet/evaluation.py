"""``cmet eval``: judge edits as a person would, against real faces and with a classifier that is not ours.

For each video and emotion the edit is rendered, the output is tracked again with FaceMesh, and the change of
every expression measure (``cmet.face.measures``) is compared with what real faces do (the real-face table in
``cmet/data/real_faces``). Beside the geometry: an independent expression classifier's probabilities before and
after (``cmet.expression_classifier``), how closely the output's mouth opening follows the input's (lips stay the
speaker's), the temporal jitter of the edited landmarks against the input's, the PSNR of the background (pixels
well outside the face must not change) and a before/after contact sheet.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cmet import media
from cmet.assets import example_videos
from cmet.config import REAL_FACES_DIR, RuntimeConfig
from cmet.errors import InputError, MissingWeightsError
from cmet.face import regions as R
from cmet.face.landmarks import FaceTrack, track
from cmet.face.measures import KEY_MEASURES, MEASURES, expression_measures
from cmet.grid import drawable

REAL_TABLE = REAL_FACES_DIR / "expressions.json"
DEFAULT_EMOTIONS = ("happy", "sad", "surprised", "angry", "fear", "disgusted")
RELIABLE_Z = 2.0  # a real mean this many standard errors from zero is a reliable yardstick
CELL = 224  # contact-sheet cell side in pixels
BACKGROUND_MARGIN = 0.6  # IOD beyond the face box that counts as background
# Renders are near-lossless, so the report measures the edit, not x264: at the default CRF 18 a strength-0 and
# a strength-1 render differ by the encoder's own noise on busy backgrounds (39.5 dB on Hopper's flag).
EVAL_CRF = 2


@dataclass(frozen=True)
class EvalOptions:
    """What to render: emotions, at which strengths, from presets or one speaker's own pools."""

    emotions: tuple[str, ...] = DEFAULT_EMOTIONS
    strengths: tuple[float, ...] = (1.0,)
    pools: Path | None = None  # <root>/<emotion>/<speaker>_*.npy|wav, the training layout
    speaker: str | None = None  # whose pools (required with ``pools``)
    classified_frames: int = 12  # frames per clip shown to the classifier


@dataclass
class EmotionResult:
    """One edit of one video, measured."""

    video: str
    emotion: str
    strength: float
    measures: dict[str, float]  # mean change over frames, canonical units (IOD)
    real: dict[str, float]  # real faces, emotion minus neutral
    key: dict[str, float] = field(default_factory=dict)  # key measure → fraction of the real value (signed)
    unreliable: list[str] = field(default_factory=list)  # key measures whose real value is not significant
    classifier_before: float = float("nan")  # probability of the target emotion
    classifier_after: float = float("nan")
    lip_correlation: float = float("nan")
    jitter_ratio: float = float("nan")  # output's landmark jitter / input's
    background_psnr: float = float("nan")  # against a strength-0 render (same codec), outside the face; inf: equal


def load_real_table(path: Path = REAL_TABLE) -> dict:
    if not path.is_file():
        raise MissingWeightsError("the real-face table", path, "python tools/measure_real_expressions.py <dataset>")
    return json.loads(path.read_text())


def speaker_pools(root: Path, speaker: str, emotion: str) -> tuple[list[Path], list[Path]]:
    """(neutral clips, emotion clips) of ``speaker`` in a ``<root>/<emotion>/<speaker>_…`` folder."""

    def clips(name: str) -> list[Path]:
        folder = root / name
        found = sorted(p for p in folder.glob(f"{speaker}_*") if p.suffix.lower() in (".npy", ".wav"))
        if not found:
            raise InputError(f"No {name} clips of speaker {speaker} in {folder}.")
        return found

    return clips("neutral"), clips(emotion)


def _measure_track(face: FaceTrack) -> dict[str, np.ndarray]:
    """Per-frame measures (NaN where no face)."""
    values = expression_measures(face.canonical())
    return {k: np.where(face.valid, v, np.nan) for k, v in values.items()}


def _jitter(face: FaceTrack) -> float:
    """Mean second temporal difference of the expressive landmarks, canonical units."""
    points = face.canonical()[:, list(R.LIPS_OUTER_UPPER + R.LIPS_OUTER_LOWER + R.RIGHT_BROW_UPPER + R.LEFT_BROW_UPPER)]
    if len(points) < 3:
        return float("nan")
    return float(np.nanmean(np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1)))


def _frames_at(path: Path, indices: np.ndarray) -> list[np.ndarray]:
    wanted = set(int(i) for i in indices)
    return [frame for i, frame in enumerate(media.iter_frames(path)) if i in wanted]


def _background_mask(face: FaceTrack, index: int, shape: tuple[int, int]) -> np.ndarray:
    """True where a pixel is well outside the face (the box of its landmarks grown by ``BACKGROUND_MARGIN`` IOD)."""
    points = face.landmarks[index, :, :2]
    margin = BACKGROUND_MARGIN * float(face.inter_ocular()[index])
    x0, y0 = np.floor(points.min(0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(0) + margin).astype(int)
    mask = np.ones(shape, bool)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return mask


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _face_box(face: FaceTrack, index: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square round the face of frame ``index`` (its landmarks' box grown by half), inside the picture."""
    points = face.landmarks[index, :, :2]
    centre = 0.5 * (points.min(0) + points.max(0))
    side = int(min(1.5 * float((points.max(0) - points.min(0)).max()), *shape))
    x0 = int(np.clip(centre[0] - side / 2, 0, shape[1] - side))
    y0 = int(np.clip(centre[1] - side / 2, 0, shape[0] - side))
    return x0, y0, side, side


def _cell(image: np.ndarray, label: str, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    cell = cv2.resize(np.ascontiguousarray(image[y : y + h, x : x + w]), (CELL, CELL), interpolation=cv2.INTER_AREA)
    cv2.rectangle(cell, (0, 0), (CELL, 20), (30, 30, 30), -1)
    cv2.putText(cell, drawable(label, CELL - 8), (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return cell


def evaluate(
    videos: Sequence[str | Path],
    out_dir: str | Path,
    options: EvalOptions | None = None,
    editor=None,
    log: Callable[[str], None] = print,
) -> list[EmotionResult]:
    """Render, measure and picture every (video, emotion, strength); writes ``report.json``, ``report.md`` and
    ``contact_sheet.png`` into ``out_dir``."""
    from cmet.pipeline import EmotionEditor

    options = options or EvalOptions()
    if options.pools is not None and not options.speaker:
        raise InputError("Evaluating with speech pools needs --speaker (whose neutral and emotional clips to use).")
    table = load_real_table()
    editor = editor or EmotionEditor.load(engine="lite", runtime=RuntimeConfig(x264_crf=EVAL_CRF))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[EmotionResult] = []
    rows: list[list[np.ndarray]] = []
    with tempfile.TemporaryDirectory(prefix="cmet-eval-") as tmp:
        for video in map(Path, videos):
            clip = _measure_input(editor, video, options.classified_frames, Path(tmp))
            row = [_cell(clip.frames[clip.show], f"{video.stem[:18]}: input", clip.box)]
            for emotion in options.emotions:
                for strength in options.strengths:
                    log(f"{video.name}: {emotion} at strength {strength:g}")
                    result, picture = _one(editor, clip, emotion, strength, options, table, Path(tmp))
                    results.append(result)
                    row.append(_cell(picture, f"{emotion} x{strength:g}", clip.box))
            rows.append(row)
    width = max(len(r) for r in rows)
    sheet = np.concatenate([np.concatenate(r + [np.zeros_like(r[0])] * (width - len(r)), axis=1) for r in rows], axis=0)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    (out / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    (out / "report.md").write_text(markdown(results) + "\n")
    return results


@dataclass
class _Input:
    """What every edit of one input clip is compared with, measured once."""

    video: Path
    track: FaceTrack
    measures: dict[str, np.ndarray]  # per frame
    sample: list[int]  # frames shown to the classifier and checked for background change
    show: int  # the contact sheet's frame: a mostly closed mouth
    frames: dict[int, np.ndarray]  # the input's sample and shown frames
    unedited: dict[int, np.ndarray]  # the same frames of a strength-0 render (same decode and encode)
    masks: list[np.ndarray]  # background of each sample frame
    box: tuple[int, int, int, int]
    jitter: float
    probabilities: np.ndarray | None  # classifier on the sample frames; None without its weights
    faces: list  # the classifier's own face box on each sample frame (None: not found), reused on the edits


def _measure_input(editor, video: Path, classified: int, tmp: Path) -> _Input:
    source = track(video)
    measures = _measure_track(source)
    mouth = measures["mouth_open"]
    show = int(np.nanargmin(np.abs(mouth - np.nanpercentile(mouth, 30))))
    sample = np.unique(np.linspace(0, len(source) - 1, classified).round().astype(int)).tolist()
    indices = np.union1d(sample, [show])
    frames = dict(zip(indices.tolist(), _frames_at(video, indices)))
    still = tmp / f"{video.stem}_unedited.mp4"
    editor.edit(video, None, "preset:neutral", 0.0, still)
    unedited = dict(zip(indices.tolist(), _frames_at(still, indices)))
    from cmet.expression_classifier import classify, face_box

    faces = [face_box(frames[i]) for i in sample]
    try:
        probabilities = classify([frames[i] for i in sample], faces)
    except MissingWeightsError:
        probabilities = None
    return _Input(
        video,
        source,
        measures,
        sample,
        show,
        frames,
        unedited,
        [_background_mask(source, i, frames[i].shape[:2]) for i in sample],
        _face_box(source, show, frames[show].shape[:2]),
        _jitter(source),
        probabilities,
        faces,
    )


def _one(editor, clip: _Input, emotion: str, strength: float, options: EvalOptions, table: dict, tmp: Path):
    """Render one edit and measure it; returns the result and the edited contact-sheet frame."""
    if options.pools is not None:
        reference, target = speaker_pools(Path(options.pools), options.speaker, emotion)
    else:
        reference, target = None, f"preset:{emotion}"
    edited = tmp / f"{clip.video.stem}_{emotion}_{strength:g}.mp4"
    editor.edit(clip.video, reference, target, strength, edited)
    output = track(edited, min_valid_fraction=0.0)
    before, after = clip.measures, _measure_track(output)
    change = {k: float(np.nanmean(after[k] - before[k])) for k in MEASURES}
    real_entry = table.get(emotion, {}).get("measures", {})
    real = {k: float(v["mean"]) for k, v in real_entry.items()}
    result = EmotionResult(str(clip.video), emotion, strength, change, real)
    for name in KEY_MEASURES.get(emotion, ()):
        if name in real and real[name]:
            result.key[name] = change[name] / (strength * real[name]) if strength else float("nan")
            if abs(real[name]) < RELIABLE_Z * real_entry[name]["se"]:
                result.unreliable.append(name)
    valid = np.isfinite(before["mouth_open"]) & np.isfinite(after["mouth_open"])
    if valid.sum() > 2 and np.std(before["mouth_open"][valid]) > 0:
        result.lip_correlation = float(np.corrcoef(before["mouth_open"][valid], after["mouth_open"][valid])[0, 1])
    result.jitter_ratio = _jitter(output) / max(clip.jitter, 1e-9)
    edited_frames = dict(zip(clip.frames, _frames_at(edited, np.array(list(clip.frames)))))
    if clip.probabilities is not None:
        from cmet.expression_classifier import LABELS, classify

        if emotion in LABELS:
            column = LABELS.index(emotion)
            before = clip.probabilities[:, column]
            after = classify([edited_frames[i] for i in clip.sample], clip.faces)[:, column]
            if np.isfinite(before).any():
                result.classifier_before = float(np.nanmean(before))
                result.classifier_after = float(np.nanmean(after))
    result.background_psnr = _psnr(
        np.concatenate([clip.unedited[i][m] for i, m in zip(clip.sample, clip.masks)]),
        np.concatenate([edited_frames[i][m] for i, m in zip(clip.sample, clip.masks)]),
    )
    return result, edited_frames[clip.show]


def markdown(results: list[EmotionResult]) -> str:
    """The key-measure table (edit vs real faces) and the checks beside it, as Markdown."""
    lines = [
        "| video | emotion | strength | measure | real faces | edit | of real | classifier before → after "
        "| lip corr. | jitter × | background PSNR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, fraction in r.key.items():
            note = " (real value not reliable)" if name in r.unreliable else ""
            lines.append(
                f"| {Path(r.video).name} | {r.emotion} | {r.strength:g} | {name}{note} | {r.real[name]:+.3f} "
                f"| {r.measures[name]:+.3f} | {100 * fraction:.0f}% | {r.classifier_before:.2f} → "
                f"{r.classifier_after:.2f} | {r.lip_correlation:.2f} | {r.jitter_ratio:.2f} "
                f"| {'identical' if np.isinf(r.background_psnr) else f'{r.background_psnr:.1f} dB'} |"
            )
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="render emotions and measure them against real faces (contact sheet, tables, classifier)"
    )
    parser.add_argument("videos", nargs="*", type=Path, help="talking-face videos (default: the app's examples)")
    parser.add_argument("--emotions", nargs="+", default=list(DEFAULT_EMOTIONS), help="presets or pool emotions")
    parser.add_argument("--strength", nargs="+", type=float, default=[1.0], help="one or more strengths")
    parser.add_argument("--pools", type=Path, help="speech pools laid out <root>/<emotion>/<speaker>_….npy|wav")
    parser.add_argument("--speaker", help="whose pools: neutral ones are the reference, emotional ones the target")
    parser.add_argument("-o", "--output", type=Path, default=Path("cmet-eval"), help="folder for the report")
    parser.set_defaults(run=_main)


def _main(args: argparse.Namespace) -> int:
    videos = args.videos or example_videos()
    if not videos:
        raise InputError("Give the talking-face videos to evaluate (the examples are in a checkout's assets/examples).")
    options = EvalOptions(tuple(args.emotions), tuple(args.strength), args.pools, args.speaker)
    results = evaluate(videos, args.output, options, log=lambda line: print(line, file=sys.stderr))
    print(markdown(results))
    print(f"wrote {args.output / 'contact_sheet.png'}, report.md and report.json", file=sys.stderr)
    return 0
