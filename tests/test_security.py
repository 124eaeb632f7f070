"""Attacks a hostile client can make against a public ``python app.py``, each refused in one sentence.

One server per module (lite engine, CPU, small caps: 2 s videos, 1 MB uploads, a queue of 4). The catalogue
runs through raw HTTP (``/gradio_api/upload`` and ``/gradio_api/call``, as any script can) and, where the
client can send it, through ``gradio_client``. Files the attacks point at live in a private folder outside
every folder of the app; their access times are set to the epoch, so any read of them by the server shows.
A local HTTP listener counts requests, so a URL the server fetched shows too. The module ends with a normal
render, which must still work, and the same holes are checked for the Python API and the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from cmet import media
from cmet.errors import InputError
from cmet.grid import drawable
from cmet.uploads import REFUSED
from tests.app_server import EXAMPLES, REPO, AppInputs, AppServer, example_inputs, launch_app
from tests.media_factory import make_image

MALFORMED = "This request does not carry its inputs as this app expects"
PLAYLIST = "points at other files or streams"
FD = {"_type": "gradio.FileData"}
NO_PRESET = "(none — use target speech)"


class Listener:
    """A local HTTP server that counts the requests it gets: a URL the app fetched would show here."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                outer.hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Private:
    """Files outside every folder of the app, with access times at the epoch so a read would show."""

    root: Path
    video: Path
    clip: Path
    tracked: bool = field(default=False)

    def seal(self) -> None:
        for path in (self.video, self.clip):
            os.utime(path, (0, time.time()))
        canary = self.root / "canary"
        canary.write_bytes(b"x")
        os.utime(canary, (0, time.time()))
        canary.read_bytes()
        self.tracked = canary.stat().st_atime > 0  # a filesystem mounted noatime cannot show reads

    def untouched(self) -> bool:
        return not self.tracked or all(p.stat().st_atime == 0 for p in (self.video, self.clip))


@dataclass
class Up:
    """A local file an attack sends the honest way: uploaded through the app (raw HTTP or handle_file)."""

    path: Path


@dataclass
class Ctx:
    """Everything an attack may point at."""

    inputs: AppInputs
    private: Private
    listener: Listener
    work: Path
    uploaded: Path  # the face video, as uploaded to the app

    @property
    def upload_dir(self) -> Path:
        """A folder inside the app's upload folder."""
        return self.uploaded.parent

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.work / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> AppInputs:
    return example_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> AppServer:
    caps = ["--max-seconds", "2", "--max-upload-mb", "1", "--max-queue", "4"]
    running = launch_app(tmp_path_factory.mktemp("app"), "--engine", "lite", "--device", "cpu", *caps)
    yield running
    assert running.stop() == 0, running.log_text()
    assert "Traceback" not in running.log_text(), running.log_text()


@pytest.fixture(scope="module")
def ctx(server, inputs, tmp_path_factory) -> Ctx:
    root = tmp_path_factory.mktemp("private")
    private = Private(root, root / "secret.mp4", root / "secret.wav")
    shutil.copy(inputs.video, private.video)
    shutil.copy(inputs.reference[0], private.clip)
    private.seal()
    uploaded = Path(upload(server, [inputs.video])[0])
    return Ctx(inputs, private, Listener(), tmp_path_factory.mktemp("attacks"), uploaded)


@pytest.fixture(scope="module")
def client(server, tmp_path_factory) -> Client:
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


# --------------------------------------------------------------------------- raw HTTP


def upload(server: AppServer, paths: list[Path]) -> list[str]:
    with httpx.Client(timeout=60) as http:
        files = [("files", (p.name, p.read_bytes())) for p in paths]
        answer = http.post(f"{server.url}gradio_api/upload", files=files)
    answer.raise_for_status()
    return answer.json()


def raw_call(server: AppServer, api: str, data: list[Any]) -> tuple[str, Any]:
    """POST a call and read its event stream: ("complete", outputs), ("error", sentence) or ("http", status)."""
    with httpx.Client(timeout=120) as http:
        posted = http.post(f"{server.url}gradio_api/call/{api}", json={"data": data})
        if posted.status_code != 200:
            return "http", posted.status_code
        stream = http.get(f"{server.url}gradio_api/call/{api}/{posted.json()['event_id']}").text
    event, payload = None, None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            payload = json.loads(line.removeprefix("data: "))
    if event == "error":
        return "error", (payload or {}).get("error")
    return event or "none", payload


def resolve_uploads(value: Any, server: AppServer) -> Any:
    """Replace every ``Up`` by the FileData of its upload through the app."""
    if isinstance(value, Up):
        return {"path": upload(server, [value.path])[0], "meta": FD}
    if isinstance(value, list):
        return [resolve_uploads(v, server) for v in value]
    if isinstance(value, dict):
        return {k: resolve_uploads(v, server) for k, v in value.items()}
    return value


def as_client_args(value: Any) -> Any:
    """Replace every ``Up`` by ``handle_file`` (gradio_client uploads it itself)."""
    if isinstance(value, Up):
        return handle_file(str(value.path))
    if isinstance(value, list):
        return [as_client_args(v) for v in value]
    if isinstance(value, dict):
        return {k: as_client_args(v) for k, v in value.items()}
    return value


def one_sentence(message: Any, ctx: Ctx) -> str:
    """A refusal a person reads: one line, one sentence, no traceback, nothing of the private folder."""
    assert isinstance(message, str) and message, message
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message
    assert message.endswith("."), message
    assert str(ctx.private.root) not in message, message
    return message


# --------------------------------------------------------------------------- the catalogue


def fd(path: str | Path) -> dict:
    return {"path": str(path), "meta": FD}


def refs(c: Ctx) -> list[Up]:
    return [Up(p) for p in c.inputs.reference]


def render(video: Any, c: Ctx, reference: Any = None, target: Any = None) -> tuple[str, list]:
    return "render", [video, refs(c) if reference is None else reference, target or [], "happy", 1.0]


def speech(c: Ctx, target: list) -> tuple[str, list]:
    """A render driven by target speech clips (no preset), so the clips are decoded."""
    return "render", [Up(c.inputs.video), refs(c), target, NO_PRESET, 1.0]


def compare(c: Ctx, emotions: Any, video: Any = None) -> tuple[str, list]:
    return "compare", [video or Up(c.inputs.video), refs(c), emotions, 1.0]


def symlink(c: Ctx) -> Path:
    link = c.upload_dir / "holiday-link.mp4"
    if not link.is_symlink():
        link.symlink_to(c.private.video)
    return link


def hls(c: Ctx, name: str, segment: str) -> Path:
    return c.file(name, f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{segment}\n#EXT-X-ENDLIST\n")


def png_named(c: Ctx, name: str) -> Path:
    return make_image(c.work / name)


Attack = Callable[[Ctx], tuple[str, list]]
# name → (the call, words the refusal must hold, whether gradio_client can send it)
CATALOGUE: dict[str, tuple[Attack, str, bool]] = {
    # server files named by path, for every file an endpoint takes
    "video_absolute_path": (lambda c: render(fd(c.private.video), c), REFUSED, False),
    "video_missing_path": (lambda c: render(fd(c.private.root / "nothere.mp4"), c), REFUSED, False),
    "video_dotdot_from_upload": (
        lambda c: render(fd(f"{c.upload_dir}/../../../../../../..{c.private.video}"), c),
        REFUSED,
        False,
    ),
    "video_symlink_in_upload_folder": (lambda c: render(fd(symlink(c)), c), REFUSED, False),
    "video_http_url": (lambda c: render(fd(f"{c.listener.url}/face.mp4"), c), REFUSED, False),
    "video_file_url": (lambda c: render(fd(f"file://{c.private.video}"), c), REFUSED, False),
    "video_nul_byte": (lambda c: render(fd(f"{c.upload_dir}/x\x00.mp4"), c), REFUSED, False),
    "video_upload_folder_itself": (lambda c: render(fd(c.upload_dir), c), REFUSED, False),
    "video_beside_the_examples": (lambda c: render(fd(EXAMPLES / ".." / ".." / "app.py"), c), REFUSED, False),
    "reference_absolute_path": (lambda c: render(Up(c.inputs.video), c, [fd(c.private.clip)]), REFUSED, False),
    "target_absolute_path": (lambda c: speech(c, [fd(c.private.clip)]), REFUSED, False),
    "preview_absolute_path": (
        lambda c: ("preview", [fd(c.private.video), refs(c), [], "happy", 1.0, 0]),
        REFUSED,
        False,
    ),
    "compare_video_absolute_path": (
        lambda c: compare(c, {"happy": "preset:happy"}, fd(c.private.video)),
        REFUSED,
        False,
    ),
    "compare_clip_absolute_path": (lambda c: compare(c, {"sarcastic": [fd(c.private.clip)]}), REFUSED, False),
    "compare_clip_without_meta": (lambda c: compare(c, {"sarcastic": [{"path": str(c.private.clip)}]}), REFUSED, False),
    "compare_clip_as_json_text": (
        lambda c: compare(c, json.dumps({"sarcastic": [fd(f"{c.upload_dir}/../../../{c.private.clip}")]})),
        REFUSED,
        False,
    ),
    # payloads Gradio cannot read as the endpoint's inputs
    "upload_without_meta": (lambda c: render({"path": str(c.uploaded)}, c), MALFORMED, False),
    "too_few_inputs": (lambda c: ("render", [Up(c.inputs.video)]), MALFORMED, False),
    "strength_not_a_number": (
        lambda c: ("render", [Up(c.inputs.video), refs(c), [], "happy", "max"]),
        MALFORMED,
        False,
    ),
    "strength_out_of_range": (lambda c: ("render", [Up(c.inputs.video), refs(c), [], "happy", 1e308]), "maximum", True),
    "frame_out_of_range": (
        lambda c: ("preview", [Up(c.inputs.video), refs(c), [], "happy", 1.0, 1e12]),
        "maximum",
        True,
    ),
    # uploads that would make ffmpeg open other files or the network
    "hls_playlist_of_a_private_file": (
        lambda c: render(Up(hls(c, "face.m3u8", f"file:{c.private.video}")), c),
        PLAYLIST,
        True,
    ),
    "hls_playlist_of_a_url": (
        lambda c: render(Up(hls(c, "stream.m3u8", f"{c.listener.url}/segment.ts")), c),
        PLAYLIST,
        True,
    ),
    "hls_playlist_named_mp4": (
        lambda c: render(Up(hls(c, "renamed.mp4", str(c.private.video))), c),
        PLAYLIST,
        True,
    ),
    "concat_list_as_video": (
        lambda c: render(Up(c.file("list.ffconcat", f"ffconcat version 1.0\nfile '{c.private.video}'\n")), c),
        PLAYLIST,
        True,
    ),
    "concat_list_as_target_clip": (
        lambda c: speech(c, [Up(c.file("angry.wav", f"ffconcat version 1.0\nfile '{c.private.clip}'\n"))]),
        PLAYLIST,
        True,
    ),
    "image2_sequence_pattern": (lambda c: render(Up(png_named(c, "frame%03d.png")), c), "image-sequence pattern", True),
    "dash_manifest": (
        lambda c: render(
            Up(c.file("face.mpd", f'<?xml version="1.0"?><MPD><BaseURL>{c.listener.url}/</BaseURL></MPD>')), c
        ),
        PLAYLIST,
        True,
    ),
    "sdp_network_session": (
        lambda c: render(
            Up(
                c.file(
                    "live.sdp",
                    "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n",
                )
            ),
            c,
        ),
        "not a readable video or audio file",
        True,
    ),
    "control_characters_in_a_file_name": (
        lambda c: render(Up(hls(c, "a\x1b[2J\r\nb\u202e.m3u8", f"file:{c.private.video}")), c),
        PLAYLIST,
        True,
    ),
    "unicode_file_name_of_a_text": (
        lambda c: render(Up(c.file("видео 😀.mp4", "not a video at all\n")), c),
        "is not a readable video",
        True,
    ),
    # labels, caps and big or deep JSON
    "label_with_control_characters": (lambda c: compare(c, {"\x1b[31mred\nalert": "preset:happy"}), "control", True),
    "label_with_bidi_override": (lambda c: compare(c, {"happy\u202etxt.exe": "preset:happy"}), "invisible", True),
    "label_of_10000_characters": (lambda c: compare(c, {"x" * 10_000: "preset:happy"}), "at most 32 characters", True),
    "sixty_emotions": (lambda c: compare(c, {f"e{i}": "preset:happy" for i in range(60)}), "at most 12 emotions", True),
    "twenty_one_reference_clips": (
        lambda c: render(Up(c.inputs.video), c, [Up(c.inputs.reference[i % 3]) for i in range(21)]),
        "at most 20 clips",
        True,
    ),
    "twenty_one_clips_for_an_emotion": (
        lambda c: compare(c, {"sarcastic": [Up(c.inputs.target[i % len(c.inputs.target)]) for i in range(21)]}),
        "at most 20",
        True,
    ),
    "megabyte_emotions_json": (
        lambda c: compare(c, json.dumps({"happy": "preset:happy", "pad": "x" * 1_000_000})),
        "64000",
        True,
    ),
    "deeply_nested_emotions_json": (lambda c: compare(c, "[" * 30_000 + "]" * 30_000), "nested too deeply", True),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_attack_is_refused_in_one_sentence_over_raw_http(name, server, ctx):
    attack, expected, _ = CATALOGUE[name]
    outputs = outputs_of(server)
    api, data = attack(ctx)
    kind, message = raw_call(server, api, resolve_uploads(data, server))
    assert kind == "error", (kind, message)
    assert expected in one_sentence(message, ctx)
    assert outputs_of(server) == outputs, "a refused call left an output"
    assert ctx.private.untouched(), "the server read a private file"
    assert ctx.listener.hits == [], "the server fetched a URL"


@pytest.mark.parametrize("name", [name for name, (_, _, by_client) in CATALOGUE.items() if by_client])
def test_attack_is_refused_in_one_sentence_through_gradio_client(name, client, server, ctx):
    attack, expected, _ = CATALOGUE[name]
    api, data = attack(ctx)
    with pytest.raises(AppError) as caught:
        client.predict(*as_client_args(data), api_name=f"/{api}")
    assert expected in one_sentence(str(caught.value), ctx)
    assert ctx.private.untouched() and ctx.listener.hits == []


def test_missing_and_existing_forbidden_paths_read_the_same(server, ctx):
    answers = {
        raw_call(server, "render", resolve_uploads(render(fd(path), ctx)[1], server))
        for path in (ctx.private.video, ctx.private.root / "nothere.mp4", ctx.private.root, "/etc/passwd", "/root/x")
    }
    assert answers == {("error", REFUSED)}


def test_deeply_nested_request_body_is_refused(server):
    body = '{"data": [null, [], ' + "[" * 100_000 + "]" * 100_000 + ", 1.0]}"
    with httpx.Client(timeout=60) as http:
        answer = http.post(
            f"{server.url}gradio_api/call/compare", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 400 and answer.json() == {"detail": "There was an error parsing the body"}


def test_oversized_upload_is_refused(server, ctx):
    big = ctx.file("big.mp4", b"\0" * 1_200_000)
    with httpx.Client(timeout=60) as http:
        answer = http.post(f"{server.url}gradio_api/upload", files=[("files", (big.name, big.read_bytes()))])
    assert answer.status_code == 413 and "maximum allowed size" in answer.text


@pytest.mark.parametrize("target", ["private", "traversal"])
def test_file_route_serves_nothing_outside_the_app(server, ctx, target):
    path = str(ctx.private.video) if target == "private" else f"{ctx.upload_dir}/../../../../../..{ctx.private.video}"
    with httpx.Client(timeout=30) as http:
        answer = http.get(f"{server.url}gradio_api/file={path}")
    assert answer.status_code in (403, 404)
    assert ctx.private.video.read_bytes()[:4096] not in answer.content
    os.utime(ctx.private.video, (0, time.time()))  # the assertion above read it here, in the test


def test_concurrent_flood_is_bounded_and_answered(server, ctx):
    """Twelve renders at once against a queue of 4: the overflow is refused at once, the rest complete."""
    data = resolve_uploads(render(Up(ctx.inputs.video), ctx)[1], server)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: raw_call(server, "render", data), range(12)))
    kinds = [kind for kind, _ in answers]
    assert ("http", 503) in answers, answers
    assert set(kinds) <= {"http", "complete"} and "complete" in kinds, answers


def test_server_still_renders_normally_afterwards(server, ctx, client):
    answer = client.predict(
        handle_file(str(ctx.inputs.video)), [handle_file(str(p)) for p in ctx.inputs.reference], [], "happy", 1.5,
        api_name="/render",
    )  # fmt: skip
    out = Path(answer["video"] if isinstance(answer, dict) else answer)
    assert media.probe(out).frames == media.probe(ctx.inputs.video).frames
    assert ctx.private.untouched() and ctx.listener.hits == []


def outputs_of(server: AppServer) -> set[Path]:
    return set(server.tmp.glob("cmet-app-*/outputs/*"))


# --------------------------------------------------------------------------- API and CLI


@pytest.fixture
def private_video(inputs, tmp_path) -> Private:
    root = tmp_path / "private"
    root.mkdir()
    private = Private(root, root / "secret.mp4", root / "secret.wav")
    shutil.copy(inputs.video, private.video)
    shutil.copy(inputs.reference[0], private.clip)
    private.seal()
    return private


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("list.m3u8", "#EXTM3U\n#EXTINF:10,\nfile:{video}\n#EXT-X-ENDLIST\n", "M3U/HLS playlist"),
        ("list.ffconcat", "ffconcat version 1.0\nfile '{video}'\n", "concat list"),
        ("calm.wav", "ffconcat version 1.0\nfile '{clip}'\n", "concat list"),
    ],
)
def test_api_refuses_lists_before_reading_what_they_name(private_video, tmp_path, name, text, expected):
    listed = tmp_path / name
    listed.write_text(text.format(video=private_video.video, clip=private_video.clip))
    for read in (media.probe, media.read_audio):
        with pytest.raises(InputError, match=expected):
            read(listed)
    assert private_video.untouched()


def test_cli_refuses_a_playlist_in_one_sentence(private_video, tmp_path):
    playlist = tmp_path / "face.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXTINF:10,\nfile:{private_video.video}\n#EXT-X-ENDLIST\n")
    out = tmp_path / "out.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "cmet", "edit", str(playlist), "--target", "preset:happy", "-o", str(out)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode != 0 and not out.exists()
    assert "Traceback" not in done.stderr and PLAYLIST in done.stderr
    assert private_video.untouched()


@pytest.mark.parametrize("label", ["extended: sarcástico 😀", "x" * 32, "日本語", "tab\there"])
def test_grid_labels_are_drawn_as_ascii_inside_their_cell(label):
    width = 70
    text = drawable(label, width)
    assert text.isascii() and text.isprintable() and text
    assert cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] <= width
