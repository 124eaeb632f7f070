"""Shared test fixtures: paths to ../shared data (skipping cleanly when absent) and small generated media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "data" / "cmet-samples"


@pytest.fixture
def samples_dir() -> Path:
    """../shared/data/cmet-samples, or skip."""
    if not SAMPLES.exists():
        pytest.skip("../shared/data/cmet-samples is absent")
    return SAMPLES
