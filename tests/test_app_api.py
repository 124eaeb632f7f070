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
from tests.visible import corner_lift, grid_pictures, psnr

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


def test_render_keeps_the_timeline_and_makes_the_face_happier(client, inputs):
    answer = client.predict(
        handle_file(str(inputs.video)), files(inputs.reference), [], "happy", 2.0, api_name="/render"
    )
    out = video_path(answer)
    src, got = media.probe(inputs.video), media.probe(out)
    assert got.frames == src.frames
    assert (got.width, got.height, got.fps) == (src.width, src.height, src.fps)
    assert got.has_audio
    before, after = list(media.iter_frames(inputs.video)), list(media.iter_frames(out))
    assert corner_lift(after) > corner_lift(before) + 0.02  # lip corners visibly up (a real smile: 0.077)


def _preview(client: Client, inputs: AppInputs, strength: float, frame: int) -> np.ndarray:
    path = client.predict(
        handle_file(str(inputs.video)), files(inputs.reference), [], "happy", strength, frame, api_name="/preview"
    )
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_preview_shows_the_chosen_frame_at_the_chosen_strength(client, inputs):
    """Strength 0 shows the input frame asked for (closer to it than to any other, through Gradio's lossy WebP);
    more strength, a bigger smile."""
    frames = list(media.iter_frames(inputs.video))
    for frame in (2, 12):
        shown = _preview(client, inputs, 0.0, frame)
        assert shown.shape == frames[frame].shape
        others = [psnr(shown, f)[0] for k, f in enumerate(frames) if k != frame]
        assert psnr(shown, frames[frame])[0] >= max(35.0, max(others) + 1.0)
    lifts = [corner_lift([_preview(client, inputs, s, 10)]) for s in (0.0, 0.5, 1.0)]
    assert lifts[0] + 0.01 < lifts[1] and lifts[1] + 0.01 < lifts[2], lifts


def test_compare_gives_each_emotion_its_own_strength(client, inputs):
    """One grid from presets and speech: a 0-strength cell is the original, 0.5 smiles less than the shared 1."""
    emotions = {
        "happy": {"target": "preset:happy", "strength": 0.5},
        "glad": "preset:happy",
        "calm": {"target": "preset:happy", "strength": 0},
        "excited": files(inputs.target),
    }
    answer = client.predict(handle_file(str(inputs.video)), files(inputs.reference), emotions, 1.0, api_name="/compare")
    source = np.stack(list(media.iter_frames(inputs.video)))
    grid = np.stack(list(media.iter_frames(video_path(answer))))
    assert len(grid) == len(source)
    original, half, once, zero, _ = grid_pictures(grid, list(emotions), source.shape)
    lifts = [corner_lift(cell[::4]) for cell in (original, zero, half, once)]
    assert abs(lifts[1] - lifts[0]) <= 0.005 and lifts[0] + 0.01 < lifts[2] and lifts[2] + 0.01 < lifts[3], lifts


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
