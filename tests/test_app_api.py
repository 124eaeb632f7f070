"""The app's named endpoints (/render, /preview, /compare) through gradio_client, against a real ``python app.py``.

One server per module (lite engine, CPU, a 2 s length cap) on a free localhost port, stopped by its PID; its
teardown also checks that the app removed its own temp files.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from cmet import media
from tests.app_server import AppInputs, AppServer, example_inputs, launch_app
from tests.media_factory import make_corrupt, make_video

NO_PRESET = "(none — use target speech)"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> AppInputs:
    return example_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def server(inputs, tmp_path_factory) -> AppServer:
    running = launch_app(tmp_path_factory.mktemp("app"), "--engine", "lite", "--device", "cpu", "--max-seconds", "2")
    yield running
    assert running.stop() == 0, running.log_text()
    assert not list(running.tmp.glob("cmet-app-*")), "the app left its output folder behind"
    assert "Traceback" not in running.log_text(), running.log_text()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory) -> Client:
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def files(paths: list[Path]) -> list[dict]:
    return [handle_file(str(p)) for p in paths]


def video_path(answer: str | dict) -> Path:
    """A Video output as gradio_client returns it: a path, or a dict whose ``video`` is the path."""
    return Path(answer["video"] if isinstance(answer, dict) else answer)


def error_of(client: Client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name=api_name)
    message = str(caught.value)
    assert "Traceback" not in message and 'File "' not in message
    return message


def changed_pixels(a: np.ndarray, b: np.ndarray, level: float = 8.0) -> int:
    """Pixels that differ by more than ``level`` in some channel: an edit moves the face, not the whole frame."""
    return int((np.abs(a.astype(np.float32) - b.astype(np.float32)).max(axis=-1) > level).sum())


def test_render_keeps_the_timeline_and_changes_the_face(client, inputs):
    answer = client.predict(
        handle_file(str(inputs.video)), files(inputs.reference), [], "happy", 2.0, api_name="/render"
    )
    out = video_path(answer)
    src, got = media.probe(inputs.video), media.probe(out)
    assert got.frames == src.frames
    assert (got.width, got.height, got.fps) == (src.width, src.height, src.fps)
    assert got.has_audio
    before, after = np.stack(list(media.iter_frames(inputs.video))), np.stack(list(media.iter_frames(out)))
    assert changed_pixels(before, after) >= 100 * len(before)


def test_preview_answers_with_an_image_that_follows_strength(client, inputs):
    def preview(strength: float) -> np.ndarray:
        path = client.predict(
            handle_file(str(inputs.video)), files(inputs.reference), [], "happy", strength, 10, api_name="/preview"
        )
        return cv2.imread(str(path))

    neutral, happy = preview(0.0), preview(2.5)
    info = media.probe(inputs.video)
    assert neutral.shape == happy.shape == (info.height, info.width, 3)
    assert changed_pixels(neutral, happy) >= 100


def test_compare_renders_one_grid_from_a_preset_and_speech_with_own_strength(client, inputs):
    emotions = {"happy": {"target": "preset:happy", "strength": 2.0}, "excited": files(inputs.target)}
    answer = client.predict(handle_file(str(inputs.video)), files(inputs.reference), emotions, 1.0, api_name="/compare")
    src, grid = media.probe(inputs.video), media.probe(video_path(answer))
    assert grid.frames == src.frames
    assert grid.width * grid.height >= 3 * src.width * src.height * 0.9  # original + two emotions, with labels


def test_bad_upload_is_a_readable_sentence(client, inputs, tmp_path):
    fake = make_corrupt(tmp_path / "holiday.mp4", kind="text")
    message = error_of(client, handle_file(str(fake)), files(inputs.reference), [], "happy", 1.0, api_name="/render")
    assert message.startswith("holiday.mp4 ")  # named as the user knows it, not by the server's upload folder


def test_too_long_video_is_refused_early(client, inputs, tmp_path):
    long = make_video(tmp_path / "long.mp4", seconds=3.0, fps=25)
    message = error_of(client, handle_file(str(long)), files(inputs.reference), [], "happy", 1.0, api_name="/render")
    assert "long.mp4" in message and "--max-seconds" in message


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("no reference", "reference speech"),
        ("no target", "target"),
        ("bad json", "not valid JSON"),
        ("plain path", "handle_file"),
        ("bad strength", "must be a number"),
    ],
)
def test_missing_or_malformed_inputs_say_what_to_do(client, inputs, kind, expected):
    video, refs = handle_file(str(inputs.video)), files(inputs.reference)
    if kind == "no reference":
        message = error_of(client, video, [], [], "happy", 1.0, api_name="/render")
    elif kind == "no target":
        message = error_of(client, video, refs, [], NO_PRESET, 1.0, api_name="/render")
    elif kind == "bad json":
        message = error_of(client, video, refs, '{"happy": ', 1.0, api_name="/compare")
    elif kind == "plain path":
        spec = json.dumps({"sarcastic": [str(inputs.target[0])]})
        message = error_of(client, video, refs, spec, 1.0, api_name="/compare")
    else:
        spec = {"happy": {"target": "preset:happy", "strength": "lots"}}
        message = error_of(client, video, refs, spec, 1.0, api_name="/compare")
    assert expected in message
