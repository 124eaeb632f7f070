"""The command line: doctor's report and exit code, error sentences without tracebacks, grids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from cmet.grid import GridLayout

REPO = Path(__file__).resolve().parents[1]


def _cmet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmet", *args], capture_output=True, text=True, cwd=REPO, env=env)


def test_doctor_reports_and_exits_zero():
    done = _cmet("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    for needle in ("torch", "mediapipe", "ffmpeg", "EDTalk.pt", "lite/emotion2vec", "lite engine: ready"):
        assert needle in done.stdout


def test_missing_video_is_one_sentence(tmp_path):
    done = _cmet("edit", str(tmp_path / "nope.mp4"), "--target", "preset:happy", "-o", str(tmp_path / "o.mp4"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "nope.mp4" in done.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_grid_groups_basic_before_extended():
    layout = GridLayout.build(["original", "sarcastic", "happy", "sad"], basic=[True, False, True, True])
    assert [layout.groups[i] for i in layout.order] == ["original", "basic", "basic", "extended"]
    streams = [np.full((2, 40, 30, 3), 60 * k, np.uint8) for k in range(4)]
    grid = layout.compose(streams)
    assert grid.shape[0] == 2 and grid.shape[1] % 2 == 0 and grid.shape[2] % 2 == 0
    assert grid.shape[2] == 2 * 30 and grid.shape[1] == 2 * (40 + 22)
