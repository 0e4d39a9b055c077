"""The app's service layer with fake encoders: per-visitor state, public mode, quotas, workspaces, recovery, self-healing demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossmodal_demo.app import lab_actions, library_actions, search_actions, upload_batches
from crossmodal_demo.app.collections import CollectionRef
from crossmodal_demo.app.demo_collection import DEMO_NAME, demo_health
from crossmodal_demo.app.serving import item_file
from crossmodal_demo.app.service import MY_UPLOADS, AppService
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.config import load_config
from crossmodal_demo.errors import Cancelled, UserError
from tests.fakes import colour_image, fake_overrides

ROOT = Path(__file__).resolve().parents[1]


def make_service(tmp_path: Path, **settings: object) -> AppService:
    """A started service over fresh indexes (demo built with the fakes, in this thread)."""
    cfg = load_config(environ={}, indexes_dir=tmp_path / "ix", cache_dir_override=tmp_path / "cache", **settings)
    svc = AppService(cfg, encoder_overrides=fake_overrides())
    svc.start(background=False)
    return svc


def pictures(folder: Path, *colours: str) -> list[str]:
    """Small PNGs of the given colours (the fakes index a picture as its dominant colour's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, c in enumerate(colours):
        p = folder / f"{c}-{i}.png"
        colour_image(c).save(p)
        out.append(str(p))
    return out


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> AppService:
    svc = make_service(tmp_path_factory.mktemp("public"), public=True)
    yield svc
    svc.close()


def visitor(session: str) -> Visitor:
    return Visitor(session=session)


def test_local_visitors_choose_collections_independently(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    a, b = visitor("a"), visitor("b")
    svc.create_collection(a, "mine")
    assert svc.active_name(a) == "mine" and svc.active_name(b) == DEMO_NAME
    library_actions.index_uploads(svc, a, pictures(tmp_path / "up", "red"))
    assert library_actions.list_items(svc, a)["counts"]["total"] == 1
    assert library_actions.list_items(svc, b)["collection"] == DEMO_NAME  # B never followed A
    svc.switch_collection(b, "mine")
    assert svc.active_name(b) == "mine" and svc.active_name(a) == "mine"
    with pytest.raises(UserError, match="Unknown collection 'nope'"):
        svc.switch_collection(b, "nope")
    svc.close()


def test_public_uploads_are_private_to_their_visitor(public: AppService, tmp_path: Path) -> None:
    a, b = visitor("alice"), visitor("bob")
    demo_before = library_actions.list_items(public, b)["counts"]["total"]
    rep = library_actions.index_uploads(public, a, pictures(tmp_path, "red", "green"))
    assert rep["added"] == 2 and rep["collection"] == MY_UPLOADS
    a.scope = "mine"
    hits = search_actions.search(public, a, text="red", target="image", k=3)["hits"]
    assert hits[0]["collection"] == MY_UPLOADS and hits[0]["path"].endswith(".png") and not hits[0]["path"].startswith("/")
    b.scope = "both"  # Bob sees the demo only: Alice's workspace is not his
    assert all(h["collection"] == DEMO_NAME for h in search_actions.search(public, b, text="red", target="image", k=50)["hits"])
    assert library_actions.list_items(public, b)["collection"] == DEMO_NAME
    with pytest.raises(UserError, match="read-only"):
        library_actions.delete(public, b, [h["id"] for h in hits])
    with pytest.raises(UserError, match="not available on this public app"):
        public.create_collection(b, "x")
    assert library_actions.list_items(public, b)["counts"]["total"] == demo_before


def test_public_delete_touches_only_the_own_workspace(public: AppService, tmp_path: Path) -> None:
    a = visitor("carol")
    with public.library(public.shared(DEMO_NAME)) as lib:
        demo_count = lib.collection.counts()["total"]
    library_actions.index_uploads(public, a, pictures(tmp_path, "blue"))
    a.scope = "mine"
    own = library_actions.list_items(public, a)["items"]
    plan = library_actions.describe_delete(public, a, str(own[0]["id"]))
    assert plan["items"] == [{"id": own[0]["id"], "name": own[0]["name"]}]
    rep = library_actions.delete(public, a, str(own[0]["id"]))
    assert rep["removed"] == [own[0]["id"]] and rep["names"] == [own[0]["name"]] and rep["counts"]["total"] == 0
    with public.library(public.shared(DEMO_NAME)) as lib:
        assert lib.collection.counts()["total"] == demo_count  # the demo item with the same id is untouched


def test_workspace_is_deleted_when_the_visitor_leaves_or_idles(public: AppService, tmp_path: Path) -> None:
    a, b = visitor("dave"), visitor("erin")
    library_actions.index_uploads(public, a, pictures(tmp_path / "a", "red"))
    library_actions.index_uploads(public, b, pictures(tmp_path / "b", "green"))
    ref_a, ref_b = public.workspaces.get("dave"), public.workspaces.get("erin")
    assert ref_a and ref_a.path.is_dir() and ref_b and ref_b.path.is_dir()
    assert public.workspaces.remove("dave")  # demo.unload
    assert not ref_a.path.exists() and public.workspaces.get("dave") is None
    now = public.workspaces._clock()
    public.workspaces._clock = lambda: now + public.config.workspace_ttl + 1  # idle past the TTL
    try:
        assert "erin" in public.workspaces.sweep()
    finally:
        public.workspaces._clock = lambda: now
    assert not ref_b.path.exists()


def test_quotas_refuse_the_201st_file_and_the_51st_workspace(tmp_path: Path) -> None:
    svc = make_service(tmp_path, public=True)
    files = pictures(tmp_path / "many", *(["red"] * 201))
    with pytest.raises(UserError, match="CROSSMODAL_WORKSPACE_MAX_FILES"):
        library_actions.index_uploads(svc, visitor("v"), files)
    for i in range(50):
        svc.workspaces.ensure(f"s{i}")
    with pytest.raises(UserError, match="try again in a few minutes.*CROSSMODAL_MAX_WORKSPACES|CROSSMODAL_MAX_WORKSPACES.*try again"):
        library_actions.index_uploads(svc, visitor("s50"), files[:1])
    assert svc.workspaces.live() == 50  # nobody else was harmed
    svc.close()


def test_open_collections_are_bounded(tmp_path: Path) -> None:
    svc = make_service(tmp_path, max_open_collections=2)
    for i in range(6):
        svc.create_collection(visitor(f"v{i}"), f"c{i}")
    assert svc.collections.open_count() <= 2
    svc.close()


def test_served_files_are_items_inside_the_collection_media(tmp_path: Path) -> None:
    svc = make_service(tmp_path, folder_roots=(tmp_path / "outside",))
    v = visitor("f")
    outside = tmp_path / "outside"
    pictures(outside, "red")
    (outside / "secret.txt").write_text("canary secret words")
    library_actions.index_folder(svc, v, str(outside))
    with svc.library(svc.shared(DEMO_NAME)) as lib:
        items = {Path(i.path).name: i for i in lib.collection.items()}
        own = next(i for i in items.values() if "media" in i.path)
        assert item_file(lib.collection, own.id, svc.config) == Path(os.path.realpath(own.path))
        text = items["secret.txt"]  # indexed in place: never served
        assert item_file(lib.collection, text.id, svc.config) is None
        pic = items["red-0.png"]  # indexed in place: only its preview, inside thumbs/
        assert item_file(lib.collection, pic.id, svc.config).parent == (lib.collection.root / "thumbs").resolve()
        assert item_file(lib.collection, 10**9, svc.config) is None
    with pytest.raises(UserError, match="Only folders under"):
        library_actions.index_folder(svc, v, str(tmp_path))
    svc.close()


def test_text_query_over_the_limit_is_refused_without_echo(public: AppService) -> None:
    with pytest.raises(UserError) as err:
        search_actions.search(public, visitor("g"), text="x" * 5000)
    assert "CROSSMODAL_MAX_QUERY_CHARS" in str(err.value) and "xxxx" not in str(err.value)


def test_search_takes_a_fusion_method_and_refuses_an_unknown_one_before_any_model_runs(public: AppService) -> None:
    default = search_actions.search(public, visitor("f"), text="red", target="image", k=3)
    raw = search_actions.search(public, visitor("f"), text="red", target="image", k=3, fusion="max")
    assert (default["query"]["fusion"], raw["query"]["fusion"]) == ("mean-zscore", "max")
    with pytest.raises(UserError, match="max"):
        search_actions.search(public, visitor("f"), text="red", fusion="bogus")


def test_killed_upload_leaves_no_unindexed_files_after_restart(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    svc.close()
    (tmp_path / "up").mkdir()
    files = []
    for i, c in enumerate(["red", "green", "blue", "yellow"] * 10):  # 40 different files (sizes differ), no duplicates
        colour_image(c, (40 + i, 32)).save(tmp_path / "up" / f"{c}-{i}.png")
        files.append(str(tmp_path / "up" / f"{c}-{i}.png"))
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from crossmodal_demo.app import library_actions
        from crossmodal_demo.app.service import AppService
        from crossmodal_demo.app.visitors import Visitor
        from crossmodal_demo.config import load_config
        from tests.fakes import fake_overrides
        cfg = load_config(environ={{}}, indexes_dir={str(tmp_path / "ix")!r}, cache_dir_override={str(tmp_path / "cache")!r}, batch_size=4)
        svc = AppService(cfg, encoder_overrides=fake_overrides())
        def progress(done, total, desc):
            if done >= 8:
                os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of indexing the upload
        library_actions.index_uploads(svc, Visitor(session="k"), {files!r}, progress=progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    media = tmp_path / "ix" / DEMO_NAME / "media"
    batch = next(media.glob("upload-*"))
    assert len(list(batch.glob("*.png"))) > 8  # files copied but not all indexed
    svc = make_service(tmp_path)  # restart
    with svc.library(svc.shared(DEMO_NAME)) as lib:
        indexed = {os.path.realpath(i.path) for i in lib.collection.items()}
    left = [p for p in batch.rglob("*") if p.is_file()]
    assert left and all(os.path.realpath(p) in indexed for p in left)
    assert svc.recovered and svc.recovered[0]["removed"] > 0
    assert json.loads(next((tmp_path / "ix" / DEMO_NAME / "uploads").glob("*.json")).read_text())["state"] == "recovered"
    svc.close()


def test_demo_is_rebuilt_after_it_is_emptied_or_damaged(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    v = visitor("h")
    full = library_actions.list_items(svc, v)["counts"]["total"]
    assert full > 20
    library_actions.delete(svc, v, [i["id"] for i in library_actions.list_items(svc, v)["items"]])
    svc.close()
    assert demo_health(tmp_path / "ix") == "emptied"
    svc = make_service(tmp_path)
    assert svc.build.reason == "emptied" and svc.build.state == "done"
    assert library_actions.list_items(svc, v)["counts"]["total"] == full
    svc.close()
    (tmp_path / "ix" / DEMO_NAME / "items.sqlite").write_bytes(b"not a database" * 100)
    assert demo_health(tmp_path / "ix") == "damaged"
    svc = make_service(tmp_path)
    assert svc.build.reason == "damaged" and library_actions.list_items(svc, v)["counts"]["total"] == full
    svc.close()


def test_upload_batches_are_recorded_pending_then_done(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    library_actions.index_uploads(svc, visitor("i"), pictures(tmp_path / "up", "red"))
    records = list((tmp_path / "ix" / DEMO_NAME / "uploads").glob("*.json"))
    assert [json.loads(r.read_text())["state"] for r in records] == ["done"]
    with svc.library(svc.shared(DEMO_NAME)) as lib:
        assert upload_batches.recover(lib.collection) == []  # nothing pending
    svc.close()


def test_status_is_per_visitor(public: AppService, tmp_path: Path) -> None:
    a = visitor("j")
    st = public.status(a)
    assert st["mode"] == "public" and st["workspace"]["exists"] is False and "indexes_dir" not in st
    library_actions.index_uploads(public, a, pictures(tmp_path, "white"))
    st = public.status(a)
    assert st["workspace"]["exists"] and st["workspace"]["files"] == 1 and st["workspace"]["max_files"] == 200
    assert isinstance(public.shared(DEMO_NAME), CollectionRef)


def test_evaluate_resolves_query_files_only_from_the_zip_or_the_collection(public: AppService, tmp_path: Path) -> None:
    import zipfile

    a = visitor("k-eval")
    names = [Path(p).name for p in pictures(tmp_path / "up", "red", "blue")]
    library_actions.index_uploads(public, a, [str(tmp_path / "up" / n) for n in names])
    a.scope = "mine"
    canary = tmp_path / "canary.png"
    colour_image("red").save(canary)
    qrels = tmp_path / "q.jsonl"
    lines = [
        {"id": "server", "image": str(canary), "target": "image", "relevant": [names[0]]},
        {"id": "escape", "image": "../../canary.png", "target": "image", "relevant": [names[0]]},
        {"id": "item", "image": names[1], "target": "image", "relevant": [names[0]]},  # an item of the collection: allowed
        {"id": "text", "text": "red", "target": "image", "relevant": [names[0]]},
    ]
    qrels.write_text("\n".join(json.dumps(x) for x in lines))
    doc = lab_actions.evaluate(public, a, str(qrels), ["rrf"])
    bad = {p["line"] for p in doc["problems"]}
    assert bad == {1, 2} and doc["queries"] == 2
    assert all("name an item of the collection" in p["message"] for p in doc["problems"])
    bundle = tmp_path / "bundle.zip"
    query = tmp_path / "query.png"
    colour_image("red", size=(64, 64)).save(query)  # not byte-identical to the item (that would leave itself out)
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(query, "queries/red.png")
        zf.writestr("qrels.jsonl", json.dumps({"id": "z", "image": "queries/red.png", "target": "image", "relevant": [names[0]]}))
    doc = lab_actions.evaluate(public, a, str(bundle), ["rrf"])
    assert doc["queries"] == 1 and doc["problems"] == []


def test_lab_runs_for_the_visitor_and_keeps_no_server_paths(public: AppService) -> None:
    v = visitor("lab")
    v.scope = "demo"
    res = lab_actions.lab(public, v, text="red", target="image", methods=["rrf"], k=3)
    assert v.last_lab is res and res["collection"] == DEMO_NAME
    assert all("path" not in h for col in res["columns"] for h in col["hits"])


def test_examples_are_ids_that_fill_a_query_from_the_shipped_demo(public: AppService) -> None:
    from crossmodal_demo.app.demo_collection import DEMO_DATA, EXAMPLES, demo_strip, example_query

    kinds = set()
    for key in EXAMPLES:
        q = example_query(key)
        kinds |= {m for m in ("text", "image", "audio") if m in q}
        for m in ("image", "audio"):
            if m in q:
                assert Path(q[m]).is_file() and Path(q[m]).parent.parent == DEMO_DATA
        doc = search_actions.search(public, visitor(f"ex-{key}"), q.get("text"), q.get("image"), q.get("audio"), q["target"], 5)
        assert doc["hits"] and doc["query"]["target"] == q["target"]
    assert kinds == {"text", "image", "audio"}
    with pytest.raises(UserError, match="Unknown example"):
        example_query("/etc/passwd")
    assert demo_strip().startswith("11 photos · 8 voice messages · 5 sounds")


def test_find_similar_searches_with_the_hit_by_id_and_leaves_it_out(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    v = visitor("sim")
    library_actions.index_uploads(svc, v, pictures(tmp_path / "up", "red", "red", "blue"))
    first = search_actions.search(svc, v, text="red", target="image", k=3)
    top = first["hits"][0]
    doc = search_actions.similar(svc, v, 1)
    assert doc["query"]["similar_to"] == Path(top["path"]).name and doc["query"]["modality"] == "image"
    assert doc["query"]["target"] == "image" and len(doc["hits"]) == 3 and [h["rank"] for h in doc["hits"]] == [1, 2, 3]
    assert top["id"] not in [h["id"] for h in doc["hits"]] and doc["hits"][0]["path"].endswith(".png")  # the other red one
    search_actions.search(svc, v, text="dentist appointment", target="text", k=2)
    assert search_actions.similar(svc, v, 1)["query"]["modality"] == "text"  # a note's words are the query
    for bad in (0, 99, "1", None):
        with pytest.raises(UserError, match="no longer shown"):
            search_actions.similar(svc, v, bad)
    svc.close()


def test_results_read_plainly_with_links_by_id(public: AppService) -> None:
    from crossmodal_demo.app.results import highlight, strip_markdown, why_matched

    v = visitor("view")
    search_actions.search(public, v, text="party plan for anna", target="any", k=40)
    view = search_actions.result_view(public, v)
    by_kind = {c["kind"] for c in view["cards"]}
    assert {"image", "row"} <= by_kind and "35 result(s)" in view["summary"]  # the whole demo
    pics = [c for c in view["cards"] if c["kind"] == "image"]
    assert all('src="/crossmodal/item/c/demo/' in c["html"] and "?size=thumb" in c["html"] for c in pics)
    note = next(c["html"] for c in view["cards"] if "party_plan.md" in c["html"])
    assert "# Party" not in note and "<mark>Party</mark> <mark>plan</mark> —" in note and "matched the text" in note
    assert any("<audio controls" in c["html"] for c in view["cards"])
    assert strip_markdown("## Title\n**bold** and [a link](http://x) `code`") == "Title —\nbold and a link code"
    assert highlight("<b>cat</b> cats", ["cat"]) == "&lt;b&gt;<mark>cat</mark>&lt;/b&gt; <mark>cats</mark>"
    hit = {"modality": "image", "space": "text", "channel": "content", "sources": {"text/caption": {"rank": 1}, "text/content": {"rank": 4}}}
    assert why_matched(hit) == "its caption and the picture"
    assert why_matched({"modality": "audio", "space": "text", "channel": "content"}) == "what was said"
    assert why_matched({"modality": "audio", "space": "clap", "channel": "content"}) == "the sound"


def test_signed_links_open_only_what_was_issued_and_warm_up_loads_every_model(public: AppService) -> None:
    said: list[str] = []
    svc, svc.announce = public, said.append
    svc.warm_up()
    assert svc.models.state == "ready" and svc.status(visitor("w"))["models"]["state"] == "ready"
    assert all(e["loaded"] for e in svc.status(visitor("w"))["encoders"])
    assert len(said) == 1 and said[0].startswith("Models ready in")
    hit = search_actions.search(svc, visitor("l"), text="a cat", k=1)["hits"][0]
    kind, name, iid, sig = hit["url"].split("/crossmodal/item/")[1].split("/")
    path, filename = svc.open_link(kind, name, iid, sig)
    root = Path(svc.config.indexes_dir, DEMO_NAME).resolve()
    assert path.parent.parent == root / "media" and filename == Path(path).name
    assert svc.open_link(kind, name, iid, sig, preview=True)[0].parent == root / "thumbs"
    for forged in ((kind, name, str(int(iid) + 1), sig), (kind, "../demo", iid, sig), ("w", name, iid, sig), (kind, name, iid, "0" * 32)):
        assert svc.open_link(*forged) is None


def test_a_visitor_stops_their_own_indexing_and_evaluation_and_keeps_what_was_done(tmp_path: Path) -> None:
    svc = make_service(tmp_path, batch_size=2)
    v, other = Visitor(session="stopper"), Visitor(session="bystander")
    svc.create_collection(v, "mine")
    notes = tmp_path / "notes"
    notes.mkdir()
    files = []
    for i in range(10):
        (notes / f"n{i}.txt").write_text(f"note number {i} about topic {i * 7}")
        files.append(str(notes / f"n{i}.txt"))

    def stop_after_first_batch(done: int, total: int, desc: str) -> None:
        if done >= 2:
            assert svc.jobs.cancel(other.session) == 0  # another visitor cannot stop this job
            svc.jobs.cancel(v.session)

    with pytest.raises(Cancelled, match="Stopped indexing after"):
        library_actions.index_uploads(svc, v, files, progress=stop_after_first_batch)
    with svc.library(svc.shared("mine")) as lib:
        kept = lib.collection.items()
        assert 2 <= len(kept) < 10  # the batches committed before the stop
        on_disk = [f for f in (lib.collection.root / "media").rglob("*.txt")]
        assert sorted(Path(it.path).name for it in kept) == sorted(f.name for f in on_disk)  # nothing unindexed left
    with pytest.raises(Cancelled, match="Stopped the evaluation"):
        lab_actions.evaluate(svc, Visitor(session="stopper", collection=DEMO_NAME), None, ["rrf"],
                             progress=lambda d, t, s: svc.jobs.cancel("stopper"))
    assert svc.jobs.cancel("stopper") == 0  # finished jobs leave no flags behind
    svc.close()
