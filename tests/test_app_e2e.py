"""End to end: the Gradio app served on a free port, driven over HTTP with gradio_client (real offline weights)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from crossmodal_demo.app.service import AppService
from crossmodal_demo.config import load_config
from crossmodal_demo.retrieval.library import open_library

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
ENDPOINTS = {"/search", "/index_uploads", "/list_items", "/delete", "/create_collection", "/switch_collection", "/status", "/lab", "/evaluate"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float) -> float:
    """Seconds until ``url`` answers 200 (fails after ``seconds``)."""
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Iterator[tuple[Client, AppService, str]]:
    """The app (collection 'e2e', pre-created so no demo build) on a free port, and a client for it."""
    from crossmodal_demo.app.ui import main as ui

    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("e2e-indexes"))
    open_library(cfg, "e2e", preset="offline", create=True).collection.close()
    service = AppService(cfg, preset="offline", collection="e2e")
    service.start()
    demo = ui.build_demo(service)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **ui.launch_options(service))
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False, analytics_enabled=False)
    yield client, service, url
    client.close() if hasattr(client, "close") else None
    demo.close()
    service.close()


def predict(client: Client, api_name: str, **kwargs: object) -> dict | list:
    """Call an endpoint; every endpoint returns one JSON document as text."""
    return json.loads(client.predict(**kwargs, api_name=api_name))


def test_every_action_has_a_named_endpoint(app: tuple[Client, AppService, str]) -> None:
    client, _, _ = app
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == ENDPOINTS  # private display steps are not exposed; /index_folder needs the flag


def test_upload_then_text_search_returns_the_uploaded_image(app: tuple[Client, AppService, str]) -> None:
    client, service, _ = app
    files = [DATA / "images" / n for n in ("cat.jpg", "coffee.jpg", "rocket.jpg")] + [
        DATA / "speech" / "weather.wav", DATA / "texts" / "forecast_note.txt", DATA / "texts" / "commute_note.txt",
    ]
    rep = predict(client, "/index_uploads", files=[handle_file(str(p)) for p in files])
    assert rep["added"] == 6 and rep["errors"] == [] and rep["counts"]["total"] == 6
    res = predict(client, "/search", text="a cat", image=None, audio=None, target="image", k=5)
    top = res["hits"][0]
    assert Path(top["path"]).name == "cat.jpg" and set(top) >= {"id", "score", "space", "channel", "caption", "rank"}
    assert Path(top["path"]).is_relative_to((Path(service.config.indexes_dir) / "e2e" / "media").resolve())
    assert [h["rank"] for h in res["hits"]] == [1, 2, 3] and all(h["modality"] == "image" for h in res["hits"])


def test_lab_and_evaluate_over_http(app: tuple[Client, AppService, str], tmp_path: Path) -> None:
    client, _, _ = app
    lab = predict(client, "/lab", text="a cat", image=None, audio=None, target="image", sources=["text/content"], methods=["rrf"],
                  k=3, weights="", extra_text="", extra_weight=0.5)
    assert [c["name"] for c in lab["columns"]] == ["text/content", "rrf"] and lab["columns"][1]["hits"][0]["name"] == "cat.jpg"
    qrels = tmp_path / "q.jsonl"
    qrels.write_text('{"id": "cat", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}\n{oops\n')
    doc = predict(client, "/evaluate", qrels=handle_file(str(qrels)), methods=["rrf"])
    assert doc["queries"] == 1 and [r["name"] for r in doc["results"]] == ["text/content", "rrf"] and doc["problems"][0]["line"] == 2
    with pytest.raises(Exception, match="The demo benchmark labels items of the 'demo' collection"):
        client.predict(qrels=None, methods=["rrf"], api_name="/evaluate")


def test_audio_query_returns_the_matching_text(app: tuple[Client, AppService, str]) -> None:
    client, _, _ = app
    res = predict(client, "/search", text="", image=None, audio=handle_file(str(DATA / "speech" / "weather.wav")), target="text", k=2)
    assert Path(res["hits"][0]["path"]).name == "forecast_note.txt"
    assert "rain" in res["query"]["transcript"].lower()


def test_image_query_over_http(app: tuple[Client, AppService, str]) -> None:
    client, _, _ = app
    res = predict(client, "/search", text="", image=handle_file(str(DATA / "images" / "rocket.jpg")), audio=None, target="image", k=1)
    assert Path(res["hits"][0]["path"]).name == "rocket.jpg" and res["hits"][0]["score"] > 0.99


def test_user_mistake_comes_back_as_its_message(app: tuple[Client, AppService, str]) -> None:
    client, _, _ = app
    with pytest.raises(Exception, match="Nothing to search for: type some text"):
        client.predict(text="", image=None, audio=None, target="image", k=5, api_name="/search")
    with pytest.raises(Exception, match="Unknown collection 'nope'"):
        client.predict(name="nope", api_name="/switch_collection")


def test_media_is_served_but_the_database_is_not(app: tuple[Client, AppService, str]) -> None:
    client, service, url = app
    items = predict(client, "/list_items", modality="image")
    assert {Path(i["path"]).name for i in items} >= {"cat.jpg"}
    thumb = items[0]["thumbnail"]
    with urllib.request.urlopen(f"{url}gradio_api/file={thumb}") as r:
        assert r.status == 200 and r.read(8).startswith(b"\x89PNG")
    db = (Path(service.config.indexes_dir) / "e2e" / "items.sqlite").resolve()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}gradio_api/file={db}")
    assert err.value.code in (403, 404)


def test_delete_and_status_over_http(app: tuple[Client, AppService, str]) -> None:
    client, _, _ = app
    coffee = next(i for i in predict(client, "/list_items", modality="image") if i["name"] == "coffee.jpg")
    out = predict(client, "/delete", ids=str(coffee["id"]))
    assert out["removed"] == [coffee["id"]]
    st = predict(client, "/status")
    assert st["collection"] == "e2e" and st["counts"]["image"] == 2 and st["preset"] == "offline" and st["device"] in ("cpu", "cuda")


def test_app_py_serves_before_any_model_loads(tmp_path: Path, shared_cache: Path) -> None:
    """`python app.py` answers HTTP with every model still unloaded (the collection exists: no demo build)."""
    cfg = load_config(indexes_dir=tmp_path / "ix")
    open_library(cfg, "ready", preset="offline", create=True).collection.close()
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--indexes-dir", str(cfg.indexes_dir), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", 90)
        st = json.loads(Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False).predict(api_name="/status"))
        assert st["collection"] == "ready" and not any(e["loaded"] for e in st["encoders"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_app_py_rejects_an_unknown_preset_without_a_traceback() -> None:
    out = subprocess.run([sys.executable, "app.py", "--preset", "clp"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "error: Unknown preset 'clp'. Available: " in out.stderr and "Traceback" not in out.stderr
