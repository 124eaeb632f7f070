"""``python -m cmet download``: fetch the official engine's weights where a network exists.

Files: the C-MET checkpoint, ``EDTalk.pt`` and ``Audio2Lip.pt`` from the Hugging Face repo ``coldhyuk/C-MET``
(through :func:`cmet.hub.download`), and emotion2vec+ large from ``emotion2vec/emotion2vec_plus_large``.
``HF_ENDPOINT`` (a mirror) and ``HF_TOKEN`` are honoured. Each file is first asked for once, with a short
timeout and no retries: huggingface_hub otherwise retries a failed request with back-off for ~25 s per file,
so an offline machine would sit for minutes before saying anything. Downloaded files are checked (size as
the hub reports it, a readable header) and every file gets one line: where it went, or why it did not come.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cmet import hub
from cmet.config import HUB_REPO, checkpoints_dir
from cmet.errors import CmetError

PROBE_TIMEOUT_S = 10.0
E2V_PATTERNS = ["*.pt", "*.yaml", "*.json", "*.txt"]  # the model, its config and label list; not the README images


@dataclass
class Outcome:
    """What happened to one file: where it is, or a sentence saying why it is not there."""

    name: str
    path: Path | None = None
    error: str | None = None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``download`` on the CLI's subparsers."""
    parser = subparsers.add_parser("download", help="fetch the official engine's weights (needs network)")
    parser.add_argument("--engine", default="official", choices=["official"], help="whose weights to fetch")
    parser.add_argument(
        "--into-checkpoints",
        action="store_true",
        help=f"write the files under {checkpoints_dir()} instead of the Hugging Face cache",
    )
    parser.set_defaults(run=run)
    return parser


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fetch_official(into_checkpoints: bool = False, log: Callable[[str], None] = _to_stderr) -> list[Outcome]:
    """Every file of the official engine and emotion2vec+, each announced in ``log`` before it is fetched and
    reported after (huggingface_hub's own progress bars show on stderr in between)."""
    from cmet.speech.emotion2vec import MODEL_NAME

    steps: list[tuple[str, Callable[[], Outcome]]] = [
        (Path(name).name, lambda name=name: fetch_hub_file(name, into_checkpoints)) for name in hub.OFFICIAL_FILES
    ]
    steps.append((MODEL_NAME, lambda: fetch_emotion2vec(into_checkpoints)))
    outcomes = []
    for count, (name, fetch) in enumerate(steps, start=1):
        log(f"weights {count}/{len(steps)}: {name} …")
        outcome = fetch()
        log(f"weights {count}/{len(steps)}: {name} {'ready' if outcome.error is None else 'not fetched'}")
        outcomes.append(outcome)
    return outcomes


def run(args: argparse.Namespace) -> int:
    """Fetch every file, print one line each; non-zero when any is missing afterwards."""
    outcomes = fetch_official(args.into_checkpoints)
    for outcome in outcomes:
        if outcome.error is None:
            print(f"{outcome.name}: {outcome.path}")
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:
        print(f"error: {outcome.error}", file=sys.stderr)
    return 2 if failed else 0


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed hub request raises: OSError (requests-based huggingface_hub, and HTTP status errors) and,
    for httpx-based versions, the HTTP client's base error, which ``huggingface_hub.errors`` re-exports."""
    from huggingface_hub import errors

    client_error = getattr(errors, "HTTPError", None)
    return (OSError, client_error) if isinstance(client_error, type) else (OSError,)


def _probe(repo: str, filename: str) -> int | None:
    """Size in bytes the hub reports for ``repo/filename`` (one request, no retries); raises CmetError."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(repo, filename, endpoint=_endpoint())
    try:
        return get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S).size
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise CmetError(f"the hub at {_endpoint()} answered HTTP {status} for {repo}/{filename}") from err
    except _network_errors() as err:  # connection refused, DNS failure, timeout
        raise CmetError(f"could not reach {_endpoint()} ({type(err).__name__}: {err})") from err


def _unreachable(name: str, reason: str, where: Path, manual: str) -> str:
    return f"{name} was not downloaded: {reason}. Check the network (or HF_ENDPOINT), or put it at {where} {manual}."


def check_torch_file(path: Path, expected_size: int | None = None) -> None:
    """Raise CmetError unless ``path`` is a complete torch checkpoint (size as expected, readable header)."""
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        raise CmetError(f"{path} is missing or empty; delete it and download again.")
    if expected_size is not None and size != expected_size:
        raise CmetError(f"{path} is {size} bytes but the hub says {expected_size}; delete it and download again.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("data.pkl") for name in archive.namelist()):
                return
    else:
        with open(path, "rb") as fh:
            if fh.read(1) == b"\x80":  # legacy (pre-zip) torch.save: a pickle stream
                return
    raise CmetError(f"{path} is not a PyTorch checkpoint (unreadable header); delete it and download again.")


def fetch_hub_file(filename: str, into_checkpoints: bool) -> Outcome:
    """One file of the C-MET hub repo: reuse a local copy, else probe, download and check it."""
    name = Path(filename).name
    try:
        local = hub.resolve(filename)
    except hub.MissingWeightsError:
        local = None
    if local is not None:
        return _checked(name, local, None)
    where = checkpoints_dir() / filename
    try:
        expected = _probe(HUB_REPO, filename)
        path = hub.download(filename, into_checkpoints=into_checkpoints)
    except CmetError as err:
        return Outcome(name, error=_unreachable(name, str(err).rstrip("."), where, f"(from {HUB_REPO})"))
    except _network_errors() as err:
        reason = f"the download stopped ({type(err).__name__}: {err})"
        return Outcome(name, error=_unreachable(name, reason, where, f"(from {HUB_REPO})"))
    return _checked(name, path, expected)


def _checked(name: str, path: Path, expected: int | None) -> Outcome:
    try:
        check_torch_file(path, expected)
    except CmetError as err:
        return Outcome(name, error=str(err))
    return Outcome(name, path=path)


def fetch_emotion2vec(into_checkpoints: bool) -> Outcome:
    """emotion2vec+ large (a FunASR model folder) from the hub, unless a local copy is already found."""
    from cmet.speech.emotion2vec import HF_REPO, MODEL_NAME, MODELSCOPE_ID, REQUIRED_FILES, find_weights

    found = find_weights()
    if found is not None:
        return _checked_e2v(found, None)
    target = checkpoints_dir() / MODEL_NAME
    manual = f"(the files {', '.join(REQUIRED_FILES)} of {HF_REPO} on Hugging Face or {MODELSCOPE_ID} on ModelScope)"
    try:
        expected = _probe(HF_REPO, REQUIRED_FILES[0])
        from huggingface_hub import snapshot_download

        folder = snapshot_download(HF_REPO, allow_patterns=E2V_PATTERNS, local_dir=target if into_checkpoints else None)
    except CmetError as err:
        return Outcome(MODEL_NAME, error=_unreachable(MODEL_NAME, str(err).rstrip("."), target, manual))
    except _network_errors() as err:
        reason = f"the download stopped ({type(err).__name__}: {err})"
        return Outcome(MODEL_NAME, error=_unreachable(MODEL_NAME, reason, target, manual))
    return _checked_e2v(Path(folder), expected)


def _checked_e2v(folder: Path, expected: int | None) -> Outcome:
    from cmet.speech.emotion2vec import MODEL_NAME

    try:
        check_torch_file(folder / "model.pt", expected)
        config = folder / "config.yaml"
        if not config.is_file() or not config.read_text(encoding="utf-8", errors="replace").strip():
            raise CmetError(f"{config} is missing or empty; delete {folder} and download again.")
    except CmetError as err:
        return Outcome(MODEL_NAME, error=str(err))
    return Outcome(MODEL_NAME, path=folder)
