"""Per-stage wall-clock timing shared by the pipeline, the engines and ``cmet bench``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates wall seconds per named stage, exclusive: a stage timed inside another is not counted twice.

    Stages nest when work is pulled lazily (render waits on a generator that decodes), so the
    figures add up to the wall time of the timed code. Use from one thread.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._inner: list[float] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            nested = self._inner.pop()
            self.timings[name] = self.timings.get(name, 0.0) + elapsed - nested
            if self._inner:
                self._inner[-1] += elapsed


class NullClock:
    """Stands in for a :class:`Stopwatch` when the caller does not time stages."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield
