"""Run ``app.py`` in a subprocess on a free localhost port, for the API and browser tests.

The app is a real server (the same ``python app.py`` a user runs), started with the lite engine on CPU, and
stopped through its own PID only, so nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "assets" / "examples"


@dataclass
class AppInputs:
    """A short face video with its own speech, neutral reference clips and expressive target clips."""

    video: Path
    reference: list[Path]
    target: list[Path]


def example_inputs(tmp: Path, seconds: float = 0.6) -> AppInputs:
    """The committed examples, the video cut to ``seconds`` so the app tests stay fast; skips when absent."""
    videos = sorted(EXAMPLES.glob("*.mp4"))
    reference = sorted((EXAMPLES / "reference").glob("*.wav"))
    target = sorted((EXAMPLES / "target").glob("*.wav"))
    if not (videos and reference and target):
        pytest.skip("assets/examples is incomplete; run `python -m cmet.assets`")
    short = tmp / "short.mp4"
    cut = ["-t", f"{seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(videos[0]), *cut, str(short)]
    subprocess.run(command, check=True, capture_output=True)
    return AppInputs(short, reference, target)


@dataclass
class AppServer:
    """A running app: its URL, its process, its temp dir and the log it writes."""

    process: subprocess.Popen
    url: str
    tmp: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (the app cleans its temp files on it), then SIGKILL if it hangs; returns the exit code."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(tmp: Path, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> AppServer:
    """Start ``app.py`` with ``--tmp tmp`` and wait until its page answers; raises with the log if it does not.

    ``env`` replaces the environment the app starts with (default: this one, offline for the hub).
    """
    port = free_port()
    log = tmp / "app.log"
    env = {**(env if env is not None else {**os.environ, "HF_HUB_OFFLINE": "1"}), "GRADIO_ANALYTICS_ENABLED": "False"}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--tmp", str(tmp / "app-tmp"), *args]
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = AppServer(process, f"http://127.0.0.1:{port}/", tmp / "app-tmp", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{server.log_text()}")
