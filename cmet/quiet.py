"""Keeps third-party native log lines (MediaPipe, absl, TFLite, glog) off the user's terminal.

Their C++ code writes straight to file descriptor 2, where Python's logging settings cannot reach it, and
some of it runs on the libraries' own threads at unpredictable moments. :func:`install` (called by the CLI
and the app) points fd 2 at a pipe whose reader thread drops lines in those libraries' formats and forwards
every other line, while Python's own ``sys.stderr`` keeps writing to the terminal directly, so cmet's
messages are never delayed or lost. :func:`hidden` is the narrower tool for library use: fd 2 goes to the
null device while a native call runs. ``--verbose`` (``CMET_VERBOSE=1``) turns both off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

NOISE = re.compile(
    rb"^("
    rb"[IWE]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] "  # absl / glog: W0000 00:00:1796121729.09 5664 file.cc:114] …
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|INFO: Created TensorFlow Lite .*delegate"  # TFLite's delegate notice
    rb")"
)

_lock = threading.Lock()
_installed = False
_hidden_depth = 0
_saved_fd = -1


def verbose() -> bool:
    """Whether third-party log lines should be shown (``--verbose`` sets ``CMET_VERBOSE=1``)."""
    return os.environ.get("CMET_VERBOSE", "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """Show (or hide) third-party log lines from now on, in this process and the ones it starts."""
    os.environ["CMET_VERBOSE"] = "1" if on else "0"


def install() -> None:
    """Filter fd 2 for the rest of the process (idempotent; nothing happens in verbose mode)."""
    global _installed
    with _lock:
        if _installed or verbose():
            return
        _installed = True
        if sys.stderr is not None:
            sys.stderr.flush()
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        if sys.stderr is sys.__stderr__ and sys.stderr is not None:  # not when a caller has redirected it
            sys.stderr = os.fdopen(
                os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
            )
        threading.Thread(target=_forward, args=(read_end, terminal), name="cmet-stderr-filter", daemon=True).start()


def _forward(read_end: int, terminal: int) -> None:
    """Copy whole lines from the pipe to the terminal, leaving out the libraries' log lines.

    It keeps draining the pipe even when the terminal is gone: a full pipe would block every writer to fd 2.
    """
    pending = b""
    while chunk := os.read(read_end, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        _write(terminal, b"".join(line + b"\n" for line in lines if not NOISE.match(line)))
    if not NOISE.match(pending):
        _write(terminal, pending)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass  # the terminal closed (a pipe into ``head``): nothing left to show it to


@contextlib.contextmanager
def hidden() -> Iterator[None]:
    """fd 2 goes to the null device while a native call runs (shared by threads: the last one out restores it)."""
    global _hidden_depth, _saved_fd
    if verbose():
        yield
        return
    with _lock:
        if _hidden_depth == 0:
            if sys.stderr is not None:
                sys.stderr.flush()
            _saved_fd = os.dup(2)
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
        _hidden_depth += 1
    try:
        yield
    finally:
        with _lock:
            _hidden_depth -= 1
            if _hidden_depth == 0:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
