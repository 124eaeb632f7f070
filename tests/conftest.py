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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Reports of failing tests show cmet's output without MediaPipe/absl/TFLite log lines (``CMET_VERBOSE=1`` keeps
    them), as the CLI and the app do."""
    outcome = yield
    from cmet import quiet

    if quiet.verbose():
        return
    report = outcome.get_result()
    report.sections = [
        (title, "".join(line for line in text.splitlines(keepends=True) if not quiet.NOISE.match(line.encode())))
        for title, text in report.sections
    ]
