"""Which files a remote client may make the app read: those uploaded through it, and the app's own examples.

An API call names its files by server path (``{"path": "...", "meta": {"_type": "gradio.FileData"}}``), so a
client could name any file of the server, or a URL. Every path a request carries goes through ``confine``: it
must resolve (``..`` and symlinks followed) to an existing regular file inside one of the allowed folders.
Anything else gets the same sentence whether or not the path exists, so the answers map nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cmet.errors import InputError

REFUSED = (
    "A file in this request was not uploaded to this app; "
    "upload it with the call (gradio_client.handle_file(path)) and try again."
)


def confine(path: Any, roots: Sequence[str | Path]) -> str:
    """``path`` unchanged if it is an uploaded file (or an example); ``InputError(REFUSED)`` otherwise."""
    if not isinstance(path, str | Path) or not str(path) or "\x00" in str(path) or "://" in str(path):
        raise InputError(REFUSED)
    real = Path(os.path.realpath(path))
    inside = any(real.is_relative_to(os.path.realpath(root)) for root in roots)
    if not (inside and real.is_file()):
        raise InputError(REFUSED)
    return str(path)


def confine_all(paths: Iterable[Any], roots: Sequence[str | Path]) -> list[str]:
    return [confine(p, roots) for p in paths]


def check_request(value: Any, roots: Sequence[str | Path]) -> None:
    """Confine every file a request's raw JSON names (a dict with a ``path``), at any depth, before it is used."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if "path" in item:
                confine(item["path"], roots)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
