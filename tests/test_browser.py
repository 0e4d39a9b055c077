"""A real browser (Debian's Chromium through Playwright) on the app with the fake encoders.

Local mode: type a query, click Search, see the results gallery. Public mode (issue 9): upload a picture to
the private workspace in the Library tab, index it, search "my uploads" and see it, then close the page and
see the workspace folder deleted. Needs ``pip install playwright`` and ``apt-get install chromium`` (never
``playwright install``: no browser download); skips with the reason when either is missing. Screenshots
(1280×900) are kept in ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CROSSMODAL_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 900}
UI_WAIT_MS = 60_000  # bound for the page to react (not a timing assertion)

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio import utils as gradio_utils  # noqa: E402

from tests.test_app_attack import png_with_text  # noqa: E402
from tests.test_app_http import App, eventually, serve, workspace_dirs  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def local_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = serve(tmp_path_factory, "browser-local")
    yield app
    app.close()


@pytest.fixture
def public_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = serve(tmp_path_factory, "browser-public", public=True)
    yield app
    app.close()


def shot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))  # the viewport: 1280×900
    return path


def test_local_typed_query_shows_results_in_the_gallery(browser: object, local_app: App) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(local_app.url)
        page.locator("#query-text textarea").fill("")
        page.click("#search-button")  # no query: a specific message, not a traceback
        sync_api.expect(page.get_by_text("Nothing to search for: type some text").first).to_be_visible(timeout=UI_WAIT_MS)
        page.locator(".toast-close").first.click()

        page.locator("#query-text textarea").fill("red")
        page.click("#search-button")
        gallery = page.locator("#results-gallery")
        sync_api.expect(gallery.locator("img").first).to_be_visible(timeout=UI_WAIT_MS)
        sync_api.expect(page.locator("#results-summary")).to_contain_text("for “red” → image in demo")
        sync_api.expect(gallery.get_by_text("#1 ·").first).to_contain_text("text/content")
        shot(page, "browser-local-search.png")
    finally:
        page.close()


def test_public_walk_upload_search_and_leave(browser: object, public_app: App, tmp_path: Path) -> None:
    token = "visitor-" + secrets.token_hex(8)
    picture = tmp_path / "my-red-kite.png"
    png_with_text(picture, token)  # red for the fakes, and a token any copy of it carries
    page = browser.new_page(viewport=VIEWPORT)
    closed = False
    try:
        page.goto(public_app.url)
        sync_api.expect(page.locator("#banner")).to_contain_text("Public demo", timeout=UI_WAIT_MS)
        page.get_by_role("tab", name="Library").click()
        sync_api.expect(page.locator("#privacy-note")).to_contain_text("Your uploads are private")
        page.locator("#upload-files input[type=file]").set_input_files(str(picture))
        sync_api.expect(page.get_by_text("my-red-kite.png").first).to_be_visible(timeout=UI_WAIT_MS)
        page.click("#index-button")
        sync_api.expect(page.locator("#index-summary")).to_contain_text("Added 1 item(s) to my uploads", timeout=UI_WAIT_MS)
        (ws,) = workspace_dirs(public_app.indexes)
        assert any((ws / "media").rglob("my-red-kite.png"))
        sync_api.expect(page.locator("#items-gallery img").first).to_be_visible(timeout=UI_WAIT_MS)
        shot(page, "browser-public-library.png")

        page.get_by_role("tab", name="Search").click()
        page.locator("#search-scope").get_by_text("my uploads", exact=True).click()
        page.locator("#query-text textarea").fill("red")
        page.click("#search-button")
        gallery = page.locator("#results-gallery")
        sync_api.expect(gallery.locator("img").first).to_be_visible(timeout=UI_WAIT_MS)
        sync_api.expect(page.locator("#results-summary")).to_contain_text("in my uploads")
        sync_api.expect(gallery.get_by_text("#1 ·").first).to_contain_text("my-red-kite.png")
        shot(page, "browser-public-search.png")

        page.close(run_before_unload=True)  # the visitor leaves
        closed = True
        assert eventually(lambda: not ws.exists()), f"{ws} still exists after its visitor left"
        assert public_app.service.workspaces.live() == 0
    finally:
        if not closed:
            page.close()
