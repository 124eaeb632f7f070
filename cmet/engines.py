"""Engine selection and weight resolution: which engine runs, and why.

``auto`` picks ``official`` only when every one of its files is present locally (``checkpoints/`` or
the hub cache) and ``lite`` otherwise, and says which and why. Nothing here downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cmet import hub
from cmet.config import lite_dir
from cmet.media import VideoInfo

ENGINES = ("auto", "lite", "official")


class Engine(Protocol):
    """What the pipeline needs from an engine; see ``cmet.lite_engine`` for the reference one."""

    name: str
    device: str
    parallel_render: bool  # batches may render on several threads at once (single-threaded CPU kernels)

    def speech_vector(self, reference: list, target: Any, strength: float) -> Any: ...

    def analyse(self, video: Path, info: VideoInfo, clock: Any = None) -> Any: ...

    def offsets(self, analysis: Any, speech: Any, upto: int | None = None) -> np.ndarray: ...

    def render(self, frames: np.ndarray, index: np.ndarray, analysis: Any, offsets: np.ndarray) -> np.ndarray: ...


def official_missing() -> list[str]:
    """Official-engine files that are not present locally (empty: the engine can run)."""
    from cmet.speech.emotion2vec import Emotion2Vec

    missing = [name for name in hub.OFFICIAL_FILES if not hub.is_available(name)]
    if not Emotion2Vec.available():
        missing.append("emotion2vec_plus_large")
    return missing


def weight_status() -> dict[str, str]:
    """One line per weight file: where it was found, or that it is missing (for ``doctor``)."""
    from cmet.speech.emotion2vec import find_weights

    status = {}
    for name in hub.OFFICIAL_FILES:
        try:
            status[Path(name).name] = f"found: {hub.resolve(name)}"
        except hub.MissingWeightsError as err:
            status[Path(name).name] = f"missing — {err}"
    found = find_weights()
    status["emotion2vec+ large"] = f"found: {found}" if found else "missing (only needed for new recordings)"
    for encoder in ("emotion2vec", "egemaps"):
        folder = lite_dir() / encoder
        status[f"lite/{encoder}"] = f"found: {folder}" if (folder / "config.json").is_file() else f"missing: {folder}"
    return status


def choose_engine(engine: str = "auto") -> tuple[str, str]:
    """The engine name to load and a sentence saying why."""
    from cmet.errors import InputError

    if engine not in ENGINES:
        raise InputError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if engine != "auto":
        return engine, f"{engine} engine requested"
    missing = official_missing()
    if not missing:
        return "official", "all official weights are present"
    return (
        "lite",
        f"official weights missing ({', '.join(Path(m).name for m in missing)}); using the offline lite engine",
    )


def load_engine(engine: str = "auto", device: str = "auto") -> tuple[Engine, str]:
    """Instantiate the chosen engine on ``device``; returns it with the reason it was chosen."""
    name, reason = choose_engine(engine)
    if name == "official":
        from cmet.official_engine import OfficialEngine

        return OfficialEngine(device=device), reason
    from cmet.lite_engine import LiteEngine

    return LiteEngine(device=device), reason
