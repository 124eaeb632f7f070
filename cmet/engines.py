"""Engine selection: which engine runs, and why.

``auto`` picks ``official`` exactly when the official engine's own requirements for its options are met
(``OfficialEngine.required_files``: the C-MET checkpoint and ``EDTalk.pt``, plus ``Audio2Lip.pt`` when the lips
come from audio), found locally in ``checkpoints_dir()`` or the hub cache, and ``lite`` otherwise, and says which
and why. Nothing here downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cmet import hub
from cmet.config import ENCODER_FOLDERS, lite_dir
from cmet.options import ENGINES, LiteOptions, OfficialOptions

if TYPE_CHECKING:
    from cmet.engine import Engine


def official_missing(options: OfficialOptions | None = None) -> list[str]:
    """Official-engine files that are not present locally for ``options`` (empty: the engine can run)."""
    from cmet.official_engine import OfficialEngine

    return OfficialEngine.missing(options)


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
    for encoder in ENCODER_FOLDERS.values():
        folder = lite_dir() / encoder
        status[f"lite/{encoder}"] = f"found: {folder}" if (folder / "config.json").is_file() else f"missing: {folder}"
    return status


def choose_engine(engine: str = "auto", official: OfficialOptions | None = None) -> tuple[str, str]:
    """The engine name to load and a sentence saying why (``official``: the options the official engine would get)."""
    from cmet.errors import InputError

    if engine not in ENGINES:
        raise InputError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if engine != "auto":
        return engine, f"{engine} engine requested"
    missing = official_missing(official)
    if not missing:
        return "official", "the official engine's weights are present"
    return (
        "lite",
        f"official weights missing ({', '.join(Path(m).name for m in missing)}); using the offline lite engine",
    )


def load_engine(
    engine: str = "auto",
    device: str = "auto",
    lite: LiteOptions | None = None,
    official: OfficialOptions | None = None,
) -> tuple[Engine, str]:
    """Instantiate the chosen engine on ``device`` with its options; returns it with the reason it was chosen."""
    name, reason = choose_engine(engine, official)
    if name == "official":
        from cmet.official_engine import OfficialEngine

        return OfficialEngine(device, official), reason
    from cmet.lite_engine import LiteEngine

    return LiteEngine(device, lite), reason
