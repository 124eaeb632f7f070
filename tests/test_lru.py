"""The shared least-recently-used map: order, bound, and many threads at once."""

from __future__ import annotations

import threading

from cmet.lru import LRU


def test_reading_refreshes_and_adding_evicts_the_oldest():
    recent: LRU[str, int] = LRU(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "b" is now the oldest
    assert recent.put("c", 3) == 3
    assert recent.get("b") is None and recent.get("a") == 1 and recent.get("c") == 3
    assert len(recent) == 2
    recent.clear()
    assert len(recent) == 0


def test_threads_share_it_without_errors():
    recent: LRU[int, int] = LRU(8)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            for i in range(5000):
                key = (seed * 7 + i) % 13
                if recent.get(key) is None:
                    recent.put(key, key)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(recent) <= 8
