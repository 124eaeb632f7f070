"""Fetching the official weights while the app already serves: what a Hugging Face Space does at start-up.

A Space has no shell to run ``python -m cmet download`` in, so the app fetches the files itself (``SPACE_ID`` set,
or ``python app.py --download`` anywhere) in a background thread, serving with the lite engine meanwhile; when the
files are there it loads the official engine and hands it over. On a Space with persistent storage (mounted at
``/data``; ``CMET_SPACE_STORAGE`` names another place) the files go there, so a restart finds them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cmet.errors import CmetError

if TYPE_CHECKING:
    from cmet.pipeline import EmotionEditor


def on_space() -> bool:
    """Whether this process runs as a Hugging Face Space (the platform sets ``SPACE_ID``)."""
    return bool(os.environ.get("SPACE_ID"))


def persistent_checkpoints() -> Path | None:
    """The checkpoints folder in a Space's persistent storage, when this is a Space that has some."""
    storage = Path(os.environ.get("CMET_SPACE_STORAGE", "/data"))
    if on_space() and storage.is_dir() and os.access(storage, os.W_OK):
        return storage / "cmet" / "checkpoints"
    return None


def use_persistent_storage() -> bool:
    """Point ``CMET_CHECKPOINTS`` at the persistent storage (unless already set); whether downloads go there."""
    folder = persistent_checkpoints()
    if folder is None or "CMET_CHECKPOINTS" in os.environ:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["CMET_CHECKPOINTS"] = str(folder)
    return True


def _log(line: str) -> None:
    print(f"cmet app: {line}", file=sys.stderr, flush=True)


class OfficialFetch:
    """Downloads the official weights in a background thread, then loads an editor with them and hands it over.

    ``note`` says what is going on, for the app's header: downloading, failed (and why), or empty once done.
    """

    def __init__(self, load: Callable[[], EmotionEditor], into_checkpoints: bool, log: Callable[[str], None] = _log):
        self.load = load
        self.into_checkpoints = into_checkpoints
        self.log = log
        self.note = ""
        self.done = threading.Event()

    def start(self, hand_over: Callable[[EmotionEditor], None]) -> threading.Thread:
        self.note = "The official engine's weights are downloading; the lite engine serves until they are there."
        thread = threading.Thread(target=self._run, args=(hand_over,), name="cmet-weights", daemon=True)
        thread.start()
        return thread

    def _run(self, hand_over: Callable[[EmotionEditor], None]) -> None:
        from cmet.download import fetch_official

        failed = "The official engine could not be set up (the server log says why); the lite engine serves."
        try:
            outcomes = fetch_official(self.into_checkpoints, self.log)
            for outcome in outcomes:
                self.log(f"{outcome.name}: {outcome.path}" if outcome.error is None else f"error: {outcome.error}")
            editor = self.load()
            if editor.engine_name != "official":
                raise CmetError(f"the official engine could not start ({editor.engine_reason})")
            hand_over(editor)
            self.log(f"engine: official on {editor.device}, now serving")
            failed = ""
        except CmetError as exc:  # anything else is a bug: the thread's traceback goes to the log
            self.log(f"error: {exc}")
            failed = f"The official engine could not be set up ({exc}); the lite engine serves."
        finally:
            self.note = failed
            self.done.set()
