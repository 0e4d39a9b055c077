"""A real browser (Debian's Chromium through Playwright) types a query, clicks Search and sees the photo.

Needs ``pip install playwright`` and ``apt-get install chromium`` (never ``playwright install``: no
browser download). Skips with the reason when either is missing. The screenshot is kept in
``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path(os.environ.get("CROSSMODAL_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Iterator[str]:
    """The app on a free port over a small collection (three photos, one note)."""
    from crossmodal_demo.app.ui import main as ui
    from crossmodal_demo.app.service import AppService
    from crossmodal_demo.config import load_config
    from crossmodal_demo.index.pipeline import index_paths
    from crossmodal_demo.retrieval.library import open_library

    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("browser-indexes"))
    lib = open_library(cfg, "browser", preset="offline", create=True)
    media = lib.collection.root / "media"
    media.mkdir(parents=True)
    for name in ("cat.jpg", "coffee.jpg", "rocket.jpg"):
        (media / name).write_bytes((DATA / "images" / name).read_bytes())
    (media / "pet_note.txt").write_bytes((DATA / "texts" / "pet_note.txt").read_bytes())
    assert len(index_paths(lib.collection, lib.encoders, [media], cfg).added) == 4
    lib.collection.close()
    service = AppService(cfg, preset="offline", collection="browser")
    service.start()
    demo = ui.build_demo(service)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **ui.launch_options(service))
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    service.close()


def test_typed_query_shows_the_cat_first_in_the_gallery(app_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(app_url)
            page.locator("#query-text textarea").fill("")
            page.click("#search-button")  # no query: a specific message, not a traceback
            sync_api.expect(page.get_by_text("Nothing to search for: type some text").first).to_be_visible(timeout=30_000)
            page.locator(".toast-close").first.click()  # dismiss it so the screenshot shows the page

            page.locator("#query-text textarea").fill("a cat")
            page.click("#search-button")
            gallery = page.locator("#results-gallery")
            sync_api.expect(gallery.locator("img").first).to_be_visible(timeout=60_000)
            sync_api.expect(page.locator("#results-summary")).to_contain_text("for “a cat” → image")
            first = gallery.get_by_text("#1 ·").first
            sync_api.expect(first).to_contain_text("cat.jpg")
            assert "text/content" in first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "browser-search.png"), full_page=True)

            page.get_by_role("radio", name="text").check()
            page.click("#search-button")  # text target: a ranked list of text cards with scores
            sync_api.expect(page.get_by_text("pet_note.txt").first).to_be_visible(timeout=30_000)
            sync_api.expect(page.locator(".result-card").first).to_contain_text("score")
            page.screenshot(path=str(ARTIFACTS / "browser-text-results.png"), full_page=True)
        finally:
            browser.close()


def test_fusion_lab_shows_sources_and_fusions_side_by_side(app_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(app_url)
            page.get_by_role("tab", name="Fusion lab").click()
            sync_api.expect(page.locator("#lab-sources")).to_contain_text("text/content")
            page.locator("#lab-text textarea").fill("a cat")
            page.click("#lab-button")
            table = page.locator("#lab-table")
            sync_api.expect(table).to_contain_text("rrf (fused)", timeout=60_000)
            sync_api.expect(table).to_contain_text("text/content ★ baseline")
            sync_api.expect(table).to_contain_text("cat.jpg")
            sync_api.expect(page.locator("#lab-summary")).to_contain_text("baseline")
            sync_api.expect(page.locator("#lab-map img").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "browser-lab.png"), full_page=True)

            qrels = ARTIFACTS / "browser-qrels.jsonl"  # the Evaluate tab on an uploaded file with one bad line
            qrels.write_text('{"id": "cat", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}\n'
                             '{"id": "rocket", "text": "a rocket", "target": "image", "relevant": ["rocket.jpg"]}\n{oops\n')
            page.get_by_role("tab", name="Evaluate").click()
            page.locator("#qrels-file input[type=file]").set_input_files(str(qrels))
            page.click("#evaluate-button")
            sync_api.expect(page.locator("#eval-table")).to_contain_text("best single", timeout=60_000)
            sync_api.expect(page.locator("#eval-problems")).to_contain_text("not valid JSON")
            page.screenshot(path=str(ARTIFACTS / "browser-evaluate.png"), full_page=True)
        finally:
            browser.close()
