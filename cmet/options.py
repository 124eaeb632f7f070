"""Each engine's knobs as one frozen dataclass, and the command-line options derived from them.

The API (``EmotionEditor.load(lite=…, official=…)``), the CLI and the app all build their options from these
classes, so a default or a list of choices is written once, here. Pure dataclasses: importing this costs nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from cmet.errors import InputError

ENGINES = ("auto", "lite", "official")
DEVICES = ("auto", "cpu", "cuda")
LIPS = ("video", "audio")
PRECISIONS = ("auto", "fp32")


def _option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field that also describes its command-line option."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class LiteOptions:
    """How the lite engine runs."""

    # On CPU the warp's kernels are small: one intra-op thread per render batch is faster than many and leaves the
    # other cores to the decoder, encoder and FaceMesh threads (render 7.6 vs 38 ms/frame measured on 2 busy cores).
    torch_threads: int = _option(1, "torch threads per render batch on CPU (lite engine)")
    # Real expressions darken and lighten skin (folds, furrows) where the warp only moves it: cmet.face.shading.
    no_shading: bool = _option(False, "warp only, without expression shading (lite engine)")

    def __post_init__(self) -> None:
        if self.torch_threads < 1:
            raise InputError(f"torch_threads must be at least 1, got {self.torch_threads}.")


@dataclass(frozen=True)
class OfficialOptions:
    """How the official engine runs."""

    # "video" keeps each frame's own lip motion; "audio" predicts the lips from the video's speech with Audio2Lip,
    # as the release does (and then needs Audio2Lip.pt).
    lips: str = _option("video", "where the lips come from (official engine)", LIPS)
    # "auto": bf16 autocast on CUDA (fp16 where bf16 is unsupported), fp32 on CPU; "fp32": fp32 everywhere.
    precision: str = _option("auto", "network precision on CUDA (official engine)", PRECISIONS)
    # torch.compile EDTalk's encoder and decoder: a minute of compiling, worth it for long videos on a GPU.
    compile: bool = _option(False, "torch.compile EDTalk (official engine; pays off on long GPU runs)")
    # crops per EDTalk call while encoding and rendering
    network_batch: int = _option(8, "face crops per EDTalk call (official engine)")

    def __post_init__(self) -> None:
        if self.lips not in LIPS:
            raise InputError(f"lips must be one of {', '.join(LIPS)}, got {self.lips!r}.")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.network_batch < 1:
            raise InputError(f"network_batch must be at least 1, got {self.network_batch}.")


Options = TypeVar("Options", LiteOptions, OfficialOptions)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, options: type[LiteOptions | OfficialOptions]) -> None:
    """One command-line option per field of ``options``, with its default, choices and help."""
    for spec in fields(options):
        if isinstance(spec.default, bool):
            parser.add_argument(_flag(spec.name), action="store_true", help=spec.metadata["help"])
            continue
        kind = type(spec.default)
        help_text = f"{spec.metadata['help']} (default {spec.default})"
        parser.add_argument(
            _flag(spec.name), type=kind, default=spec.default, choices=spec.metadata["choices"], help=help_text
        )


def from_arguments(options: type[Options], args: argparse.Namespace) -> Options:
    """``options`` built from parsed arguments that :func:`add_arguments` declared."""
    return options(**{spec.name: getattr(args, spec.name) for spec in fields(options)})


def add_engine_arguments(parser: argparse.ArgumentParser, engine: str = "auto") -> None:
    """``--engine`` (default ``engine``), ``--device`` and every engine's options: the CLI's and the app's."""
    parser.add_argument("--engine", default=engine, choices=ENGINES)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    add_arguments(parser, LiteOptions)
    add_arguments(parser, OfficialOptions)
