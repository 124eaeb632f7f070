"""The app under load: eight gradio_client sessions render at once against one real ``python app.py``.

Each session asks ``/render`` for a different preset or strength. Every request must succeed with its own result
(each output equals the same edit re-derived in-process through the API, and no other request's), the queue must
run them one at a time (the GPU events share a concurrency limit of 1), and afterwards the server's memory and its
temp dir must be back near where they were after warm-up.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.utils import Status

from cmet import media
from cmet.config import SPEECH_RATE
from cmet.pipeline import EmotionEditor
from tests.app_server import AppServer, launch_app

pytestmark = pytest.mark.slow

REQUESTS = [("happy", 0.5), ("happy", 1.0), ("happy", 2.0), ("happy", -1.0), ("sad", 1.0), ("sad", 2.0)]
REQUESTS += [("angry", 1.0), ("surprised", 1.5)]
RSS_SLACK_MB = 300
SLACK_S = 1.0  # how late a client may hear that a render finished, relative to the next one's start
SAME = 0.5  # mean |difference| (grey levels) allowed between the server's and the in-process encode of one edit
STARTED = (Status.PROCESSING, Status.PROGRESS, Status.ITERATING, Status.FINISHED)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 1 s, 160² talking astronaut with its own speech."""
    from cmet.assets import talking_clip
    from cmet.bench import synthetic_speech

    folder = tmp_path_factory.mktemp("clip")
    sf.write(folder / "speech.wav", synthetic_speech(1.0), SPEECH_RATE)
    return talking_clip(folder / "speech.wav", folder / "talk.mp4", size=160)


@pytest.fixture(scope="module")
def reference() -> list[Path]:
    clips = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples" / "reference").glob("*.wav"))
    if not clips:
        pytest.skip("assets/examples/reference is empty; run `python -m cmet.assets`")
    return clips


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> AppServer:
    """The app with its own TMPDIR and cache, so its temp files can be counted."""
    root = tmp_path_factory.mktemp("app")
    own = {"TMPDIR": str(root / "tmpdir"), "CMET_CACHE": str(root / "cache")}
    (root / "tmpdir").mkdir()
    saved = {key: os.environ.get(key) for key in own}
    os.environ.update(own)
    try:
        running = launch_app(root, "--engine", "lite", "--device", "cpu", "--max-seconds", "5")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    yield running
    assert running.stop() == 0, running.log_text()
    assert not list(running.tmp.glob("cmet-app-*")), "the app left its run folder behind"
    assert "Traceback" not in running.log_text(), running.log_text()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def temp_files(server: AppServer) -> dict[str, list[str]]:
    """Files in the server's TMPDIR and in its run folder, outputs and Gradio's upload/result cache apart."""
    tmpdir = server.tmp.parent / "tmpdir"
    run = next(server.tmp.glob("cmet-app-*"))
    files = [p.relative_to(run) for p in run.rglob("*") if p.is_file()]
    return {
        "tmpdir": sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*")),
        "outputs": sorted(str(p) for p in files if p.parts[0] == "outputs"),
        "other": sorted(str(p) for p in files if p.parts[0] not in ("outputs", "gradio")),
    }


def render(client: Client, clip: Path, reference: list[Path], preset: str, strength: float):
    return client.submit(
        handle_file(str(clip)), [handle_file(str(r)) for r in reference], [], preset, strength, api_name="/render"
    )


def video_path(answer: str | dict) -> Path:
    return Path(answer["video"] if isinstance(answer, dict) else answer)


def frames(path: Path) -> np.ndarray:
    return np.stack(list(media.iter_frames(path))).astype(np.float64)


def test_eight_sessions_at_once(server, clip, reference, tmp_path):
    warm = Client(server.url, verbose=False, download_files=str(tmp_path / "warm"))
    started = time.monotonic()
    render(warm, clip, reference, "neutral", 1.0).result(timeout=300)
    single = time.monotonic() - started
    pid = server.process.pid
    rss_before, temp_before = rss_mb(pid), temp_files(server)

    clients = [Client(server.url, verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(len(REQUESTS))]
    gate = threading.Barrier(len(clients))
    jobs: list = [None] * len(clients)

    def submit(i: int) -> None:
        gate.wait()
        jobs[i] = render(clients[i], clip, reference, *REQUESTS[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    start, end = [None] * len(jobs), [None] * len(jobs)
    peak = rss_before
    while any(e is None for e in end):
        assert time.monotonic() - t0 < 600, "the eight renders did not finish in 10 minutes"
        now = time.monotonic() - t0
        for i, job in enumerate(jobs):
            code = job.status().code
            if start[i] is None and code in STARTED:
                start[i] = now
            if end[i] is None and (code == Status.FINISHED or job.done()):  # before the client downloads it
                end[i] = now
        peak = max(peak, rss_mb(pid))
        time.sleep(0.05)
    total = time.monotonic() - t0
    outputs = [video_path(job.result()) for job in jobs]
    time.sleep(1.0)
    rss_after, temp_after = rss_mb(pid), temp_files(server)

    order = np.argsort(start)
    latency = [end[i] for i in order]
    print(
        f"\nwarm-up render {single:.1f} s; 8 concurrent: total {total:.1f} s; per-request latency (queue+render) "
        + ", ".join(f"{REQUESTS[i][0]}@{REQUESTS[i][1]} {end[i]:.1f}s (ran {end[i] - start[i]:.1f}s)" for i in order)
        + f"; RSS {rss_before:.0f} → peak {peak:.0f} → {rss_after:.0f} MB"
        + f"; run-folder outputs {len(temp_before['outputs'])} → {len(temp_after['outputs'])}, "
        + f"TMPDIR {len(temp_before['tmpdir'])} → {len(temp_after['tmpdir'])} entries"
    )

    # the queue ran them one at a time: each started only after the previous one finished (give or take the
    # clients' 50 ms message polling under load); run together, all eight would start within the first second
    for a, b in zip(order, order[1:]):
        assert start[b] >= end[a] - SLACK_S, f"request {b} started at {start[b]:.2f}s, {a} ended at {end[a]:.2f}s"
    assert latency == sorted(latency)
    assert start[order[-1]] - start[order[0]] > 0.5 * (end[order[-1]] - start[order[0]])

    # each got its own result: equal to the same edit done in-process, and to no other request's
    editor = EmotionEditor.load(engine="lite", device="cpu")
    expected = []
    for i, (preset, strength) in enumerate(REQUESTS):
        result = editor.edit(clip, reference, f"preset:{preset}", strength, tmp_path / f"expected{i}.mp4")
        expected.append(frames(result.path))
    apart = min(float(np.abs(a - b).mean()) for k, a in enumerate(expected) for b in expected[k + 1 :])
    assert apart > 0, "two requests have identical expected edits, so cross-talk between them could not be seen"
    source = media.probe(clip)
    own = []
    for i, path in enumerate(outputs):
        got = frames(path)
        assert media.probe(path).frames == source.frames and got.shape == expected[i].shape
        distance = [float(np.abs(got - e).mean()) for e in expected]
        own.append(distance[i])
        assert distance[i] < SAME, f"request {REQUESTS[i]} differs from its in-process edit by {distance[i]:.3f}"
        closest = int(np.argmin(distance))
        assert closest == i, f"request {REQUESTS[i]} got an output closer to {REQUESTS[closest]}'s: {distance}"
    print(f"server vs in-process: max {max(own):.4f} grey levels; closest two requests differ by {apart:.4f}")
    assert len({path.name for path in outputs}) == len(outputs)

    # memory and temp files are back near the post-warm-up level
    assert rss_after - rss_before < RSS_SLACK_MB, f"RSS grew from {rss_before:.0f} to {rss_after:.0f} MB"
    assert temp_after["tmpdir"] == temp_before["tmpdir"], "temp files left in the server's TMPDIR"
    assert temp_after["other"] == temp_before["other"]
    new_outputs = sorted(set(temp_after["outputs"]) - set(temp_before["outputs"]))
    assert len(new_outputs) == len(REQUESTS) and not any(Path(p).name.startswith(".") for p in new_outputs)
