"""Where the official weights are found: ``checkpoints/`` first, then the Hugging Face hub cache.

Resolution never touches the network (it must answer in well under two seconds, offline or not);
only :func:`download`, called by ``python -m cmet download``, fetches files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cmet.config import HUB_REPO, checkpoints_dir
from cmet.errors import CmetError, MissingWeightsError

CMET_CHECKPOINT = "checkpoints/_epoch_2105_checkpoint_step000200000.pth"
EDTALK = "pretrained_weights/EDTalk.pt"
AUDIO2LIP = "pretrained_weights/Audio2Lip.pt"
OFFICIAL_FILES = (CMET_CHECKPOINT, EDTALK, AUDIO2LIP)
DOWNLOAD_COMMAND = "python -m cmet download"


def local_candidates(filename: str, local_names: Sequence[str] = ()) -> list[Path]:
    """Paths under ``checkpoints_dir()`` that count as the file: its repo path, its basename, extra names."""
    root = checkpoints_dir()
    names = [filename, Path(filename).name, *local_names]
    return list(dict.fromkeys(root / name for name in names))


def cached_path(filename: str) -> Path | None:
    """The file in the local hub cache, or None; ``local_files_only`` so no request is ever made."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(HUB_REPO, filename, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None


def resolve(filename: str, local_names: Sequence[str] = ()) -> Path:
    """Local path of ``filename`` (a path inside the hub repo); raises :class:`MissingWeightsError` if absent."""
    for candidate in local_candidates(filename, local_names):
        if candidate.is_file():
            return candidate
    cached = cached_path(filename)
    if cached is not None and cached.is_file():
        return cached
    root = checkpoints_dir()
    raise MissingWeightsError(
        filename,
        root / filename,
        DOWNLOAD_COMMAND,
        detail=f"It comes from the Hugging Face repo {HUB_REPO}; {root / Path(filename).name} works too.",
    )


def is_available(filename: str) -> bool:
    """Whether :func:`resolve` would succeed (for engine auto-selection)."""
    try:
        resolve(filename)
    except MissingWeightsError:
        return False
    return True


def download(filename: str, into_checkpoints: bool = False) -> Path:
    """Fetch ``filename`` from the hub (honours ``HF_ENDPOINT``/``HF_TOKEN``); a local copy is reused.

    By default the file goes to the hub cache; ``into_checkpoints`` writes ``checkpoints/<filename>``.
    """
    from huggingface_hub import hf_hub_download

    try:
        return resolve(filename)
    except MissingWeightsError:
        pass
    local_dir = checkpoints_dir() if into_checkpoints else None
    try:
        return Path(hf_hub_download(HUB_REPO, filename, local_dir=local_dir))
    except OSError as err:
        raise CmetError(
            f"Could not download {filename} from the Hugging Face repo {HUB_REPO} ({type(err).__name__}: {err}). "
            f"Check the network (or HF_ENDPOINT / HF_HUB_OFFLINE), or put the file at {checkpoints_dir() / filename}."
        ) from err
