"""The Edit tab in a real browser: upload, instant preview that follows the strength slider, Render, warnings.

Chromium (Debian's, never downloaded) through Playwright's sync API against a real ``python app.py``; skips
cleanly when /usr/bin/chromium is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cmet import media
from tests.app_server import AppInputs, AppServer, example_inputs, launch_app

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
WAIT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> AppInputs:
    return example_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def server(inputs, tmp_path_factory) -> AppServer:
    running = launch_app(tmp_path_factory.mktemp("app"), "--engine", "lite", "--device", "cpu")
    yield running
    assert running.stop() == 0, running.log_text()


@pytest.fixture(scope="module")
def browser(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url)
    yield page
    page.close()


def preview_src(page) -> str:
    return page.locator("#preview img").get_attribute("src")


def shown_video(page, selector: str, folder: Path) -> media.VideoInfo:
    """The video the page shows under ``selector``, fetched through its ``src`` as the browser would."""
    src = page.locator(f"{selector} video").get_attribute("src")
    path = folder / "shown.mp4"
    path.write_bytes(page.request.get(src).body())
    return media.probe(path)


def test_edit_tab_preview_follows_strength_and_render_makes_a_video(page, inputs, tmp_path):
    assert "engine: lite" in page.locator("#engine-line").inner_text().replace("**", "")
    page.locator("#video input[type=file]").set_input_files(str(inputs.video))
    page.locator("#reference input[type=file]").set_input_files([str(p) for p in inputs.reference])
    page.locator("#target-one input[type=file]").set_input_files(str(inputs.target[0]))
    page.get_by_text(inputs.target[0].name.rsplit(".", 1)[0]).first.wait_for()
    page.locator("#target-one input[type=file]").set_input_files(str(inputs.target[1]))
    page.wait_for_function("() => document.querySelectorAll('#target tbody tr').length === 2")

    page.locator("#preview img").wait_for()
    # target speech without emotion2vec+ weights: the lite engine's CmetWarning arrives as a toast
    page.locator(".toast-body", has_text="approximate").first.wait_for()
    before = preview_src(page)
    number = page.locator("#strength input[type=number]")
    number.fill("2.5")
    number.press("Enter")
    page.wait_for_function(
        "old => { const i = document.querySelector('#preview img'); return i && i.src !== old; }", arg=before
    )
    after = preview_src(page)
    assert after != before
    old_bytes, new_bytes = page.request.get(before).body(), page.request.get(after).body()
    assert old_bytes != new_bytes

    page.get_by_role("button", name="Render", exact=True).click()
    page.locator("#result video").wait_for()
    shown, source = shown_video(page, "#result", tmp_path), media.probe(inputs.video)
    assert (shown.frames, shown.width, shown.height) == (source.frames, source.width, source.height)


def test_compare_tab_builds_emotions_json_and_renders_a_grid(page, inputs, tmp_path):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#cmp-video input[type=file]").set_input_files(str(inputs.video))
    page.locator("#cmp-reference input[type=file]").set_input_files([str(p) for p in inputs.reference])
    page.get_by_label("happy", exact=True).check()
    page.locator("#row0-name input, #row0-name textarea").fill("excited")
    page.locator("#row0-clips input[type=file]").set_input_files([str(p) for p in inputs.target])
    page.locator("#row0-strength input, #row0-strength textarea").fill("2")
    page.wait_for_function("() => document.querySelectorAll('#row0-clips tbody tr').length === 3")

    page.get_by_role("button", name="Render comparison", exact=True).click()
    page.locator("#grid video").wait_for()
    page.get_by_text("As an API call (emotions_json)").click()
    json_text = page.locator("#emotions-json").inner_text()
    assert "happy" in json_text and "excited" in json_text
    shown, source = shown_video(page, "#grid", tmp_path), media.probe(inputs.video)
    assert shown.frames == source.frames and shown.width >= 2 * source.width  # original, happy, excited


def test_a_bad_row_is_explained_in_the_page(page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#row1-name input, #row1-name textarea").fill("wistful")
    page.get_by_role("button", name="Render comparison", exact=True).click()
    page.locator(".toast-body", has_text='Add speech clips for "wistful"').first.wait_for()
    assert "Traceback" not in page.content()
