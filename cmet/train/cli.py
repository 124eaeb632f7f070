"""``python -m cmet train`` and ``python -m cmet presets`` (also ``python -m cmet.train …``, torchrun-ready).

``train`` indexes the speech pools, reports leave-one-speaker-out accuracy (one training per held-out speaker),
then trains on every speaker and writes the lite checkpoint. Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins a
gloo process group; every rank trains its share of each batch and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cmet.config import REPO_ROOT, lite_dir
from cmet.errors import CmetError

SPEECH_CHOICES = {"emotion2vec": "emotion2vec_plus_large", "egemaps": "egemaps_v02"}
SUBCOMMANDS = ("train", "presets")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``presets`` on a ``python -m cmet`` sub-command parser (no torch import: every
    ``python -m cmet`` command builds this parser, and a missing-weights message must come back in well under 2 s)."""
    train = subparsers.add_parser(
        "train",
        help="train a lite connector (leave-one-speaker-out report, then all speakers)",
        description="Train the lite engine's connector on speech pools laid out <data>/<emotion>/<ID>_….wav|npy.",
    )
    train.add_argument("--engine", choices=["lite"], default="lite", help="only the lite engine is trained here")
    train.add_argument("--speech", choices=list(SPEECH_CHOICES), default="emotion2vec", help="speech encoder space")
    train.add_argument("--data", type=Path, help="pools folder (default: the sample data for --speech)")
    train.add_argument("--steps", type=int, help="optimiser steps per training (default: the recipe's)")
    train.add_argument("--batch-size", type=int, help="examples per step over all processes")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--out", type=Path, help="checkpoint folder (default cmet/data/lite/<speech>)")
    train.add_argument("--state", type=Path, help="resumable training state folder (default outputs/train/<speech>)")
    train.add_argument("--resume", action="store_true", help="continue from the saved state in --state")
    train.add_argument("--no-eval", action="store_true", help="skip the leave-one-speaker-out report")
    train.set_defaults(run=run_train)

    presets = subparsers.add_parser(
        "presets",
        help="build the emotion presets from the sample pools",
        description="Speech semantic vectors of the MEAD emotions and the extended TTS ones vs the MEAD neutral pool.",
    )
    presets.add_argument("--data", type=Path, help="cmet-samples folder (default ../shared/data/cmet-samples)")
    presets.add_argument("--out", type=Path, help="presets folder (default cmet/data/presets)")
    presets.add_argument(
        "--speech", nargs="+", choices=list(SPEECH_CHOICES), default=list(SPEECH_CHOICES), help="encoder spaces"
    )
    presets.set_defaults(run=run_presets)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _logger() -> Callable[[str], None]:
    """Print on rank 0 only, flushed so progress shows under torchrun."""
    if _rank() != 0:
        return lambda message: None
    return lambda message: print(message, flush=True)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (defaults spelled out, paths as given)."""
    parts = ["python", "-m", "cmet", "train", "--engine", "lite", "--speech", args.speech]
    for flag, value in (("--data", args.data), ("--steps", args.steps), ("--batch-size", args.batch_size)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--seed", str(args.seed)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def run_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("gloo")
    try:
        _train(args)
    finally:
        if distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return 0


def _train(args: argparse.Namespace) -> None:
    from cmet.face.au_rig import AU_NAMES, PROTOTYPES
    from cmet.speech import get_encoder
    from cmet.train.data import default_samples, index_clips, load_pools, sample_roots
    from cmet.train.evaluate import leave_one_speaker_out
    from cmet.train.export import checkpoint_meta, save_lite
    from cmet.train.trainer import TrainResult, recipe, train

    log = _logger()
    encoder = get_encoder(SPEECH_CHOICES[args.speech])
    root = args.data if args.data is not None else sample_roots(default_samples(), encoder.name)[0]
    config = recipe(encoder.name, steps=args.steps, seed=args.seed, batch_size=args.batch_size)
    pools = load_pools(index_clips(root, PROTOTYPES), encoder)
    counts = pools.counts()
    log(f"{encoder.name}: {sum(sum(c.values()) for c in counts.values())} clips from {root}")
    log("  " + "; ".join(f"{s}: " + ", ".join(f"{e} {n}" for e, n in c.items()) for s, c in counts.items()))
    state_dir = args.state if args.state is not None else REPO_ROOT / "outputs" / "train" / args.speech
    started = time.perf_counter()
    loso = None
    if args.no_eval or len(pools.speakers) < 2:
        log("no leave-one-speaker-out report" + ("" if args.no_eval else " (the data has one speaker)"))
    else:
        folds: dict[str, TrainResult] = {}
        loso = leave_one_speaker_out(
            pools,
            PROTOTYPES,
            config,
            state_dir=state_dir,
            resume=args.resume,
            log=log,
            on_fold=lambda speaker, fold: folds.__setitem__(speaker, fold),
        )
        log("leave-one-speaker-out accuracy (neutral → 7 emotions, nearest AU prototype):")
        for line in loso.lines():
            log(line)
        for speaker, fold in folds.items():  # each fold's gain comes from the other folds only
            clips = {s: c for s, c in counts.items() if s != speaker}
            data = {"root": _display(root), "source": _source(encoder.name), "clips": clips, "held_out": speaker}
            fold_pools = pools.restrict(s for s in pools.speakers if s != speaker)
            meta = checkpoint_meta(fold, config, encoder.name, list(AU_NAMES), data, None, _command(args), fold_pools)
            meta["output_gain"] = loso.output_gain(exclude=speaker)
            meta["audible"] = loso.audible(exclude=speaker)
            save_lite(fold, state_dir / f"heldout_{speaker}" / args.speech, meta)
    log(f"final: train on {', '.join(pools.speakers)}")
    result = train(pools, PROTOTYPES, config, state_path=state_dir / "final.pt", resume=args.resume, log=log)
    if _rank() != 0:
        return
    data = {"root": _display(root), "source": _source(encoder.name), "clips": counts}
    meta = checkpoint_meta(result, config, encoder.name, list(AU_NAMES), data, loso, _command(args), pools)
    meta["output_gain"] = loso.output_gain() if loso is not None else 1.0
    if loso is not None:  # without a report the engine moves every unit the connector learnt
        meta["audible"] = loso.audible()
    out = args.out if args.out is not None else lite_dir() / args.speech
    folder = save_lite(result, out, meta)
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    log(f"wrote {folder} ({size / 1e6:.2f} MB) after {time.perf_counter() - started:.0f} s")


def _display(path: Path) -> str:
    """A path relative to the checkout's parent when it lies there (no machine-specific prefix in the meta)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(REPO_ROOT.parent))
    except ValueError:
        return str(path)


def _source(encoder: str) -> str:
    from cmet.train.data import EMOTION2VEC

    if encoder == EMOTION2VEC:
        return "the C-MET release's emotion2vec+ large embeddings of MEAD clips"
    return f"{encoder} features of the MEAD clips of the C-MET release"


def run_presets(args: argparse.Namespace) -> int:
    from cmet.train.data import default_samples
    from cmet.train.presets import build_presets, presets_dir, write_presets

    samples = args.data if args.data is not None else default_samples()
    out = args.out if args.out is not None else presets_dir()
    for speech in args.speech:
        written = write_presets(build_presets(samples, SPEECH_CHOICES[speech]), out)
        print(f"{speech}: wrote {len(written)} presets to {written[0].parent}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cmet.train [train|presets] …``; without a sub-command the arguments are ``train``'s."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["train", *argv]
    parser = argparse.ArgumentParser(prog="python -m cmet.train")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CmetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
