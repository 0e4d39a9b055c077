"""A real browser (Debian's Chromium through Playwright) on the app with the fake encoders (issues 9 and 13).

Desktop (1280×900, local mode): every example runs, "Find similar" on a picture and on a note, the Fusion lab,
and a delete with its confirmation. Phone (390×844): the query box and the Search button share the top row and
the image/audio inputs are folded. Warm start: the Search button says "Loading models…" while a slow fake model
loads, then "Search", with a toast. Public mode: upload to the private workspace, search "my uploads", leave, and
the workspace is gone. Needs ``pip install playwright`` and ``apt-get install chromium`` (never ``playwright
install``: no browser download); skips with the reason when either is missing. Screenshots go to
``test-artifacts/`` (git-ignored); a slow test takes the README's ``docs/screenshot-search.png`` with the real models.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CROSSMODAL_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
UI_WAIT_MS = 60_000  # bound for the page to react (not a timing assertion)

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.fakes import FakeText, TEXT_NAME, fake_overrides  # noqa: E402
from tests.test_app_attack import png_with_text  # noqa: E402
from tests.test_app_http import App, eventually, serve, workspace_dirs  # noqa: E402

expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def local_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = serve(tmp_path_factory, "browser-local")
    yield app
    app.close()


def shot(page: Any, name: str, full: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full)
    return path


def open_page(browser: Any, app: App, viewport: dict[str, int]) -> Any:
    page = browser.new_page(viewport=viewport)
    page.goto(app.url)
    expect(page.locator("#status-line")).to_contain_text("Ready", timeout=UI_WAIT_MS)
    return page


def run_example(page: Any, key: str, summary: str) -> None:
    page.click(f"#example-{key}")
    expect(page.locator("#results-summary")).to_contain_text(summary, timeout=UI_WAIT_MS)


def test_desktop_examples_find_similar_lab_and_delete(browser: Any, local_app: App) -> None:
    page = open_page(browser, local_app, DESKTOP)
    try:
        expect(page.locator("#banner")).to_contain_text("Offline mode — smaller models, no downloads. Why?")
        assert page.locator("#banner").bounding_box()["height"] < 60  # one line, details folded
        expect(page.locator("#demo-strip")).to_contain_text("11 photos · 8 voice messages · 5 sounds · 11 notes")
        page.click("#search-button")  # no query: a specific message, not a traceback
        expect(page.get_by_text("Nothing to search for: type some text").first).to_be_visible(timeout=UI_WAIT_MS)
        page.locator(".toast-close").first.click()

        run_example(page, "text", "for “a cat” → image in demo")
        expect(page.locator("#query-text textarea")).to_have_value("a cat")
        grid = page.locator("#result-grid")
        expect(grid.locator("img").first).to_be_visible(timeout=UI_WAIT_MS)
        expect(grid.locator(".hit-why").first).to_contain_text("matched")
        page.wait_for_function("() => [...document.querySelectorAll('#result-grid img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=UI_WAIT_MS)  # every thumbnail loaded through its signed link
        shot(page, "desktop-search-example.png")

        first = grid.locator(".hit-name").first.inner_text()
        grid.locator(".similar-button").first.click()
        expect(page.locator("#results-summary")).to_contain_text(f"items like {first}", timeout=UI_WAIT_MS)
        expect(grid.locator(".hit-name", has_text=first)).to_have_count(0, timeout=UI_WAIT_MS)  # the query item is left out

        run_example(page, "photo", "for the image → text")
        expect(page.locator("#media-inputs img").first).to_be_visible()  # the example photo fills the image input
        run_example(page, "speech", "for the audio clip → text")
        expect(page.locator("#results-summary")).to_contain_text("Heard in the clip")
        shot(page, "desktop-search-speech.png", full=True)
        note = page.locator("#result-cards .hit-name").first.inner_text()
        page.locator("#result-cards .similar-button").first.click()
        expect(page.locator("#results-summary")).to_contain_text(f"items like {note}", timeout=UI_WAIT_MS)
        run_example(page, "sound", "→ audio in demo")
        expect(page.locator("#result-cards audio").first).to_be_attached()
        shot(page, "desktop-search-sounds.png", full=True)

        page.get_by_role("tab", name="Fusion lab").click()
        expect(page.locator("#lab-table")).to_be_hidden()  # no placeholder table before the first run
        page.locator("#lab-text textarea").fill("a cat")
        page.click("#lab-button")
        expect(page.locator("#lab-summary")).to_contain_text("baseline", timeout=UI_WAIT_MS)
        expect(page.locator("#lab-table th").last).to_contain_text("(fused)", timeout=UI_WAIT_MS)
        page.wait_for_function("() => [...document.querySelectorAll('#lab-table img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=UI_WAIT_MS)
        expect(page.locator("#lab-map .js-plotly-plot")).to_be_visible(timeout=UI_WAIT_MS)  # the interactive map
        table_box = page.locator("#lab-table").bounding_box()
        assert table_box["x"] + table_box["width"] <= DESKTOP["width"]  # nothing cut off at 1280 px
        shot(page, "desktop-lab.png", full=True)
        page.locator("#lab-view").get_by_text("normalised scores").click()
        expect(page.locator("#lab-table .hit-bar").first).to_be_visible(timeout=UI_WAIT_MS)
        shot(page, "desktop-lab-scores.png", full=True)

        page.get_by_role("tab", name="Library").click()
        items = page.locator("#items-gallery img")
        expect(items.first).to_be_visible(timeout=UI_WAIT_MS)
        items.first.click()
        expect(page.locator("#delete-ids textarea, #delete-ids input").first).not_to_have_value("", timeout=UI_WAIT_MS)
        chosen = page.locator("#delete-ids textarea, #delete-ids input").first.input_value()
        page.click("#delete-button")
        expect(page.locator("#delete-confirm-text")).to_contain_text("This cannot be undone", timeout=UI_WAIT_MS)
        shot(page, "desktop-library-confirm.png")
        page.click("#delete-confirm")
        expect(page.locator("#delete-result")).to_contain_text("Deleted 1 item(s) from demo", timeout=UI_WAIT_MS)
        expect(page.locator("#delete-confirm")).to_be_hidden()
        expect(page.locator("#items-gallery")).not_to_contain_text(f"#{chosen} ", timeout=UI_WAIT_MS)  # the list is back without it
        shot(page, "desktop-library-deleted.png", full=True)
    finally:
        page.close()


def test_phone_query_and_button_share_the_top_row(browser: Any, local_app: App) -> None:
    page = open_page(browser, local_app, PHONE)
    try:
        box, btn = page.locator("#query-text").bounding_box(), page.locator("#search-button").bounding_box()
        assert btn["y"] < box["y"] + box["height"] and box["y"] < btn["y"] + btn["height"], (box, btn)  # side by side
        assert btn["y"] + btn["height"] < 300 and btn["x"] + btn["width"] <= PHONE["width"]  # at the top, on screen
        expect(page.locator("#media-inputs input[type=file]")).to_have_count(0)  # image/audio inputs folded
        shot(page, "phone-start.png")
        run_example(page, "text", "for “a cat” → image in demo")
        expect(page.locator("#result-grid img").first).to_be_visible(timeout=UI_WAIT_MS)
        shot(page, "phone-search.png", full=True)
    finally:
        page.close()


class SlowText(FakeText):
    """The fake text encoder, with a first encode (its "model load") that takes a while."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def encode(self, batch: Any) -> Any:
        if self.calls == 0:
            time.sleep(self.seconds)
        return super().encode(batch)


def test_search_button_shows_loading_models_until_they_are_ready(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    app = serve(tmp_path_factory, "browser-warm", overrides={**fake_overrides(), TEXT_NAME: SlowText(8.0)}, warm=True)
    page = browser.new_page(viewport=DESKTOP)
    try:
        page.goto(app.url)
        expect(page.locator("#search-button")).to_have_text("Loading models…", timeout=UI_WAIT_MS)
        expect(page.locator("#status-line")).to_contain_text("Loading models")
        assert app.service.models.state == "loading"
        shot(page, "desktop-loading-models.png")
        expect(page.locator("#search-button")).to_have_text("Search", timeout=UI_WAIT_MS)
        expect(page.get_by_text("Ready: 35 items in demo").first).to_be_visible(timeout=UI_WAIT_MS)  # the toast
        assert app.service.models.state == "ready"
    finally:
        page.close()
        app.close()


def test_public_walk_upload_search_and_leave(browser: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    app = serve(tmp_path_factory, "browser-public", public=True)
    token = "visitor-" + secrets.token_hex(8)
    picture = tmp_path / "my-red-kite.png"
    png_with_text(picture, token)  # red for the fakes, and a token any copy of it carries
    page = open_page(browser, app, DESKTOP)
    closed = False
    try:
        expect(page.locator("#banner")).to_contain_text("Public demo", timeout=UI_WAIT_MS)
        page.get_by_role("tab", name="Library").click()
        expect(page.locator("#privacy-note")).to_contain_text("Your uploads are private")
        page.locator("#upload-files input[type=file]").set_input_files(str(picture))
        # Gradio's file list may render the name as stem and extension apart ("my-red-kite .png")
        expect(page.locator("#upload-files")).to_contain_text(re.compile(r"my-red-kite\s*\.png"), timeout=UI_WAIT_MS)
        page.click("#index-button")
        expect(page.locator("#index-summary")).to_contain_text("Added 1 item(s) to my uploads", timeout=UI_WAIT_MS)
        (ws,) = workspace_dirs(app.indexes)
        assert any((ws / "media").rglob("my-red-kite.png"))
        expect(page.locator("#items-gallery img").first).to_be_visible(timeout=UI_WAIT_MS)
        shot(page, "public-library.png")

        page.get_by_role("tab", name="Search").click()
        page.locator("#search-scope").get_by_text("my uploads", exact=True).click()
        page.locator("#query-text textarea").fill("red")
        page.click("#search-button")
        expect(page.locator("#results-summary")).to_contain_text("in my uploads", timeout=UI_WAIT_MS)
        expect(page.locator("#result-grid .hit-name").first).to_have_text("my-red-kite.png", timeout=UI_WAIT_MS)
        page.wait_for_function("() => document.querySelector('#result-grid img').naturalWidth > 0", timeout=UI_WAIT_MS)
        shot(page, "public-search.png")

        page.close(run_before_unload=True)  # the visitor leaves
        closed = True
        assert eventually(lambda: not ws.exists()), f"{ws} still exists after its visitor left"
        assert app.service.workspaces.live() == 0
    finally:
        if not closed:
            page.close()
        app.close()


@pytest.mark.slow
def test_readme_screenshot_with_the_real_offline_models(browser: Any, tmp_path: Path) -> None:
    """The README's search-tab picture (docs/screenshot-search.png): the demo built with the real offline models, "a cat"."""
    from crossmodal_demo.app.service import AppService
    from crossmodal_demo.app.ui.build import build_ui, launch_options
    from crossmodal_demo.config import load_config
    from tests.test_app_http import free_port

    service = AppService(load_config(indexes_dir=tmp_path / "ix"))
    service.start(background=False, warm=True)
    assert service.build.state == "done" and service.models.state == "ready"
    demo = build_ui(service)
    demo.launch(prevent_thread_lock=True, quiet=True, **{**launch_options(service), "server_name": "127.0.0.1", "server_port": free_port()})
    page = browser.new_page(viewport=DESKTOP)
    try:
        page.goto(demo.local_url)
        expect(page.locator("#status-line")).to_contain_text("Ready", timeout=UI_WAIT_MS)
        run_example(page, "text", "for “a cat” → image in demo")
        expect(page.locator("#result-grid .hit-name").first).to_have_text("cat.jpg", timeout=UI_WAIT_MS)
        page.wait_for_function("() => [...document.querySelectorAll('#result-grid img')].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=UI_WAIT_MS)
        page.mouse.move(0, 0)
        shutil.copyfile(shot(page, "readme-search.png"), ROOT / "docs" / "screenshot-search.png")
        run_example(page, "speech", "for the audio clip → text")
        expect(page.locator("#result-cards .hit-name").first).to_have_text("appointments.md", timeout=UI_WAIT_MS)
        shot(page, "readme-speech.png", full=True)
    finally:
        page.close()
        demo.close()
        service.close()
