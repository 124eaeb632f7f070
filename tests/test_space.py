"""The app as a Hugging Face Space: at start-up it fetches the official weights from a local stand-in for the hub
(serving the released files' layout with the fixtures' deterministic weights) into the Space's persistent storage,
serves with the lite engine meanwhile and says so, then switches to the official engine; a restart finds the files.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
import torch

from cmet import hub
from tests.app_server import AppServer, launch_app
from tests.fake_hub import serve
from tests.official_weights import fixture_path, write_release_files

CHROMIUM = Path("/usr/bin/chromium")
SWITCHED = "engine: official on cpu, now serving"


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory) -> dict[tuple[str, str], bytes]:
    """What the stand-in hub serves: the three C-MET release files and a token emotion2vec+ folder."""
    fixture_path("edtalk_manifest.json")
    root = tmp_path_factory.mktemp("release")
    write_release_files(root)
    files = {}
    for name in hub.OFFICIAL_FILES:
        local = root / name if (root / name).is_file() else root / Path(name).name
        files[(hub.HUB_REPO, name)] = local.read_bytes()
    files[("emotion2vec/emotion2vec_plus_large", "model.pt")] = _saved({"model": {}})
    files[("emotion2vec/emotion2vec_plus_large", "config.yaml")] = b"model: Emotion2vec\n"
    return files


def _space_env(tmp: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CMET_", "MODELSCOPE_"))}
    (tmp / "data").mkdir(exist_ok=True)
    env.update(SPACE_ID="someone/cmet", CMET_SPACE_STORAGE=str(tmp / "data"), HF_ENDPOINT=endpoint)
    env.update(HF_HOME=str(tmp / "hf"), CMET_CACHE=str(tmp / "cache"), MODELSCOPE_CACHE=str(tmp / "ms"))
    return env


def _wait_for(server: AppServer, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in server.log_text():
        assert server.process.poll() is None and time.monotonic() < deadline, server.log_text()
        time.sleep(0.5)


def _header(server: AppServer, expect: str) -> str | None:
    """The page's engine line once it shows ``expect`` (None without Chromium and Playwright)."""
    if not CHROMIUM.exists():
        return None
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url)
        line = page.locator("#engine-line")
        line.get_by_text(expect).wait_for(timeout=60_000)
        text = line.inner_text().replace("**", "")
        browser.close()
    return text


@pytest.mark.slow  # two app start-ups and a fixture-sized EDTalk (the released layout) loaded on CPU
def test_space_fetches_the_official_weights_and_switches(hub_files, tmp_path):
    (tmp_path / "first").mkdir()
    with serve(hub_files) as endpoint:
        server = launch_app(tmp_path / "first", "--device", "cpu", env=_space_env(tmp_path, endpoint))
        try:
            before = _header(server, "downloading")
            _wait_for(server, SWITCHED, 300)
            after = _header(server, "engine: official")
        finally:
            assert server.stop() == 0, server.log_text()
    log = server.log_text()
    assert "engine: lite on cpu (the official engine's weights are downloading)" in log
    assert "weights 1/4: _epoch_2105_checkpoint_step000200000.pth …" in log and "weights 2/4: EDTalk.pt ready" in log
    stored = tmp_path / "data" / "cmet" / "checkpoints"
    for name in (hub.CMET_CHECKPOINT, hub.EDTALK, hub.AUDIO2LIP):
        assert (stored / name).read_bytes() == hub_files[(hub.HUB_REPO, name)]
    if before is not None:
        assert "engine: lite" in before and "downloading" in before
        assert after is not None and "engine: official" in after and "downloading" not in after

    # a restart (the hub gone) finds the files in persistent storage and starts with the official engine
    (tmp_path / "second").mkdir()
    again = launch_app(tmp_path / "second", "--device", "cpu", env=_space_env(tmp_path, endpoint))
    try:
        assert "cmet app: engine: official on cpu" in again.log_text()
        assert "weights 1/4" not in again.log_text()
    finally:
        assert again.stop() == 0, again.log_text()


class _Editor:
    """Stands in for a loaded editor: only what the fetch reads."""

    engine_name, device, engine_reason = "official", "cpu", "requested"


def _fetch_without_network(monkeypatch, load):
    from cmet import download
    from cmet.space import OfficialFetch

    monkeypatch.setattr(download, "fetch_official", lambda into, log: [])
    lines: list[str] = []
    return OfficialFetch(load, into_checkpoints=False, log=lines.append), lines


def test_fetch_hands_over_the_official_editor_and_clears_its_note(monkeypatch):
    fetch, lines = _fetch_without_network(monkeypatch, _Editor)
    handed: list = []
    fetch.start(handed.append).join(10)
    assert fetch.done.is_set() and len(handed) == 1 and fetch.note == ""
    assert lines[-1] == "engine: official on cpu, now serving"


def test_a_failed_fetch_says_why_in_the_header_and_hands_nothing_over(monkeypatch, tmp_path):
    from cmet.errors import MissingWeightsError

    def load():
        raise MissingWeightsError("EDTalk.pt", tmp_path)

    fetch, lines = _fetch_without_network(monkeypatch, load)
    handed: list = []
    thread = fetch.start(handed.append)
    thread.join(10)
    assert fetch.done.is_set() and not handed
    assert "could not be set up" in fetch.note and "EDTalk.pt" in fetch.note and "lite engine serves" in fetch.note
    assert lines[-1].startswith("error: Missing weights: EDTalk.pt")


def test_persistent_storage_only_on_a_space_with_storage(monkeypatch, tmp_path):
    from cmet.space import persistent_checkpoints, use_persistent_storage

    monkeypatch.setenv("CMET_CHECKPOINTS", "")  # recorded, so the value the test leaves is undone
    monkeypatch.delenv("CMET_CHECKPOINTS")
    monkeypatch.setenv("CMET_SPACE_STORAGE", str(tmp_path))
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert persistent_checkpoints() is None and not use_persistent_storage()
    monkeypatch.setenv("SPACE_ID", "someone/cmet")
    assert use_persistent_storage() and os.environ["CMET_CHECKPOINTS"] == str(tmp_path / "cmet" / "checkpoints")
    monkeypatch.setenv("CMET_SPACE_STORAGE", str(tmp_path / "absent"))
    assert persistent_checkpoints() is None
