"""Connector offsets on the source timeline: previews match the full run, and repeated runs are served from memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmet import media, timeline
from cmet.connector import Connector, ConnectorConfig


@pytest.fixture
def connector() -> Connector:
    config = ConnectorConfig(visual_dim=12, speech_dim=16, d_model=32, heads=2, layers=1, ffn=32, window=5)
    return Connector(config).eval()


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Lengths of every real connector pass."""
    passes: list[int] = []
    real = timeline.infer_offsets

    def counting(connector, speech, neutral):
        passes.append(len(neutral))
        return real(connector, speech, neutral)

    monkeypatch.setattr(timeline, "infer_offsets", counting)
    monkeypatch.setattr(timeline, "_RUNS", type(timeline._RUNS)(maxlen=8))
    return passes


def _info(frames: int, fps: float) -> media.VideoInfo:
    return media.VideoInfo(Path("v.mp4"), fps, frames, 64, 64, frames / fps, False, 0)


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_previews_match_the_full_run_and_reuse_it(connector, counted, fps):
    rng = np.random.default_rng(0)
    neutral = rng.normal(size=(97, 12)).astype(np.float32)
    speech = rng.normal(size=16).astype(np.float32)
    info = _info(len(neutral), fps)
    full = timeline.source_offsets(connector, speech, 1.0, neutral, info)
    assert len(counted) == 1 and full.shape == (97, 12)
    for frame in (1, 7, 50, 97):
        early = timeline.source_offsets(connector, speech, 2.5, neutral, info, upto=frame)
        np.testing.assert_allclose(early[:frame], 2.5 * full[:frame], rtol=1e-6, atol=1e-7)
    assert len(counted) == 1, "previews of an edited video must not run the connector again"


def test_a_preview_first_then_the_full_run(connector, counted):
    rng = np.random.default_rng(1)
    neutral = rng.normal(size=(60, 12)).astype(np.float32)
    speech = rng.normal(size=16).astype(np.float32)
    info = _info(60, 25.0)
    early = timeline.source_offsets(connector, speech, 1.0, neutral, info, upto=12)
    again = timeline.source_offsets(connector, speech, 1.0, neutral, info, upto=9)
    full = timeline.source_offsets(connector, speech, 1.0, neutral, info)
    assert counted == [15, 60]  # the preview runs whole windows only; a shorter one reuses it; the edit runs all
    np.testing.assert_allclose(early[:12], full[:12], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(again[:9], early[:9])


def test_other_inputs_run_again(connector, counted):
    rng = np.random.default_rng(2)
    neutral = rng.normal(size=(30, 12)).astype(np.float32)
    speech = rng.normal(size=16).astype(np.float32)
    info = _info(30, 25.0)
    first = timeline.source_offsets(connector, speech, 1.0, neutral, info)
    flipped = timeline.source_offsets(connector, -speech, 1.0, neutral, info)
    changed = neutral.copy()
    changed[3] += 1.0
    timeline.source_offsets(connector, speech, 1.0, changed, info)
    timeline.source_offsets(connector, speech, 1.0, neutral, info)  # the first run, found behind two others
    assert len(counted) == 3
    assert not np.allclose(first, flipped)
    assert not timeline.source_offsets(connector, speech, 0.0, neutral, info).any()
