"""Per-stage wall-clock timing shared by the pipeline, the engines and ``cmet bench``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates wall seconds per named stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


class NullClock:
    """Stands in for a :class:`Stopwatch` when the caller does not time stages."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield
