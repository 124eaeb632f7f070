"""cmet: speech-driven emotion editing for talking-face video (C-MET).

Public API: ``EmotionEditor``, ``load_engine`` (see ``cmet.pipeline``) and the engines' options
(``LiteOptions``, ``OfficialOptions``), imported lazily so that
``import cmet`` stays cheap for the CLI and for tools that only need ``cmet.media``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["EmotionEditor", "EditResult", "LiteOptions", "OfficialOptions", "load_engine", "__version__"]


def __getattr__(name: str):
    if name in {"EmotionEditor", "EditResult", "load_engine"}:
        from cmet import pipeline

        return getattr(pipeline, name)
    if name in {"LiteOptions", "OfficialOptions"}:
        from cmet import options

        return getattr(options, name)
    raise AttributeError(name)
