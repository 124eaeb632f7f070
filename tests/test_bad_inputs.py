"""Every case of the bad-input catalogue (``tests/bad_inputs.py``) through the API and the CLI.

A failure must be one sentence that names the problem (``InputError``/``MissingWeightsError`` from the API;
``error: <sentence>``, exit code 2 and no traceback from the CLI) and must leave the case's workspace exactly as it
was: inputs byte-identical, no output, no partial or temp file beside it, the temp dir empty. A "works" case must
produce a normal edit (same frame count, displayed size and audio as its input) and nothing else.

The CLI cases run in two driver processes (fast failures, and those that need the face tracked) that each start
torch and MediaPipe once; ``test_cli_real_process_matches_driver`` checks that a real ``python -m cmet`` prints
the same, and ``test_cli_sigint_mid_render`` interrupts a real one while it writes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from cmet import media
from cmet.config import RuntimeConfig
from cmet.errors import CmetWarning
from cmet.lite_engine import LiteEngine
from cmet.pipeline import EmotionEditor
from tests import media_factory as mf
from tests.bad_inputs import CASES, REPO, Base, Case, Run, Workspace, build_base, run_cli_batch

BY_NAME = {c.name: c for c in CASES}
FAILURES = [c for c in CASES if not c.works]


def _params(side: str) -> list:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in CASES if getattr(c, side)]


def _skip_reason(case: Case) -> str:
    return case.skip() if case.skip else ""


def test_catalogue_is_complete():
    assert len(FAILURES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.match for c in FAILURES) and not any(c.match for c in CASES if c.works)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return build_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def editor() -> EmotionEditor:
    return EmotionEditor.load(engine="lite", device="cpu")


# --------------------------------------------------------------------------- checks shared by both sides


def _check_sentence(message: str, case: Case) -> None:
    assert "\n" not in message.strip(), f"{case.name}: not one line: {message!r}"
    assert re.search(case.match, message), f"{case.name}: {message!r} does not match {case.match!r}"


def _check_untouched(ws: Workspace, before: dict[str, str], case: Case | None = None) -> None:
    if case is not None and case.early:
        tracked = sorted(p.name for p in (ws.cache / "tracks").glob("*"))
        assert not tracked, f"{case.name}: failed only after tracking the face (cache: {tracked}); check it first"
    after = ws.snapshot()
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"workspace changed: added {added}, removed {removed}, changed {changed}"
    assert not ws.cache_leftovers(), ws.cache_leftovers()


def _check_edit(ws: Workspace, run: Run, before: dict[str, str], path: Path, case: Case) -> None:
    """A normal edit: the output only, with the input's frame times, displayed size and audio (in sync, within one
    frame), and close to it; then the case's own check."""
    assert path == run.out and path.is_file()
    before = {**before, str(path.relative_to(ws.root)): ""}
    after = ws.snapshot()
    assert sorted(after) == sorted(before), f"unexpected files: {sorted(set(after) ^ set(before))}"
    assert all(after[k] == v for k, v in before.items() if v), "an input changed"
    assert not any(ws.tmp.iterdir()) and not ws.cache_leftovers()
    src = media.probe(run.video)
    period = 1 / src.fps
    if path.suffix == ".gif":  # cmet writes GIFs but does not read them: checked with ffmpeg alone
        times = mf.frame_times(path)
        assert len(times) == src.frames and np.abs(times - src.frame_times()).max() < period / 2
        assert "Audio:" not in mf.stream_summary(path)
        if case.check is not None:
            case.check(run, path)
        return
    out = media.probe(path)
    if not src.variable_rate:
        assert out.frames == src.frames
        assert np.abs(out.frame_times() - src.frame_times()).max() < period / 2, "frame times moved"
    assert abs(out.duration - src.duration) < period
    assert out.has_audio == src.has_audio and out.rotation == 0
    if out.has_audio:
        heard, kept = media.read_audio(run.video), media.read_audio(path)
        # Matroska cannot mark the encoder's padding in the last AAC frame (1024 samples): players play it as silence
        padding = 1024 / 16000 if path.suffix == ".mkv" else 0.0
        assert -period < len(kept) / 16000 - min(len(heard) / 16000, out.duration) < period + padding, "audio cut"
        assert abs(mf.av_lag(heard, kept, 16000)) < period, "audio and video out of sync"
    if run.compare is None:
        assert (out.width, out.height) == (src.width + src.width % 2, src.height + src.height % 2)
        first_in = next(media.iter_frames(run.video)).astype(np.float32)
        first_out = next(media.iter_frames(path))[: src.height, : src.width].astype(np.float32)
        assert np.abs(first_in - first_out).mean() < 12, "the output does not look like the input (orientation?)"
    if case.check is not None:
        case.check(run, path)


# --------------------------------------------------------------------------- API


def _api_editor(run: Run, shared: EmotionEditor) -> EmotionEditor:
    if run.engine != "lite" or run.device != "cpu":
        return EmotionEditor.load(engine=run.engine, device=run.device)
    if run.fresh_engine:
        return EmotionEditor(LiteEngine(device="cpu"))
    if run.max_seconds:
        return EmotionEditor(shared.engine, runtime=RuntimeConfig(max_seconds=run.max_seconds))
    return shared


@pytest.mark.parametrize("case", _params("api"))
def test_api(case: Case, base: Base, editor: EmotionEditor, tmp_path: Path, monkeypatch) -> None:
    if reason := _skip_reason(case):
        pytest.skip(reason)
    ws, run = case.prepare(tmp_path, base)
    for key, value in run.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", str(ws.tmp))
    before = ws.snapshot()
    if case.works:
        chosen = _api_editor(run, editor)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CmetWarning)
            if run.compare is not None:
                result = chosen.compare(run.video, run.reference, run.compare, run.strength, run.out)
            else:
                result = chosen.edit(run.video, run.reference, run.target, run.strength, run.out)
        said = [str(w.message) for w in caught if issubclass(w.category, CmetWarning)]
        assert not case.warns or any(re.search(case.warns, m) for m in said), said
        _check_edit(ws, run, before, Path(result.path), case)
        return
    with pytest.raises(case.error) as caught:
        _api_editor(run, editor).edit(run.video, run.reference, run.target, run.strength, run.out)
    _check_sentence(str(caught.value), case)
    assert str(caught.value).rstrip().endswith("."), "a sentence ends with a full stop"
    _check_untouched(ws, before, case)


def test_api_interrupt_leaves_nothing(base: Base, editor: EmotionEditor, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C (or any exception from the progress callback) during the render: no temp files, old output kept."""
    ws, run = Case("interrupt", lambda w: Run(w.face(), target="preset:sad")).prepare(tmp_path, base)
    monkeypatch.setattr(tempfile, "tempdir", str(ws.tmp))
    ws.out.write_bytes(b"yesterday's result")  # must survive untouched
    before = ws.snapshot()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("frame"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        editor.edit(run.video, run.reference, run.target, run.strength, run.out, progress=progress)
    _check_untouched(ws, before)


# --------------------------------------------------------------------------- CLI


def _cli_batch(tmp_path_factory, base: Base, slow: bool) -> dict[str, tuple[Workspace, Run, dict, dict]]:
    root = tmp_path_factory.mktemp("cli-slow" if slow else "cli-fast")
    prepared = {}
    for case in CASES:
        if case.cli and case.slow == slow and not _skip_reason(case):
            ws, run = case.prepare(root / case.name, base)
            prepared[case.name] = (ws, run, ws.snapshot())
    records = run_cli_batch({name: run for name, (_, run, _) in prepared.items()}, root)
    return {name: (ws, run, before, records[name]) for name, (ws, run, before) in prepared.items()}


@pytest.fixture(scope="module")
def cli_fast(tmp_path_factory, base):
    return _cli_batch(tmp_path_factory, base, slow=False)


@pytest.fixture(scope="module")
def cli_slow(tmp_path_factory, base):
    return _cli_batch(tmp_path_factory, base, slow=True)


def _check_cli_failure(record: dict, case: Case) -> None:
    stderr = record["stderr"]
    assert "Traceback" not in stderr, stderr
    assert record["code"] == 2, f"exit code {record['code']}: {stderr[-2000:]}"
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    _check_sentence(errors[0], case)
    assert "wrote" not in record["stdout"]


@pytest.mark.parametrize("case", _params("cli"))
def test_cli(case: Case, request) -> None:
    if reason := _skip_reason(case):
        pytest.skip(reason)
    ws, run, before, record = request.getfixturevalue("cli_slow" if case.slow else "cli_fast")[case.name]
    if case.works:
        assert record["code"] == 0, record["stderr"][-3000:]
        assert "Traceback" not in record["stderr"]
        assert not case.warns or re.search("warning: " + case.warns, record["stderr"]), record["stderr"][-3000:]
        _check_edit(ws, run, before, run.out, case)
        return
    _check_cli_failure(record, case)
    _check_untouched(ws, before, case)


def _cmet(argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "cmet", *argv], cwd=REPO, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )  # fmt: skip


@pytest.mark.slow
def test_cli_real_process_matches_driver(cli_fast, base: Base, tmp_path: Path) -> None:
    """A real ``python -m cmet`` prints the same error line and exit code as the driver recorded."""
    case = BY_NAME["video_truncated_download"]
    ws, run = case.prepare(tmp_path, base)
    before = ws.snapshot()
    proc = _cmet(run.cli_args(), run.env)
    stdout, stderr = proc.communicate(timeout=300)
    record = {"code": proc.returncode, "stdout": stdout, "stderr": stderr}
    _check_cli_failure(record, case)
    _check_untouched(ws, before)
    line = [entry for entry in stderr.splitlines() if entry.startswith("error:")][0]
    driver = [entry for entry in cli_fast[case.name][3]["stderr"].splitlines() if entry.startswith("error:")][0]
    assert line.replace(str(ws.root), "<ws>") == driver.replace(str(cli_fast[case.name][0].root), "<ws>")


@pytest.mark.slow
def test_cli_sigint_mid_render(base: Base, tmp_path: Path) -> None:
    """Ctrl-C while frames are being written: non-zero exit, one sentence, no temp files, the old output kept."""
    example = REPO / "assets" / "examples" / "astronaut_talking.mp4"
    ws, run = Case("sigint", lambda w: Run(w.copy(example, "talk.mp4"))).prepare(tmp_path, base)
    ws.out.write_bytes(b"yesterday's result")  # must survive untouched
    before = ws.snapshot()
    proc = _cmet([*run.cli_args(), "--batch-size", "1"], run.env, start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(ws.out.parent.glob(".out.*")):
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the render never started"
        time.sleep(0.05)
    time.sleep(0.1)
    assert proc.poll() is None, "finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # the whole process group, as a terminal's Ctrl-C does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None), stderr[-2000:]
    assert "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
        "error: interrupted; no output was written."
    ]
    _check_untouched(ws, before)


@pytest.mark.slow
def test_cli_prints_only_its_own_lines(base: Base, tmp_path: Path) -> None:
    """A plain run prints cmet's lines only (no MediaPipe/absl/TFLite log lines); ``--verbose`` lets them through."""
    from cmet.quiet import NOISE

    ws, run = Case("quiet", lambda w: Run(w.face())).prepare(tmp_path, base)
    own = re.compile(r"^(engine: |warning: |wrote |timings: |\s*\d+%\|)")
    for verbose in (False, True):
        run.out.unlink(missing_ok=True)
        shutil.rmtree(ws.cache, ignore_errors=True)  # tracking again: MediaPipe logs when its graphs start
        proc = _cmet([*run.cli_args(), *(["--verbose"] if verbose else [])], run.env)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        lines = [line for line in (stdout + stderr).replace("\r", "\n").splitlines() if line.strip()]
        noise = [line for line in lines if NOISE.match(line.encode())]
        if verbose:
            assert noise, "--verbose hid MediaPipe's log lines"
        else:
            assert not noise and all(own.match(line) for line in lines), lines
