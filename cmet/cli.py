"""``python -m cmet edit|compare|train|download|bench|doctor``.

Every user-facing failure (``CmetError``) is printed as one sentence on stderr with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from cmet.errors import CmetError, CmetWarning

Command = Callable[[argparse.Namespace], int]


def _doctor(args: argparse.Namespace) -> int:
    from cmet.doctor import diagnose

    report = diagnose()
    print("\n".join(report.lines()))
    return 0 if report.lite_ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cmet", description="Speech-driven emotion editing of talking-face video.")
    sub = parser.add_subparsers(dest="command", required=True)
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
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except CmetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output was written.", file=sys.stderr)
        return 130
