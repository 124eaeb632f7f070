"""Frame timestamps onto constant-rate grids: the output video's, and the model's 25 fps timeline.

A frame at time t (seconds after the first frame) falls in grid slot round(t·rate) (half up), and slot k shows
the latest frame whose slot is not after k — what ffmpeg's ``fps`` filter does. Constant-rate input on its own
rate maps one to one. Variable-rate input (phones drop their rate in low light, editors drop frames) is mapped
by time, not by index: a frame fills every slot until the next frame's time, and of two frames in one slot the
later is shown, so every frame appears within half a slot of its own time.
"""

from __future__ import annotations

import numpy as np

COMMON_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 48.0, 50.0, 60000 / 1001, 60.0, 100.0, 120.0)
MAX_RATE = 120.0
_EPS = 1e-6  # in slots: timestamps are exact fractions held as floats; a half slot must round up


def slots(times: np.ndarray, rate: float) -> np.ndarray:
    """The grid slot of each frame (non-decreasing, so out-of-order timestamps cannot go back in time)."""
    k = np.floor(np.asarray(times, dtype=np.float64) * float(rate) + 0.5 + _EPS).astype(np.int64)
    return np.maximum.accumulate(k) if k.size else k


def duration(times: np.ndarray, period: float) -> float:
    """Seconds from the first frame to the end of the last, which lasts as long as the interval before it (the rate
    where the clip ends; ``period``, the nominal one, for a single frame)."""
    times = np.asarray(times, dtype=np.float64)
    steps = np.diff(times)
    steps = steps[steps > 0]
    last = float(steps[-1]) if steps.size else period
    return float(times[-1] - times[0]) + last


def slot_count(times: np.ndarray, rate: float, period: float) -> int:
    """How many grid slots the frames span (duration × rate, half up), at least one per occupied slot."""
    total = int(np.floor(duration(times, period) * float(rate) + 0.5 + _EPS))
    return max(total, int(slots(times, rate)[-1]) + 1)


def shown(times: np.ndarray, rate: float, count: int) -> np.ndarray:
    """The frame shown in each of ``count`` slots: the latest whose slot is not after it."""
    index = np.searchsorted(slots(times, rate), np.arange(count), side="right") - 1
    return np.clip(index, 0, max(len(times) - 1, 0))


def nearest(times: np.ndarray, rate: float, count: int) -> np.ndarray:
    """The slot nearest in time to each frame (for mapping per-slot results back onto the frames)."""
    return np.clip(slots(times, rate), 0, max(count - 1, 0))


def repeats(times: np.ndarray, rate: float, count: int) -> np.ndarray:
    """How many slots each frame fills (0: dropped, shown in no slot; 2+: held over a gap)."""
    return np.bincount(shown(times, rate, count), minlength=len(times))


def output_rate(times: np.ndarray, nominal: float) -> float:
    """The constant rate a video is written at: its own (``nominal``) when every frame sits on that grid, else
    the rate of its shorter frame intervals (a 30 → 20 fps phone clip is written at 30, repeating frames where the
    rate dropped), snapped to a common rate when within 2% of one, and at most ``MAX_RATE``."""
    times = np.asarray(times, dtype=np.float64)
    if np.array_equal(slots(times, nominal), np.arange(len(times))):
        return nominal
    steps = np.diff(times)
    steps = steps[steps > 0]
    if not steps.size:
        return nominal
    fast = 1.0 / float(np.percentile(steps, 10))
    closest = min((*COMMON_RATES, nominal), key=lambda rate: abs(rate / fast - 1))
    return closest if abs(closest / fast - 1) < 0.02 else min(round(fast, 3), MAX_RATE)
