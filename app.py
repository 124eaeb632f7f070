"""Gradio app for cmet: edit the emotion of a talking-face video with speech, preview it live, compare emotions.

UI only: every edit goes through the public ``cmet`` API (``EmotionEditor``), loaded once at start. User
mistakes arrive as ``CmetError``/``CmetWarning`` and are shown as Gradio messages; nothing else is caught, so
a bug keeps its traceback in the server log while the page only says "Error". Requests may name only files
uploaded through the app or its examples (``cmet.uploads``), and the queue and uploads are capped.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--engine auto|lite|official]
                  [--device auto|cpu|cuda] [--lips video|audio] [--precision auto|fp32] [--compile] …
                  [--max-seconds 120] [--max-upload-mb 300] [--max-queue 32] [--tmp DIR] [--download] [--verbose]

On a Hugging Face Space (``SPACE_ID`` set), or with ``--download``, the official engine's weights are fetched at
start-up while the lite engine serves (``cmet.space``); the header says which engine is active.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.exceptions import ComponentProcessingError, InvalidPathError
from pydantic import ValidationError

from cmet import EditResult, EmotionEditor, quiet
from cmet.assets import example_videos
from cmet.config import STRENGTH_RANGE, RuntimeConfig
from cmet.doctor import diagnose
from cmet.engines import official_missing
from cmet.errors import CmetError, CmetWarning, InputError
from cmet.grid import check_emotions
from cmet.options import LiteOptions, OfficialOptions, add_engine_arguments, from_arguments
from cmet.presets import list_presets
from cmet.space import OfficialFetch, on_space, use_persistent_storage
from cmet.uploads import check_request, confine, confine_all

EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
NO_PRESET = "(none — use target speech)"
AUDIO_TYPES = ["audio", ".wav", ".mp3", ".m4a", ".ogg", ".webm", ".flac"]
EXTENDED_ROWS = 3
CACHE_SECONDS = 3600
FRAME_BOUND = 100_000  # the frame slider's static range, which API calls are checked against; pages narrow it
MAX_CLIPS = 20  # speech clips per pool (reference, target, one compared emotion): each is decoded and encoded
MAX_JSON = 64_000  # characters of emotions_json given as text
MALFORMED = "This request does not carry its inputs as this app expects; see the API page for each endpoint's inputs."

ON_ZERO_GPU = importlib.util.find_spec("spaces") is not None
if ON_ZERO_GPU:
    import spaces

    def gpu(duration: int) -> Callable[[Callable], Callable]:
        """On a ZeroGPU Space, borrow the GPU for the call; ``duration`` is the budget in seconds."""
        return spaces.GPU(duration=duration)

else:

    def gpu(duration: int) -> Callable[[Callable], Callable]:
        """No ``spaces`` package: the call runs as is."""
        return lambda fn: fn


@dataclass
class AppConfig:
    """Command-line settings; each run keeps its uploads, Gradio cache and outputs in a fresh dir under ``tmp``."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    engine: str = "auto"
    device: str = "auto"
    max_seconds: float = 120.0
    max_upload_mb: float = 300.0
    max_queue: int = 32
    verbose: bool = False
    tmp: Path = field(default_factory=lambda: Path(os.environ.get("CMET_TMP", tempfile.gettempdir())))
    lite: LiteOptions = field(default_factory=LiteOptions)
    official: OfficialOptions = field(default_factory=OfficialOptions)
    download: bool = False  # fetch the official weights at start-up, serving with lite meanwhile (always on a Space)


def parse_args(argv: list[str] | None = None) -> AppConfig:
    defaults = AppConfig()
    parser = argparse.ArgumentParser(description="cmet: speech-driven emotion editing of talking-face video (web app)")
    parser.add_argument("--host", default=defaults.host, help="address to listen on (0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    add_engine_arguments(parser)  # --engine, --device and each engine's options, with cmet's defaults
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="longest video, s; 0 = any")
    parser.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb, help="largest upload, MB")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="most requests waiting at once")
    parser.add_argument("--tmp", type=Path, default=defaults.tmp, help="temp dir (default: $CMET_TMP or the system's)")
    parser.add_argument("--verbose", action="store_true", help="also show MediaPipe/TFLite/FunASR log lines")
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the official weights at start-up, serving with the lite engine until they are there "
        "(always done on a Hugging Face Space)",
    )
    args = parser.parse_args(argv)
    return AppConfig(
        host=args.host,
        port=args.port,
        share=args.share,
        engine=args.engine,
        device=args.device,
        max_seconds=args.max_seconds,
        max_upload_mb=args.max_upload_mb,
        max_queue=args.max_queue,
        tmp=args.tmp.resolve(),
        verbose=args.verbose,
        lite=from_arguments(LiteOptions, args),
        official=from_arguments(OfficialOptions, args),
        download=args.download or on_space(),
    )


def without_upload_dirs(message: str) -> str:
    """Show uploads by their own names, not by the server's cache folders."""
    upload = re.escape(gr.utils.get_upload_folder())
    return re.sub(upload + r"/[^/\s]+/", "", message)


@contextmanager
def user_errors() -> Iterator[None]:
    """A ``CmetError`` becomes ``gr.Error`` with its sentence; anything else stays a bug (the page says "Error")."""
    try:
        yield
    except CmetError as exc:
        raise gr.Error(without_upload_dirs(str(exc)), print_exception=False) from None


@contextmanager
def user_messages() -> Iterator[None]:
    """``user_errors`` plus cmet's warnings as ``gr.Warning``; other warnings go to the server log as usual.

    Warning capture is process-wide, so only handlers in the one-at-a-time "gpu" queue use this.
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with user_errors(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CmetWarning)
            yield
    finally:
        shown: set[str] = set()
        for message in caught:
            if not issubclass(message.category, CmetWarning):
                warnings.showwarning(message.message, message.category, message.filename, message.lineno)
            elif str(message.message) not in shown:
                shown.add(str(message.message))
                gr.Warning(without_upload_dirs(str(message.message)))


def upload_roots() -> tuple[str, Path]:
    """The folders a request may name files in: Gradio's upload folder (uploads, cached examples) and the examples."""
    return gr.utils.get_upload_folder(), EXAMPLES_DIR


class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` whose events take files only from ``upload_roots``, and refuse anything else in one sentence.

    Gradio itself refuses a foreign path, but as an empty error (``{"error": null}``) with a traceback in the log,
    and it downloads a URL given as a path. Here each request's raw JSON is checked first (``check_request``), and
    a payload Gradio cannot read as its inputs is answered with a sentence too.
    """

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
        with user_errors():
            check_request(inputs, upload_roots())
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(MALFORMED, print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error as exc:  # Gradio's own sentences (a value out of a slider's range): no traceback to log
            exc.print_exception = False
            raise
        except (InvalidPathError, ValidationError, ComponentProcessingError):
            raise gr.Error(MALFORMED, print_exception=False) from None


def progress_bridge(progress: gr.Progress) -> Callable[[float, str], None]:
    """cmet's ``progress(fraction, stage)`` → the page's progress bar (the stage text carries cmet's ETA)."""
    return lambda fraction, stage: progress(min(max(float(fraction), 0.0), 1.0), desc=stage)


def file_paths(files: list[Any] | None) -> list[str]:
    """Paths from a ``gr.File(file_count="multiple")`` value (strings from the UI or the API), each an upload."""
    if len(files or []) > MAX_CLIPS:
        raise InputError(f"A list of speech clips holds at most {MAX_CLIPS} clips ({len(files)} given); keep the best.")
    return confine_all([str(f) for f in files or []], upload_roots())


def video_file(video: str | None) -> str | None:
    """The face video of a call, which must be an upload (or an example) like every other file."""
    return None if not video else confine(video, upload_roots())


def target_of(target_files: list[Any] | None, preset: str | None) -> list[str] | str:
    """A chosen preset wins over target clips; the preset names the emotion, the clips only show it."""
    if preset and preset != NO_PRESET:
        return f"preset:{preset}"
    return file_paths(target_files)


def require_inputs(video: str | None, reference: list[str], target: list[str] | str) -> None:
    if not video:
        raise InputError("Upload a face video first (or click one of the examples).")
    if not reference:
        raise InputError("Add at least one neutral reference speech clip: upload files or record with the microphone.")
    if not target:
        raise InputError("Add target speech clips in the wanted emotion, or pick a target preset.")


def clip_path(item: Any, emotion: str) -> str:
    """One clip of an emotion given by speech in ``emotions_json``: it must be a file uploaded to this app."""
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise InputError(
            f'The clips for "{emotion}" must be files uploaded with the call '
            "(gradio_client.handle_file(path)), not plain strings."
        )
    return confine(item["path"], upload_roots())


def parse_emotions(spec: Any, default_strength: float) -> tuple[dict[str, list[str] | str], float | dict[str, float]]:
    """``emotions_json`` → (targets for ``editor.compare``, strength: one number or one per emotion).

    Each value is ``"preset:NAME"``, a list of uploaded clips, or ``{"target": either, "strength": x}``.
    """
    if isinstance(spec, str):
        if len(spec) > MAX_JSON:
            raise InputError(f"emotions_json is {len(spec)} characters long; at most {MAX_JSON} are read.")
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise InputError(f"emotions_json is not valid JSON ({exc.msg} at character {exc.pos}).") from None
        except RecursionError:
            raise InputError("emotions_json is nested too deeply; give one level of emotions.") from None
    if not isinstance(spec, dict) or not spec:
        raise InputError('emotions_json must name at least one emotion, e.g. {"happy": "preset:happy"}.')
    check_emotions(spec)
    targets: dict[str, list[str] | str] = {}
    strengths: dict[str, float] = {}
    for name, value in spec.items():
        own = None
        if isinstance(value, dict) and "target" in value:
            own = row_strength(name, "" if value.get("strength") is None else str(value["strength"]))
            value = value["target"]
        strengths[name] = default_strength if own is None else own
        if isinstance(value, str) and value.startswith("preset:"):
            targets[name] = value
        elif isinstance(value, list) and 0 < len(value) <= MAX_CLIPS:
            targets[name] = [clip_path(item, name) for item in value]
        elif isinstance(value, list) and value:
            raise InputError(f'"{name}" has {len(value)} clips; give at most {MAX_CLIPS}.')
        else:
            raise InputError(f'"{name}" needs "preset:NAME" or a list of speech clips in that emotion.')
    if len(set(strengths.values())) == 1:
        return targets, default_strength
    return targets, strengths


class EditorApp:
    """Handlers behind the page: validate, call the editor (GPU-wrapped), turn failures into messages."""

    def __init__(self, editor: EmotionEditor, config: AppConfig, out_dir: Path, fetch: OfficialFetch | None = None):
        self.config = config
        self.out_dir = out_dir
        self.presets = list_presets()
        self.editor = editor
        self.fetch = fetch
        # Through ``self.editor`` at call time: a fetch may hand over the official engine while the app serves.
        self._edit = gpu(180)(lambda *args, **kwargs: self.editor.edit(*args, **kwargs))
        self._preview = gpu(30)(lambda *args, **kwargs: self.editor.preview(*args, **kwargs))
        self._compare = gpu(300)(lambda *args, **kwargs: self.editor.compare(*args, **kwargs))

    def use(self, editor: EmotionEditor) -> None:
        """Serve with ``editor`` from the next request on (a render in progress finishes on the one it began with)."""
        self.editor = editor

    def header(self) -> str:
        return header(self.editor, self.fetch.note if self.fetch else "")

    def header_update(self) -> tuple[str, gr.Timer]:
        """The header, refreshed while a fetch runs; the timer stops once it is over."""
        return self.header(), gr.Timer(active=not (self.fetch and self.fetch.done.is_set()))

    def output_path(self, kind: str) -> Path:
        return self.out_dir / f"{kind}-{uuid.uuid4().hex[:12]}.mp4"

    def video_changed(self, video: str | None) -> dict:
        """Early feedback on upload (unreadable or too long; the editor enforces the same cap) and frame range."""
        if not video:
            return gr.update(maximum=FRAME_BOUND, value=0)
        with user_messages():
            info = self.editor.check_video(video_file(video))
        return gr.update(maximum=max(info.frames - 1, 1), value=0)

    def render(
        self,
        video: str | None,
        reference_files: list[Any] | None,
        target_files: list[Any] | None,
        preset: str | None,
        strength: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio injects the tracker through this default
    ) -> str:
        with user_messages():
            video, reference, target = video_file(video), file_paths(reference_files), target_of(target_files, preset)
            require_inputs(video, reference, target)
            result = self._edit(
                video,
                reference=reference,
                target=target,
                strength=float(strength),
                out=self.output_path("edit"),
                progress=progress_bridge(progress),
            )
            self.report(result)
        return str(result.path)

    def preview(
        self,
        video: str | None,
        reference_files: list[Any] | None,
        target_files: list[Any] | None,
        preset: str | None,
        strength: float,
        frame: float,
    ) -> np.ndarray | None:
        """One edited frame; ``None`` (an empty image) until video, reference and target are all given."""
        with user_messages():
            video, reference, target = video_file(video), file_paths(reference_files), target_of(target_files, preset)
        if not (video and reference and target):
            return None
        with user_messages():
            return self._preview(video, reference, target, strength=float(strength), frame=int(frame or 0))

    def compare(
        self,
        video: str | None,
        reference_files: list[Any] | None,
        emotions_json: Any,
        strength: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio injects the tracker through this default
    ) -> str:
        with user_messages():
            video, reference = video_file(video), file_paths(reference_files)
            targets, strengths = parse_emotions(emotions_json, float(strength))
            require_inputs(video, reference, list(targets))
            result = self._compare(
                video,
                reference,
                targets,
                strength=strengths,
                out=self.output_path("compare"),
                progress=progress_bridge(progress),
            )
            self.report(result)
        return str(result.path)

    def build_emotions(self, basic: list[str], extended: list[str], *rows: Any) -> dict:
        """The Compare tab's choices as ``emotions_json`` (shown to the user, then sent to ``/compare``)."""
        spec: dict[str, Any] = {name: f"preset:{name}" for name in [*basic, *extended]}
        known = set(self.presets["basic"]) | set(self.presets["extended"])
        with user_errors():
            for index in range(0, len(rows), 3):
                name, files, strength = (rows[index] or "").strip(), file_paths(rows[index + 1]), rows[index + 2]
                if not name and not files:
                    continue
                if not name:
                    raise InputError(f"Row {index // 3 + 1} has speech clips but no emotion name; name it.")
                if files:
                    target: Any = [{"path": p, "meta": {"_type": "gradio.FileData"}} for p in files]
                elif name in known:
                    target = f"preset:{name}"
                else:
                    raise InputError(f'Add speech clips for "{name}" (it is not a preset), or clear its name.')
                own = row_strength(name, strength)
                spec[name] = target if own is None else {"target": target, "strength": own}
            if not spec:
                raise InputError("Pick at least one emotion: tick a preset or fill an emotion row with clips.")
        return spec

    def report(self, result: EditResult) -> None:
        gr.Info(f"{result.frames} frames on {result.engine}: {result.timing_line()}")


def row_strength(name: str, text: str | None) -> float | None:
    """One emotion's own strength (a Compare row or ``emotions_json``); blank means the strength of all."""
    if not (text or "").strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f'The strength for "{name}" must be a number such as 1.5, or blank.') from None
    low, high = STRENGTH_RANGE
    if not low <= value <= high:
        raise InputError(f'The strength for "{name}" must lie between {low:g} and {high:g}.')
    return value


def clip_pool(label: str, elem_id: str) -> gr.File:
    """Several speech clips: a multi-file upload plus microphone/upload of one clip at a time, appended."""
    with gr.Group():
        pool = gr.File(
            file_count="multiple", file_types=AUDIO_TYPES, label=label, elem_id=elem_id, height=150, interactive=True
        )
        with gr.Row():
            one = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label="Record (or add) one clip — it joins the list above",
                elem_id=f"{elem_id}-one",
                scale=4,
            )
            with gr.Column(scale=1, min_width=110):
                clear = gr.Button("Clear clips", size="sm", elem_id=f"{elem_id}-clear")

    def append(clip: str | None, files: list[Any] | None) -> tuple[None, list[str] | None]:
        return None, [*file_paths(files), clip] if clip else files

    for event in (one.stop_recording, one.upload):
        event(append, [one, pool], [one, pool], queue=False, api_visibility="private")
    clear.click(lambda: None, None, pool, queue=False, api_visibility="private")
    return pool


def _example_speech(kind: str) -> list[str]:
    return [str(p) for p in sorted((EXAMPLES_DIR / kind).glob("*.wav"))]


def example_rows(preset: str | None) -> list[list[Any]]:
    """Examples from assets/examples: the neutral face with ``preset`` first, then each clip with the target speech."""
    videos, reference, target = example_videos(EXAMPLES_DIR), _example_speech("reference"), _example_speech("target")
    if not videos or not reference:
        return []
    rows = [[str(v), reference, target, NO_PRESET, 1.0] for v in videos if target]
    return ([[str(videos[0]), reference, None, preset, 1.0]] if preset else []) + rows


def compare_example_rows(basic: list[str], extended: list[str]) -> list[list[Any]]:
    """The Compare tab's example: the neutral face with the emotions that read most plainly, and one extended."""
    videos, reference = example_videos(EXAMPLES_DIR), _example_speech("reference")
    shown = [e for e in ("happy", "sad", "surprised", "angry") if e in basic]
    if not videos or not reference or not shown:
        return []
    return [[str(videos[0]), reference, shown, extended[:1]]]


def header(editor: EmotionEditor, note: str = "") -> str:
    """The page's first lines: which engine serves, on what, why; and ``note`` (a weights fetch under way)."""
    return (
        "# cmet — change the emotion of a talking-face video with speech\n"
        f"**engine:** {editor.engine_name} · **device:** {editor.device} — {editor.engine_reason}"
    ) + (f"\n\n> {note}" if note else "")


def build_demo(
    editor: EmotionEditor, config: AppConfig, out_dir: Path, fetch: OfficialFetch | None = None
) -> gr.Blocks:
    """The page; with ``fetch`` the official weights download meanwhile and the header follows (started here)."""
    app = EditorApp(editor, config, out_dir, fetch)
    presets = app.presets
    gpu_events = {"concurrency_id": "gpu", "concurrency_limit": 1}
    # Off ZeroGPU previews queue on their own, so moving the slider during a render answers at once instead of
    # after the render (the queue stays: it carries the warnings shown as toasts).
    preview_events = gpu_events if ON_ZERO_GPU else {"concurrency_id": "preview", "concurrency_limit": 1}
    with GuardedBlocks(title="cmet — emotion editing", delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as demo:
        engine_line = gr.Markdown(app.header(), elem_id="engine-line")
        if fetch is not None:  # the header follows the fetch: on every page load, and every few seconds until done
            timer = gr.Timer(3)
            for event in (demo.load, timer.tick):
                event(app.header_update, None, [engine_line, timer], queue=False, api_visibility="private")
            fetch.start(app.use)
        with gr.Accordion("Environment (doctor)", open=False):
            gr.Code("\n".join(diagnose().lines()), language=None, label="python -m cmet doctor", interactive=False)

        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="Face video (neutral, talking)", sources=["upload"], elem_id="video")
                    reference = clip_pool("Reference speech — neutral, a few clips", "reference")
                    preset = gr.Dropdown(
                        [NO_PRESET, *presets["basic"], *presets["extended"]],
                        value=NO_PRESET,
                        label="Target preset (overrides target speech)",
                        elem_id="preset",
                    )
                    target = clip_pool("Target speech — the wanted emotion, a few clips", "target")
                with gr.Column():
                    strength = gr.Slider(
                        *STRENGTH_RANGE, value=1, step=0.05, label="Strength (1 = as in the paper)", elem_id="strength"
                    )
                    frame = gr.Slider(0, FRAME_BOUND, value=0, step=1, label="Preview frame", elem_id="frame")
                    shown = gr.Image(
                        label="Instant preview", type="numpy", format="jpeg", elem_id="preview", height=360
                    )
                    render_button = gr.Button("Render", variant="primary")
                    result = gr.Video(label="Edited video", elem_id="result")
            rows = example_rows("happy" if "happy" in presets["basic"] else None)
            if rows:
                gr.Examples(
                    rows,
                    [video, reference, target, preset, strength],
                    outputs=result,
                    fn=app.render,
                    cache_examples=bool(os.environ.get("SPACE_ID")),
                    cache_mode="lazy",
                )

        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    cmp_video = gr.Video(label="Face video", sources=["upload"], elem_id="cmp-video")
                    cmp_reference = gr.File(
                        file_count="multiple",
                        file_types=AUDIO_TYPES,
                        label="Reference speech — neutral",
                        elem_id="cmp-reference",
                    )
                    copy_button = gr.Button("Use the Edit tab's video and reference", size="sm")
                    cmp_strength = gr.Slider(*STRENGTH_RANGE, value=1, step=0.05, label="Strength (all emotions)")
                with gr.Column():
                    basic = gr.CheckboxGroup(presets["basic"], label="Basic emotions (presets)")
                    extended = gr.CheckboxGroup(
                        presets["extended"], label="Extended emotions (presets)", visible=bool(presets["extended"])
                    )
                    gr.Markdown("Extended emotions by speech: a name, a few clips, optionally its own strength.")
                    row_inputs: list[gr.components.Component] = []
                    for row in range(EXTENDED_ROWS):
                        with gr.Row(equal_height=True):
                            row_inputs += [
                                gr.Textbox(label="Emotion", placeholder="e.g. sarcastic", elem_id=f"row{row}-name"),
                                gr.File(
                                    file_count="multiple",
                                    file_types=AUDIO_TYPES,
                                    label="Its speech",
                                    scale=2,
                                    elem_id=f"row{row}-clips",
                                ),
                                gr.Textbox(label="Strength", placeholder="as all", elem_id=f"row{row}-strength"),
                            ]
                    compare_button = gr.Button("Render comparison", variant="primary")
            compare_rows = compare_example_rows(presets["basic"], presets["extended"])
            if compare_rows:
                gr.Examples(compare_rows, [cmp_video, cmp_reference, basic, extended], label="Example")
            with gr.Accordion("As an API call (emotions_json)", open=False):
                emotions_json = gr.JSON(label="emotions_json", elem_id="emotions-json")
            grid = gr.Video(label="Comparison grid", elem_id="grid")

        video.change(app.video_changed, video, frame, api_visibility="private", **gpu_events)
        gr.on(
            [video.change, reference.change, target.change, preset.change, strength.change, frame.change],
            app.preview,
            [video, reference, target, preset, strength, frame],
            shown,
            api_name="preview",
            trigger_mode="always_last",
            show_progress="minimal",
            **preview_events,
        )
        render_button.click(
            app.render, [video, reference, target, preset, strength], result, api_name="render", **gpu_events
        )
        copy_button.click(
            lambda v, r: (v, r), [video, reference], [cmp_video, cmp_reference], queue=False, api_visibility="private"
        )
        compare_button.click(
            app.build_emotions, [basic, extended, *row_inputs], emotions_json, api_visibility="private"
        ).success(
            app.compare, [cmp_video, cmp_reference, emotions_json, cmp_strength], grid, api_name="compare", **gpu_events
        )
    return demo


def main(argv: list[str] | None = None) -> int:
    """Load the editor once, then serve; this run's uploads, cache and outputs share one temp dir, removed at exit."""
    config = parse_args(argv)
    if config.verbose:
        quiet.set_verbose(True)
    quiet.install()
    config.tmp.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="cmet-app-", dir=config.tmp))
    atexit.register(shutil.rmtree, run_dir, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ["GRADIO_TEMP_DIR"] = str(run_dir / "gradio")
    out_dir = run_dir / "outputs"
    out_dir.mkdir()
    try:
        into_storage = use_persistent_storage() if config.download else False
        fetching = config.download and config.engine != "lite" and bool(official_missing(config.official))
        runtime = RuntimeConfig(max_seconds=config.max_seconds or None)
        options = {"lite": config.lite, "official": config.official}
        first = "lite" if fetching else config.engine
        editor = EmotionEditor.load(first, config.device, runtime, **options)
    except CmetError as exc:
        print(f"cmet app: {exc}", file=sys.stderr)
        return 2
    fetch = None
    if fetching:
        editor.engine_reason = "the official engine's weights are downloading"
        fetch = OfficialFetch(lambda: EmotionEditor.load("official", config.device, runtime, **options), into_storage)
    print(f"cmet app: engine: {editor.engine_name} on {editor.device} ({editor.engine_reason})", file=sys.stderr)
    demo = build_demo(editor, config, out_dir, fetch)
    demo.queue(default_concurrency_limit=1, max_size=config.max_queue)
    try:
        demo.launch(
            server_name=config.host,
            server_port=config.port,
            share=config.share,
            show_error=False,
            allowed_paths=[str(EXAMPLES_DIR), str(out_dir)],
            max_file_size=int(config.max_upload_mb * 1_000_000),
        )
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
