"""The app over HTTP (issue 9): two gradio_client sessions against one public-mode app, workspaces that go when
their visitor leaves or idles, the named endpoints, lab and evaluate, and ``python app.py`` itself.

Everything runs with the fake encoders (tests/fakes.py) except the ``app.py`` subprocess test, which loads
the real offline models once for one upload and one search. The service-level rules (quotas, recovery,
self-healing demo, per-visitor choices) are specified in tests/test_app_service.py; here we check that the
HTTP surface enforces them for real sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from crossmodal_demo.app.demo_collection import DEMO_NAME  # noqa: E402
from crossmodal_demo.app.service import AppService  # noqa: E402
from crossmodal_demo.app.ui.build import build_ui, launch_options  # noqa: E402
from crossmodal_demo.app.workspaces import WORKSPACES_DIR  # noqa: E402
from crossmodal_demo.config import load_config  # noqa: E402
from tests.fakes import colour_image, fake_overrides  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
PUBLIC_ENDPOINTS = {"/search", "/index_uploads", "/list_items", "/delete", "/status", "/lab", "/evaluate", "/set_scope"}
LOCAL_ENDPOINTS = {"/search", "/index_uploads", "/list_items", "/delete", "/status", "/lab", "/evaluate",
                   "/create_collection", "/switch_collection", "/index_folder"}
WAIT = 30.0  # generous bound for background clean-ups to happen (a bound, not a timing assertion)

_DEMO_TEMPLATE: dict[str, Path] = {}


# ------------------------------------------------------------------ helpers shared with test_app_attack / test_browser


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_template(factory: pytest.TempPathFactory) -> Path:
    """Indexes folder holding a complete demo collection built once per test session with the fakes."""
    if "ix" not in _DEMO_TEMPLATE:
        root = factory.mktemp("demo-template")
        svc = AppService(load_config(environ={}, indexes_dir=root / "ix", cache_dir_override=root / "cache"), encoder_overrides=fake_overrides())
        svc.start(background=False)
        assert svc.build.state == "done", svc.build
        svc.close()
        _DEMO_TEMPLATE["ix"] = root / "ix"
    return _DEMO_TEMPLATE["ix"]


@dataclass
class App:
    """A served app: its service, Blocks, URL and folders."""

    service: AppService
    demo: Any
    url: str
    indexes: Path

    def close(self) -> None:
        self.demo.close()
        self.service.close()


def serve(factory: pytest.TempPathFactory, name: str, overrides: dict[str, Any] | None = None, warm: bool = False, **settings: Any) -> App:
    """Start a fake-encoder app (demo copied from the template, so no build) on a free loopback port.
    ``overrides``: other encoders (default: fresh fakes); ``warm``: warm the models in the background after launch, as app.py does."""
    root = factory.mktemp(name)
    src, dst = demo_template(factory) / DEMO_NAME, root / "ix" / DEMO_NAME
    shutil.copytree(src, dst)
    with sqlite3.connect(dst / "items.sqlite") as db:  # the copy's items are its own media files, as in a real demo
        db.execute("UPDATE items SET path = replace(path, ?, ?)", (os.path.realpath(src), os.path.realpath(dst)))
    db.close()
    cfg = load_config(environ={}, indexes_dir=root / "ix", cache_dir_override=root / "cache", **settings)
    service = AppService(cfg, encoder_overrides=overrides or fake_overrides())
    service.start(background=warm, warm=warm, defer=warm)
    assert service.build.state == "idle"  # the copied demo is whole: nothing rebuilt
    demo = build_ui(service)
    opts = {**launch_options(service), "server_name": "127.0.0.1", "server_port": free_port()}
    demo.launch(prevent_thread_lock=True, quiet=True, **opts)
    service.run_deferred()
    return App(service, demo, demo.local_url, root / "ix")


def picture(folder: Path, name: str, colour: str) -> Path:
    """A small PNG the fakes index as the word ``colour``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    colour_image(colour).save(path)
    return path


def predict(client: Client, api_name: str, **kwargs: Any) -> Any:
    """Call an endpoint; every endpoint returns one JSON document as text."""
    out = client.predict(**kwargs, api_name=api_name)
    assert isinstance(out, str), out
    return json.loads(out)


def refused(client: Client, api_name: str, match: str, **kwargs: Any) -> str:
    """Call an endpoint that must refuse with a message matching ``match`` (no traceback); returns the message."""
    with pytest.raises(Exception, match=match) as err:
        client.predict(**kwargs, api_name=api_name)
    assert "Traceback" not in str(err.value)
    return str(err.value)


def search(client: Client, text: str, k: int = 8, target: str = "image") -> dict[str, Any]:
    return predict(client, "/search", text=text, image=None, audio=None, target=target, k=k)


def workspace_dirs(indexes: Path) -> list[Path]:
    root = indexes / WORKSPACES_DIR
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def eventually(check: Callable[[], bool], seconds: float = WAIT) -> bool:
    """True as soon as ``check()`` holds, False if it still does not after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return check()


def client_for(app: App) -> Client:
    return Client(app.url, verbose=False, analytics_enabled=False)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def public_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = serve(tmp_path_factory, "http-public", public=True)
    yield app
    app.close()


# ------------------------------------------------------------------ tests


def test_named_endpoints_per_mode(public_app: App, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Public mode exposes /set_scope and no collection control; local mode with a folder root adds them."""
    named = set(client_for(public_app).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == PUBLIC_ENDPOINTS  # private display steps are not listed
    roots = tmp_path_factory.mktemp("roots")
    local = serve(tmp_path_factory, "http-local", folder_roots=(roots,))
    try:
        client = client_for(local)
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == LOCAL_ENDPOINTS
        st = predict(client, "/status")
        assert st["mode"] == "local" and st["folder_indexing"] is True and st["collection"] == DEMO_NAME
        refused(client, "/switch_collection", r"Unknown collection 'nope'|nope is not in the list of choices", name="nope")
        refused(client, "/index_folder", "Only folders under", path=str(ROOT))
        # a collection one session creates can be switched to by another (each keeps its own choice)
        assert predict(client, "/create_collection", name="shared-later")["collection"] == "shared-later"
        other = client_for(local)
        assert predict(other, "/switch_collection", name="shared-later")["collection"] == "shared-later"
        assert predict(client_for(local), "/status")["collection"] == DEMO_NAME
    finally:
        local.close()


def test_two_public_sessions_never_see_each_others_uploads(public_app: App, tmp_path: Path) -> None:
    a, b = client_for(public_app), client_for(public_app)
    assert a.session_hash != b.session_hash
    demo_before = predict(b, "/status")["counts"]["total"]
    assert demo_before > 0

    rep = predict(a, "/index_uploads", files=[handle_file(str(picture(tmp_path, "alice-secret-red.png", "red")))])
    assert rep["added"] == 1 and rep["collection"] == "my uploads" and rep["errors"] == []
    assert str(public_app.indexes) not in json.dumps(rep)  # no server layout in public answers
    predict(a, "/set_scope", scope="mine")
    hits = search(a, "red")["hits"]
    assert hits[0]["collection"] == "my uploads" and hits[0]["path"].endswith("alice-secret-red.png")
    assert predict(a, "/set_scope", scope="both") == {"scope": "both"}
    assert any(h["path"].endswith("alice-secret-red.png") for h in search(a, "red", k=50)["hits"])
    a_items = predict(a, "/list_items", modality="all")
    assert a_items["collection"] == "my uploads" and [i["name"] for i in a_items["items"]] == ["alice-secret-red.png"]

    # B: the same queries never reach A's workspace
    everything = search(b, "red", k=50)
    assert all(h["collection"] == DEMO_NAME for h in everything["hits"])
    assert "alice-secret" not in json.dumps(everything)
    b_items = predict(b, "/list_items", modality="all")
    assert b_items["collection"] == DEMO_NAME and b_items["writable"] is False and "alice-secret" not in json.dumps(b_items)
    predict(b, "/set_scope", scope="mine")
    refused(b, "/search", "You have not uploaded anything yet", text="red", image=None, audio=None, target="image", k=8)
    predict(b, "/set_scope", scope="both")
    assert predict(b, "/status")["workspace"]["exists"] is False

    # B's deletes: A's ids and demo ids are refused with a clear message; nothing changes
    a_ids = ", ".join(str(i["id"]) for i in a_items["items"])
    demo_ids = ", ".join(str(i["id"]) for i in b_items["items"][:5])
    for ids in (a_ids, demo_ids, "1-5000", " ".join(map(str, range(1, 200)))):
        msg = refused(b, "/delete", r"read-only|no uploads|Item ids are whole numbers", ids=ids)
        assert "Nothing deleted" not in msg or "demo" not in msg
    assert predict(b, "/status")["counts"]["total"] == demo_before
    # A's delete only ever touches A's workspace: ids beyond it are unknown there, the demo stays whole
    big = max(i["id"] for i in b_items["items"])
    refused(a, "/delete", "Nothing deleted: no item with id", ids=str(big + 1000))
    assert predict(b, "/status")["counts"]["total"] == demo_before
    assert [i["name"] for i in predict(a, "/list_items", modality="all")["items"]] == ["alice-secret-red.png"]


def test_workspace_goes_when_its_visitor_leaves(public_app: App, tmp_path: Path) -> None:
    """Closing the page (Gradio's heartbeat stream ends → demo.unload) deletes that visitor's workspace only."""
    import httpx

    stay, leave = client_for(public_app), client_for(public_app)
    before = set(workspace_dirs(public_app.indexes))
    predict(stay, "/index_uploads", files=[handle_file(str(picture(tmp_path, "stay.png", "blue")))])
    after_stay = set(workspace_dirs(public_app.indexes)) - before
    predict(leave, "/index_uploads", files=[handle_file(str(picture(tmp_path, "leave.png", "green")))])
    (mine,) = set(workspace_dirs(public_app.indexes)) - before - after_stay
    (kept,) = after_stay
    with httpx.stream("GET", f"{public_app.url}gradio_api/heartbeat/{leave.session_hash}", timeout=10) as beat:
        next(beat.iter_lines())  # the page is open …
    # … and now closed
    assert eventually(lambda: not mine.exists()), f"{mine} still exists after its visitor left"
    assert kept.is_dir() and predict(stay, "/list_items", modality="all")["items"][0]["name"] == "stay.png"


def test_idle_workspace_is_deleted_after_the_ttl(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    app = serve(tmp_path_factory, "http-ttl", public=True, workspace_ttl=2.0)
    try:
        a = client_for(app)
        rep = predict(a, "/index_uploads", files=[handle_file(str(picture(tmp_path, "brief.png", "yellow")))])
        assert rep["added"] == 1
        (ws,) = workspace_dirs(app.indexes)
        assert any((ws / "media").rglob("brief.png"))
        assert eventually(lambda: not ws.exists()), f"{ws} outlived its TTL"
        predict(a, "/set_scope", scope="mine")
        refused(a, "/search", "You have not uploaded anything yet", text="yellow", image=None, audio=None, target="image", k=3)
        assert predict(a, "/status")["workspace"]["exists"] is False
    finally:
        app.close()


def test_lab_and_evaluate_over_http(public_app: App, tmp_path: Path) -> None:
    client = client_for(public_app)
    predict(client, "/index_uploads", files=[handle_file(str(picture(tmp_path, p, c))) for p, c in (("ruby.png", "red"), ("sky.png", "blue"))])
    lab = predict(client, "/lab", text="red", image=None, audio=None, target="image", sources=["text/content"], methods=["rrf"],
                  k=2, weights="", extra_text="", extra_weight=0.5)
    assert lab["collection"] == "my uploads" and [c["name"] for c in lab["columns"]] == ["text/content", "rrf"]
    assert lab["columns"][1]["hits"][0]["name"] == "ruby.png" and "path" not in lab["columns"][1]["hits"][0]
    qrels = tmp_path / "q.jsonl"
    qrels.write_text('{"id": "r", "text": "red", "target": "image", "relevant": ["ruby.png"]}\n{oops\n')
    doc = predict(client, "/evaluate", qrels=handle_file(str(qrels)), methods=["rrf"])
    assert doc["queries"] == 1 and [r["name"] for r in doc["results"]] == ["text/content", "rrf"]
    assert [p["line"] for p in doc["problems"]] == [2] and doc["collection"] == "my uploads"
    refused(client, "/evaluate", "The demo benchmark labels items of the 'demo' collection", qrels=None, methods=["rrf"])


def test_minimal_calls_work_and_hit_urls_download_the_items_file(public_app: App, tmp_path: Path) -> None:
    """The calls a newcomer tries first need no optional argument; every hit's ``url`` downloads its file through
    the server (signed, by item id), a forged or stale link is a 404, and public answers hold no server path."""
    import httpx

    client = client_for(public_app)
    doc = json.loads(client.predict(text="red", api_name="/search"))
    assert doc["query"]["target"] == "image" and doc["hits"]
    for h in doc["hits"]:
        assert h["url"].startswith(f"{public_app.url}crossmodal/item/c/{DEMO_NAME}/{h['id']}/")
    assert str(public_app.indexes) not in json.dumps(doc) and not any(h["path"].startswith("/") for h in doc["hits"])
    first = doc["hits"][0]
    got = httpx.get(first["url"], timeout=30)
    with public_app.service.library(public_app.service.shared(DEMO_NAME)) as lib:
        from crossmodal_demo.app.serving import item_file

        assert got.status_code == 200 and got.content == item_file(lib.collection, first["id"], public_app.service.config).read_bytes()
    base, sig = first["url"].rsplit("/", 1)
    other = doc["hits"][1]["id"]
    for forged in (f"{base}/{'0' * 32}", base.rsplit("/", 1)[0] + f"/{other}/{sig}", first["url"].replace("/c/demo/", "/c/..%2Fdemo/"),
                   first["url"].replace("/c/", "/w/")):
        assert httpx.get(forged, timeout=30).status_code == 404, forged

    assert json.loads(client.predict(text="red", api_name="/lab"))["columns"]
    qrels = tmp_path / "q.jsonl"
    qrels.write_text('{"id": "r", "text": "red", "target": "image", "relevant": ["coffee.jpg"]}\n')
    assert json.loads(client.predict(qrels=handle_file(str(qrels)), api_name="/evaluate"))["queries"] == 1

    # a workspace item's link works while its workspace lives, and dies with it
    predict(client, "/index_uploads", files=[handle_file(str(picture(tmp_path, "mine-red.png", "red")))])
    predict(client, "/set_scope", scope="mine")
    (mine,) = json.loads(client.predict(text="red", k=1, api_name="/search"))["hits"]
    assert "/crossmodal/item/w/" in mine["url"] and httpx.get(mine["url"], timeout=30).status_code == 200
    public_app.service.workspaces.remove(client.session_hash)
    assert httpx.get(mine["url"], timeout=30).status_code == 404


def test_user_mistakes_come_back_as_their_message(public_app: App) -> None:
    client = client_for(public_app)
    refused(client, "/search", "Nothing to search for: type some text", text="", image=None, audio=None, target="image", k=5)
    refused(client, "/search", r"k must be a whole number between 1 and|less than minimum value 1", text="red", image=None, audio=None, target="image", k=0)
    refused(client, "/set_scope", r"Unknown scope|not in the list of choices|Value", scope="everything")
    refused(client, "/index_uploads", "Choose one or more files", files=[])


@pytest.mark.slow  # ~30 s: a real app.py process loading the real models (the loading state itself: test_browser)
def test_app_py_serves_first_then_warms_the_models_and_says_so(tmp_path: Path) -> None:
    """``python app.py --public`` answers before the models load, loads them right after in the background, and
    prints its progress (serving at URL, collection ready, models ready) in that order; then one real upload and search."""
    from crossmodal_demo.retrieval.library import open_library

    cfg = load_config(environ={}, indexes_dir=tmp_path / "ix")
    open_library(cfg, "ready", preset="offline", create=True).collection.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSMODAL_") and k != "SPACE_ID"}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--indexes-dir", str(tmp_path / "ix"), "--collection", "ready", "--port", str(port), "--public"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    out = ""
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return proc.poll() is not None  # stop waiting if it died
        assert eventually(up, 120) and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "no answer"
        client = Client(url, verbose=False, analytics_enabled=False)
        st = predict(client, "/status")
        assert st["mode"] == "public" and st["collection"] == "ready" and st["encoders"]
        assert st["models"]["state"] in ("loading", "ready")
        assert eventually(lambda: predict(client, "/status")["models"]["state"] == "ready", 180)
        assert all(e["loaded"] for e in predict(client, "/status")["encoders"])
        rep = predict(client, "/index_uploads", files=[handle_file(str(DATA / "images" / n)) for n in ("cat.jpg", "rocket.jpg")])
        assert rep["added"] == 2
        predict(client, "/set_scope", scope="mine")
        assert search(client, "a cat", k=2)["hits"][0]["path"].endswith("cat.jpg")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out = proc.stdout.read()
    lines = out.splitlines()
    order = [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in ("Serving at http://", "Models ready in")]
    assert order == sorted(order), out
    assert "Collection 'ready' ready with 0 items." in out


def test_app_py_rejects_an_unknown_preset_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSMODAL_")}
    out = subprocess.run([sys.executable, "app.py", "--preset", "clp"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "error: Unknown preset 'clp'" in out.stderr and "Traceback" not in out.stderr
