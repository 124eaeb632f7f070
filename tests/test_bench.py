"""``cmet bench``: the per-stage figures of a measured edit, for both engines (official with fixture weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.official_weights import fixture_path, write_release_files

REPO = Path(__file__).resolve().parents[1]
MEASURED = {"probe", "track", "encode", "connector", "decode", "render", "write"}


@pytest.mark.slow  # EDTalk (fixture-sized: the released layout) renders a few 192x160 frames on CPU
def test_official_bench_on_cpu_reports_every_stage(tmp_path):
    fixture_path("edtalk_manifest.json")
    write_release_files(tmp_path / "checkpoints")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMET_", "HF_"))}
    env.update(CMET_CHECKPOINTS=str(tmp_path / "checkpoints"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    args = ["--engine", "official", "--device", "cpu", "--width", "192", "--height", "160", "--seconds", "0.2"]
    command = [sys.executable, "-m", "cmet", "bench", *args, "--warmup", "0.12", "--json", str(tmp_path / "b.json")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["engine"] == "official" and figures["device"] == "cpu"
    assert figures["size"].startswith("192x160") and figures["frames"] == 5
    assert MEASURED <= set(figures["ms_per_frame"]) and all(v >= 0 for v in figures["ms_per_frame"].values())
    assert figures["ms_per_frame"]["render"] > 0 and figures["peak_rss_mb"] > 100
    assert figures["peak_gpu_mb"] is None  # measured on CUDA only
    assert "| render |" in done.stdout and "real-time factor" in done.stdout
