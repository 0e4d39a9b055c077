"""Every event of the app, called directly over HTTP with forged values, never leaks a server file (issue 9).

The attacker does what a browser cannot stop anyone from doing: read the Blocks config, then POST each
``fn_index`` — named endpoints, private display steps, ``.then``/``.success`` steps, select events,
``gr.render`` and ``unload`` — to ``/gradio_api/queue/join`` with values forged per input component type,
and read the SSE stream. Value kinds (one pass over all events each):

* ``abs``    — the absolute path of a canary file outside the collections (strings and FileData dicts);
* ``rel``    — that path as ``../``-relative strings from the collection folder and its media folder;
* ``doc``    — forged hit/item/lab JSON documents whose ``path`` fields point at the canary and items.sqlite;
* ``db``     — the path of ``<indexes>/demo/items.sqlite`` (strings and FileData dicts).

Select events also get forged ``event_data`` (indexes anywhere, values holding paths). Then: the canary's
content never appears (raw SSE text included), every file an output references resolves inside Gradio's
cache or a collection's media/thumbs and holds neither the canary nor a database, the file route refuses
the canary and the database, nothing outside the collections changed, and a normal search still works.
Run in public mode and in local mode with ``--allow-folder-indexing`` (so ``/index_folder`` exists).
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio_client")

from gradio import utils as gradio_utils  # noqa: E402

from crossmodal_demo.app.demo_collection import DEMO_NAME  # noqa: E402
from tests.fakes import colour_image  # noqa: E402
from tests.test_app_http import App, serve  # noqa: E402

KINDS = ("abs", "rel", "doc", "db")
FILE_TYPES = {"image", "audio", "file", "video", "downloadbutton", "uploadbutton", "model3d", "simpleimage"}
CHOICES = {"radio", "dropdown", "checkboxgroup", "slider", "number"}
EVENT_SECONDS = 60.0  # per event: a bound against hangs, not a timing assertion


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "url": None, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def png_with_text(path: Path, text: str) -> None:
    """A red PNG (the fakes read it as "red") carrying ``text`` in a tEXt chunk: a copy of it would carry the token."""
    colour_image("red").save(path)
    raw = path.read_bytes()
    body = b"tEXt" + b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    path.write_bytes(raw[:33] + chunk + raw[33:])  # right after IHDR


class Attacker:
    """Forged calls against one served app; remembers every output for the checks."""

    def __init__(self, app: App, outside: Path) -> None:
        self.app, self.url, self.outside = app, app.url, outside
        self.token = "CANARY-" + secrets.token_hex(16)
        self.canary = outside / "canary.txt"
        self.canary.write_text(f"{self.token}\nsecret server file\n")
        self.canary_png = outside / "canary.png"
        png_with_text(self.canary_png, self.token)
        self.db = app.indexes / DEMO_NAME / "items.sqlite"
        assert self.db.is_file()
        self.config = app.demo.config
        self.components = {c["id"]: c for c in self.config["components"]}
        self.http = httpx.Client(timeout=EVENT_SECONDS)
        self.raw: list[str] = []  # every SSE line received
        self.raw_by_kind: dict[str, list[str]] = {}  # the same lines per pass
        self.handled: list[tuple[int, str, bool]] = []  # second calls of events with file inputs (files left empty)
        self.outputs: list[tuple[int, str, Any]] = []  # (fn_index, kind, output payload)

    # -------------------------------------------------------------- forged values
    def strings(self, kind: str) -> list[str]:
        coll = self.app.indexes / DEMO_NAME
        if kind == "abs":
            return [str(self.canary), str(self.canary_png)]
        if kind == "rel":
            return [os.path.relpath(self.canary, coll), os.path.relpath(self.canary, coll / "media"),
                    os.path.relpath(self.canary, os.getcwd())]
        if kind == "db":
            return [str(self.db), os.path.relpath(self.db, os.getcwd())]
        return [json.dumps(self.forged_doc())]

    def forged_doc(self) -> dict[str, Any]:
        hit = {"id": 1, "rank": 1, "score": 1.0, "modality": "text", "space": "text", "channel": "content",
               "collection": DEMO_NAME, "path": str(self.canary), "file": str(self.canary), "thumbnail": str(self.canary_png)}
        db_hit = {**hit, "id": 2, "modality": "image", "path": str(self.db), "file": str(self.db)}
        return {"query": {"text": "red", "target": "image", "collection": DEMO_NAME}, "hits": [hit, db_hit],
                "items": [hit, db_hit], "columns": [{"name": "rrf", "kind": "fused", "hits": [hit, db_hit]}],
                "collection": DEMO_NAME, "path": str(self.canary)}

    def files(self, kind: str) -> list[str]:
        if kind == "db":
            return [str(self.db)]
        if kind == "rel":
            return self.strings("rel")
        return [str(self.canary), str(self.canary_png)]

    def value(self, comp: dict[str, Any], kind: str, i: int) -> Any:
        """A forged value for component ``comp`` (variant ``i`` cycles through the kind's strings/files)."""
        ctype, props = comp.get("type", ""), comp.get("props", {})
        s = self.strings(kind)[i % len(self.strings(kind))]
        f = self.files(kind)[i % len(self.files(kind))]
        if ctype in FILE_TYPES:
            fd = file_data(f)
            return [fd] if props.get("file_count") in ("multiple", "directory") else fd
        if ctype == "gallery":
            return [{"image": file_data(f), "caption": s}]
        if ctype == "dataframe":
            return {"headers": ["id", "path"], "data": [[1, s]], "metadata": None}
        if ctype == "checkboxgroup":
            return [s]
        if ctype == "json":
            return self.forged_doc()
        if ctype in ("slider", "number"):
            return props.get("value", 1)
        if ctype in ("plot", "timer"):
            return None
        return s

    def event_data(self, kind: str) -> dict[str, Any]:
        s = self.strings(kind)[0]
        return {
            "abs": {"index": 0, "value": s, "selected": True},
            "rel": {"index": [0, 1], "value": s, "selected": True, "row_value": [s], "col_value": [s]},
            "doc": {"index": 10**6, "value": {"path": str(self.canary)}, "selected": True},
            "db": {"index": -1, "value": {"image": {"path": str(self.db)}, "caption": s}, "selected": True},
        }[kind]

    # -------------------------------------------------------------- the protocol
    def call(self, fn_index: int, data: list[Any], session: str, event_data: Any = None) -> dict[str, Any]:
        """Join the queue with ``data`` and read the SSE stream until this event completes; returns that message."""
        r = self.http.post(f"{self.url}gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": session, "event_data": event_data, "trigger_id": None})
        self.raw.append(r.text)
        if r.status_code != 200:
            return {"msg": "refused", "status": r.status_code, "text": r.text}
        event_id = r.json()["event_id"]
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session}) as resp:
            for line in resp.iter_lines():
                self.raw.append(line)
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    return msg
        raise AssertionError(f"fn {fn_index}: the stream ended without completing the event")

    def dependencies(self) -> list[dict[str, Any]]:
        return self.config["dependencies"]

    def fn_by_api(self, api_name: str) -> dict[str, Any]:
        return next(d for d in self.dependencies() if d.get("api_name") == api_name and d.get("api_visibility") == "public")

    def legit(self, api_name: str, session: str, first: Any = None) -> dict[str, Any]:
        """Call a named endpoint as a browser would: ``first`` as its first input, the others at their defaults."""
        dep = self.fn_by_api(api_name)
        data = [self.components[cid].get("props", {}).get("value") for cid in dep["inputs"]]
        if first is not None:
            data[0] = first
        return self.call(dep["id"], data, session)

    def upload(self, path: Path) -> str:
        """Upload a file the way the browser does; returns Gradio's cache path for it."""
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.url}gradio_api/upload", files={"files": (path.name, fh, "image/png")})
        r.raise_for_status()
        return r.json()[0]

    def seed(self, session: str, picture: Path) -> None:
        """Give the session real results to render: an upload (public), a search, an item list, a lab run."""
        cached = self.upload(picture)
        msg = self.legit("index_uploads", session, [file_data(cached)])
        assert msg["success"], ("seeding upload failed", msg)
        for api, first in (("search", "red"), ("list_items", None), ("lab", "red")):
            msg = self.legit(api, session, first)
            assert msg["success"], (api, msg)

    def attack(self, kind: str) -> None:
        """One pass: every fn_index with values of ``kind``."""
        session = f"attacker-{kind}-{secrets.token_hex(4)}"
        start = len(self.raw)
        self.seed(session, self.outside.parent / "seed-red.png")
        for n, dep in enumerate(self.dependencies()):
            comps = [self.components.get(cid, {}) for cid in dep["inputs"]]
            data = [self.value(c, kind, n + j) for j, c in enumerate(comps)]
            ev = self.event_data(kind) if dep.get("collects_event_data") else None
            msg = self.call(dep["id"], data, session, ev)
            self.outputs.append((dep["id"], kind, msg.get("output")))
            forged_text = [c for c in comps if c.get("type") not in FILE_TYPES | CHOICES | {"state"}]
            if any(c.get("type") in FILE_TYPES for c in comps) and forged_text:
                # Gradio itself refuses a forged file or choice; call again without files and with the choices at their
                # defaults, so the forged strings (a path as the query text, the qrels...) reach the handler
                data = [None if c.get("type") in FILE_TYPES else c.get("props", {}).get("value") if c.get("type") in CHOICES else v
                        for c, v in zip(comps, data)]
                msg = self.call(dep["id"], data, session, ev)
                self.outputs.append((dep["id"], kind, msg.get("output")))
                self.handled.append((dep["id"], kind, bool(msg.get("success"))))
        self.raw_by_kind[kind] = self.raw[start:]

    # -------------------------------------------------------------- checks
    def allowed_roots(self) -> list[str]:
        roots = [os.path.realpath(gradio_utils.get_upload_folder())]
        for coll in [self.app.indexes / n for n in os.listdir(self.app.indexes)] + list((self.app.indexes / ".workspaces").glob("*")):
            roots += [os.path.realpath(coll / "media"), os.path.realpath(coll / "thumbs")]
        return roots

    def referenced_files(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        def walk(obj: Any) -> Iterator[dict[str, Any]]:
            if isinstance(obj, dict):
                if isinstance(obj.get("path"), str) and ("meta" in obj or "url" in obj):
                    yield obj
                for v in obj.values():
                    yield from walk(v)
            elif isinstance(obj, list):
                for v in obj:
                    yield from walk(v)

        for fn, kind, out in self.outputs:
            for fd in walk(out):
                yield fn, kind, fd

    def check(self) -> None:
        raw = "\n".join(self.raw)
        assert self.token not in raw, "the canary's content reached a client"
        assert "SQLite format 3" not in raw
        roots = self.allowed_roots()
        checked = 0
        for fn, kind, fd in self.referenced_files():
            real = os.path.realpath(fd["path"])
            assert any(real.startswith(r + os.sep) for r in roots), f"fn {fn} ({kind}) returned {real}, outside the cache and media"
            if os.path.isfile(real):
                body = Path(real).read_bytes()
                assert self.token.encode() not in body and not body.startswith(b"SQLite format 3"), f"fn {fn} ({kind}) served {real}"
                checked += 1
            if fd.get("url"):
                r = self.http.get(fd["url"])
                assert self.token.encode() not in r.content and not r.content.startswith(b"SQLite format 3"), fd["url"]
        self.files_checked = checked

    def evaluate_with_server_paths(self) -> list[dict[str, Any]]:
        """/evaluate with an uploaded qrels file whose query files are server paths: existing and missing ones."""
        missing = str(self.outside / "no-such-file.png")
        paths = [str(self.canary_png), os.path.relpath(self.canary_png, self.app.indexes / DEMO_NAME), missing, str(self.db)]
        lines = [json.dumps({"id": f"q{i}", "image": p, "target": "image", "relevant": ["seed-red.png"]}) for i, p in enumerate(paths)]
        lines.append(json.dumps({"id": "ok", "text": "red", "target": "image", "relevant": ["seed-red.png"]}))
        qrels = self.outside.parent / "forged-qrels.jsonl"
        qrels.write_text("\n".join(lines) + "\n")
        session = "evaluator-" + secrets.token_hex(4)
        self.seed(session, self.outside.parent / "seed-red.png")
        msg = self.legit("evaluate", session, file_data(self.upload(qrels)))
        assert msg["success"], msg
        doc = json.loads(msg["output"]["data"][0])
        problems = {p["line"]: p["message"].replace(paths[p["line"] - 1], "<P>") for p in doc["problems"]}
        assert sorted(problems) == [1, 2, 3, 4] and doc["queries"] == 1, doc["problems"]
        return [{"line": n, "message": m} for n, m in sorted(problems.items())]

    def refused_by_file_route(self) -> None:
        for target in (self.canary, self.canary_png, self.db, self.db.parent / "manifest.json"):
            r = self.http.get(f"{self.url}gradio_api/file={target}")
            assert r.status_code in (403, 404), (target, r.status_code)
            assert self.token.encode() not in r.content and not r.content.startswith(b"SQLite format 3")


@pytest.fixture(params=["public", "local"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Path, str]]:
    mode = request.param
    outside = tmp_path_factory.mktemp(f"outside-{mode}") / "secrets"
    outside.mkdir()
    colour_image("red").save(outside.parent / "seed-red.png")
    if mode == "public":
        app = serve(tmp_path_factory, f"attack-{mode}", public=True)
    else:
        roots = tmp_path_factory.mktemp("allowed-root")
        colour_image("blue").save(roots / "in-root-blue.png")
        app = serve(tmp_path_factory, f"attack-{mode}", folder_roots=(roots,))
    yield app, outside, mode
    app.close()


def test_forged_values_on_every_event_never_leak_a_server_file(target: tuple[App, Path, str]) -> None:
    app, outside, mode = target
    atk = Attacker(app, outside)
    deps = atk.dependencies()
    assert {d["id"] for d in deps} == set(app.demo.fns)  # the config lists every backend event
    names = {d.get("api_name") for d in deps if d.get("api_visibility") == "public"}
    assert ("index_folder" in names) == (mode == "local") and ("set_scope" in names) == (mode == "public")
    assert any(d.get("collects_event_data") for d in deps) and any(d["targets"] and d["targets"][0][1] in ("then", "success") for d in deps)
    demo_count = _demo_count(atk)
    outside_before = sorted((p.name, p.stat().st_size) for p in outside.iterdir())

    for kind in KINDS:
        atk.attack(kind)
    assert len(atk.outputs) == len(KINDS) * len(deps) + len(atk.handled)
    assert any(ok for _, _, ok in atk.handled)  # forged strings did reach handlers (e.g. /search with a path as text)
    atk.check()
    assert atk.files_checked > 0  # the display steps did return files, and each was inspected
    atk.refused_by_file_route()
    problems = atk.evaluate_with_server_paths()  # a qrels file naming server files learns nothing about them
    assert len({p["message"] for p in problems}) == 1, problems
    assert atk.token not in "\n".join(atk.raw)

    assert sorted((p.name, p.stat().st_size) for p in outside.iterdir()) == outside_before  # nothing written or deleted there
    assert atk.canary.read_text().startswith(atk.token)
    if mode == "public":  # (passes that did not send the path themselves: an error may echo what was sent)
        for kind in ("abs", "rel"):
            leaks = [line for line in atk.raw_by_kind[kind] if str(app.indexes) in line]
            assert not leaks, f"a public answer revealed the server's indexes folder: {leaks[0][:600]}"
        assert _demo_count(atk) == demo_count  # the shared demo is read-only
    else:
        assert _demo_count(atk) >= demo_count  # local: the seed upload went to the demo; nothing forged was deleted
    # still healthy: a normal search from a fresh session works
    msg = atk.legit("search", "after-" + mode, "red")
    assert msg["success"] and json.loads(msg["output"]["data"][0])["hits"]


def _demo_count(atk: Attacker) -> int:
    msg = atk.legit("status", "count-" + secrets.token_hex(3))
    assert msg["success"], msg
    st = json.loads(msg["output"]["data"][0])
    assert st["collection"] == DEMO_NAME
    return st["counts"]["total"]
