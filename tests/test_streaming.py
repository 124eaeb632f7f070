"""Background decode/encode helpers: order kept, errors surface in the caller, early stop cleans up."""

from __future__ import annotations

import threading

import pytest

from cmet.streaming import BackgroundSink, ordered_map, prefetch
from cmet.timing import Stopwatch


def test_prefetch_keeps_order_and_finishes():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_prefetch_reraises_producer_error():
    def broken():
        yield 1
        raise ValueError("decoder died")

    with pytest.raises(ValueError, match="decoder died"):
        list(prefetch(broken()))


def test_prefetch_early_stop_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    stream = prefetch(source(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(2.0)


def test_sink_consumes_in_order_and_reports_errors():
    seen = []
    sink = BackgroundSink(seen.append, depth=2)
    for i in range(20):
        sink.put(i)
    sink.close()
    assert seen == list(range(20))

    def fail(item):
        raise OSError("disk full")

    bad = BackgroundSink(fail)
    bad.put(1)
    with pytest.raises(OSError, match="disk full"):
        bad.close()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ordered_map_keeps_order_and_bounds_the_work_in_flight(workers):
    lock, started, running, peak = threading.Lock(), [], [0], [0]

    def slow_square(x: int) -> int:
        with lock:
            started.append(x)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.002 * (x % 3))  # later items often finish first
        with lock:
            running[0] -= 1
        return x * x

    results = ordered_map(slow_square, range(40), workers)
    first = next(results)
    assert first == 0 and len(started) <= workers + 1  # nothing runs far ahead of the consumer
    assert [first, *results] == [x * x for x in range(40)]
    assert peak[0] <= workers


def test_ordered_map_reraises_a_worker_error():
    def fails_on_five(x: int) -> int:
        if x == 5:
            raise ValueError("render failed")
        return x

    with pytest.raises(ValueError, match="render failed"):
        list(ordered_map(fails_on_five, range(20), 2))


def test_stopwatch_counts_nested_stages_once():
    clock = Stopwatch()
    with clock.stage("render"):
        threading.Event().wait(0.02)
        with clock.stage("decode"):
            threading.Event().wait(0.05)
    assert 0.045 <= clock.timings["decode"] < 0.1
    assert 0.015 <= clock.timings["render"] < 0.045  # its own time only
