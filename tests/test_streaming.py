"""Background decode/encode helpers: order kept, errors surface in the caller, early stop cleans up."""

from __future__ import annotations

import threading

import pytest

from cmet.streaming import BackgroundSink, prefetch


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
