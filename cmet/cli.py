"""``python -m cmet edit|compare|crop|train|download|bench|doctor``.

Every user-facing failure (``CmetError``) is printed as one sentence on stderr with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence

from cmet import quiet
from cmet.config import STRENGTH_RANGE, X264_PRESETS, RuntimeConfig
from cmet.errors import CmetError, CmetWarning, InputError
from cmet.options import LiteOptions, OfficialOptions, add_engine_arguments, from_arguments

Command = Callable[[argparse.Namespace], int]
_STRENGTH = "between {:g} and {:g}".format(*STRENGTH_RANGE)
_VERBOSE = "also show the log lines of MediaPipe, TensorFlow Lite and FunASR (hidden by default)"


def _doctor(args: argparse.Namespace) -> int:
    from cmet.doctor import diagnose

    report = diagnose()
    print("\n".join(report.lines()))
    return 0 if report.lite_ok else 1


def _target(values: list[str]) -> list[str] | str:
    """``--target preset:happy`` stays a preset name; anything else is a list of clips."""
    return values[0] if len(values) == 1 and values[0].lower().startswith("preset:") else values


class _TqdmProgress:
    """Adapts the pipeline's ``progress(fraction, message)`` to a tqdm bar."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {postfix}", file=sys.stderr)

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(1000 * fraction)
        self.bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self.bar.close()


def _editor(args: argparse.Namespace):
    from cmet.pipeline import EmotionEditor

    runtime = RuntimeConfig(batch_size=args.batch_size, x264_preset=args.x264_preset)
    lite, official = from_arguments(LiteOptions, args), from_arguments(OfficialOptions, args)
    editor = EmotionEditor.load(args.engine, args.device, runtime, lite=lite, official=official)
    print(f"engine: {editor.engine_name} on {editor.device} ({editor.engine_reason})", file=sys.stderr)
    return editor


def _edit(args: argparse.Namespace) -> int:
    editor = _editor(args)
    bar = _TqdmProgress()
    try:
        result = editor.edit(args.video, args.reference, _target(args.target), args.strength, args.output, bar)
    finally:
        bar.close()
    print(f"wrote {result.path} ({result.frames} frames at {result.fps:g} fps)")
    print(f"timings: {result.timing_line()}")
    return 0


def _emotions_from_list(items: list[str]) -> dict[str, list[str] | str]:
    """``NAME`` (a preset) or ``NAME=clip1.wav,clip2.wav`` (target speech)."""
    targets: dict[str, list[str] | str] = {}
    for item in items:
        name, _, spec = item.partition("=")
        clips = [c for c in spec.split(",") if c] if spec else []
        targets[name] = clips if clips else f"preset:{name}"
    return targets


def _emotions_from_json(text: str, strength: float) -> tuple[dict[str, list[str] | str], dict[str, float]]:
    """``{"NAME": "preset:X" | "clip" | ["clip", …] | {"target": …, "strength": s}}``: any clip name, commas too."""
    example = '{"happy": "preset:happy", "sarcastic": ["take 1, loud.wav", "take 2.wav"]}'
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--emotions-json is not valid JSON ({exc.msg}); write it like {example}.") from None
    if not isinstance(spec, dict) or not spec:
        raise InputError(f"--emotions-json must be a JSON object of emotions, such as {example}.")
    targets: dict[str, list[str] | str] = {}
    strengths: dict[str, float] = {}
    for name, value in spec.items():
        own = strength
        if isinstance(value, dict):
            own = value.get("strength", strength)
            value = value.get("target")
        if isinstance(value, str):
            value = value if value.lower().startswith("preset:") else [value]
        clips_ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(c, str) for c in value))
        if not clips_ok or not isinstance(own, int | float):
            raise InputError(
                f'--emotions-json: "{name}" must be "preset:NAME", a clip, a list of clips, or '
                '{"target": …, "strength": number}.'
            )
        targets[name], strengths[name] = value, float(own)
    return targets, strengths


def _compare(args: argparse.Namespace) -> int:
    editor = _editor(args)
    if args.emotions_json is not None:
        targets, strength = _emotions_from_json(args.emotions_json, args.strength)
    else:
        targets, strength = _emotions_from_list(args.emotion), args.strength
    bar = _TqdmProgress()
    try:
        result = editor.compare(args.video, args.reference, targets, strength, args.output, bar)
    finally:
        bar.close()
    print(f"wrote {result.path} ({result.frames} frames at {result.fps:g} fps)")
    print(f"timings: {result.timing_line()}")
    return 0


def _crop(args: argparse.Namespace) -> int:
    from cmet.crops import crop_image, crop_video

    if args.image:
        crop_image(args.input, args.output)
        print(f"wrote {args.output} (256×256, the template framing of identity images)")
    else:
        frames = crop_video(args.input, args.output)
        print(f"wrote {args.output} ({frames} frames of 256×256 crops, as the official engine sees them)")
    return 0


def _batch_size(text: str) -> int:
    """0 or less would silently mean one batch of the whole video: the memory this option exists to save."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of frames, at least 1 (got {text!r})")
    return int(text)


def _engine_options(parser: argparse.ArgumentParser) -> None:
    add_engine_arguments(parser)
    runtime = RuntimeConfig()
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=runtime.batch_size,
        help="at most this many frames rendered per batch (fewer above 512²; lower it to save memory)",
    )
    parser.add_argument(
        "--x264-preset",
        default=runtime.x264_preset,
        choices=X264_PRESETS,
        help="output encoder speed: slower presets make smaller files at the same quality "
        f"(default {runtime.x264_preset})",
    )
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cmet", description="Speech-driven emotion editing of talking-face video."
    )
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE)
    sub = parser.add_subparsers(dest="command", required=True)
    edit = sub.add_parser("edit", help="change the emotion of a talking-face video")
    edit.add_argument("video")
    edit.add_argument(
        "--reference", nargs="*", default=[], help="neutral speech clips (audio files or .npy embeddings)"
    )
    edit.add_argument("--target", nargs="+", required=True, help="emotional speech clips, or preset:NAME")
    edit.add_argument(
        "--strength", type=float, default=1.0, help=f"{_STRENGTH}; 1 = as the speech says; 0 = unchanged; <0 = opposite"
    )
    edit.add_argument("-o", "--output", required=True)
    _engine_options(edit)
    edit.set_defaults(run=_edit)
    compare = sub.add_parser("compare", help="render several emotions side by side in one labelled grid video")
    compare.add_argument("video")
    compare.add_argument("--reference", nargs="*", default=[])
    emotions = compare.add_mutually_exclusive_group(required=True)
    emotions.add_argument("--emotion", nargs="+", help="NAME (a preset) or NAME=clip1.wav,clip2.wav (target speech)")
    emotions.add_argument(
        "--emotions-json",
        metavar="JSON",
        help='the same as JSON, for clip names with commas: {"happy": "preset:happy", "sarcastic": ["a, b.wav"]}; '
        'a value may also be {"target": …, "strength": 1.5}',
    )
    compare.add_argument("--strength", type=float, default=1.0, help=_STRENGTH)
    compare.add_argument("-o", "--output", required=True)
    _engine_options(compare)
    compare.set_defaults(run=_compare)
    crop = sub.add_parser("crop", help="write the 256² face crops the official engine sees (video) or an identity crop")
    crop.add_argument("input", help="a video (crops of every frame, with its audio) or, with --image, a still image")
    crop.add_argument("--image", action="store_true", help="the input is a still image: write one PNG/JPEG crop")
    crop.add_argument("-o", "--output", required=True)
    crop.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)
    crop.set_defaults(run=_crop)
    from cmet.bench import add_parser as add_bench
    from cmet.download import add_parser as add_download
    from cmet.evaluation import add_parser as add_eval
    from cmet.train.cli import add_parser as add_train

    add_train(sub)
    add_download(sub)
    add_bench(sub)
    add_eval(sub)
    doctor = sub.add_parser("doctor", help="versions, device, ffmpeg and which engines' weights are present")
    doctor.set_defaults(run=_doctor)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """User warnings read as one line, without the source location."""
    if issubclass(category, CmetWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        quiet.set_verbose(True)
    quiet.install()
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except CmetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output was written.", file=sys.stderr)
        return 130
