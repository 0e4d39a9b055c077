"""Service-level soak with the real offline encoders: searches, lab runs and evaluations on several threads
while others upload, delete and switch collections, for a bounded time. Zero errors are allowed, and
afterwards SQLite and every FAISS partition of every collection agree (in memory and on disk)."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from crossmodal_demo.app import lab_actions, library_actions, search_actions
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.config import load_config
from crossmodal_demo.index.store import Collection
from crossmodal_demo.retrieval.library import Library

DATA = Path(__file__).parent / "data"
QUERIES = ["a cat on a sofa", "pasta with tomato sauce", "guitar lesson", "rocket launch", "coffee cup", "rain tomorrow"]


def partitions_agree(coll: Collection) -> None:
    """Ids per FAISS partition == ids of the vectors rows per (space, channel, modality) in SQLite."""
    db = sqlite3.connect(coll.root / "items.sqlite")
    try:
        rows = db.execute("SELECT v.space, v.channel, i.modality, v.item_id FROM vectors v JOIN items i ON i.id = v.item_id")
        want: dict[tuple, list[int]] = {}
        for s, c, m, i in rows:
            want.setdefault((s, c, m), []).append(i)
    finally:
        db.close()
    assert set(coll.index_keys()) == set(want), coll.name
    for key, ids in want.items():
        assert coll.index_ids(key).tolist() == sorted(ids), (coll.name, key)


def soak(tmp_path: Path, indexed: Library, cache: Path, seconds: float) -> Counter:
    ix = tmp_path / "ix"
    ix.mkdir()
    shutil.copytree(indexed.collection.root, ix / "corpus")  # the session's real-weights collection, copied
    cfg = load_config(environ={}, preset="offline", indexes_dir=ix, collection="corpus", cache_dir_override=cache)
    svc = AppService(cfg)
    svc.start(background=False)
    svc.create_collection(Visitor(session="setup"), "mine")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    done: Counter = Counter()
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds
    serial = iter(range(10**9))
    serial_lock = threading.Lock()

    def next_n() -> int:
        with serial_lock:
            return next(serial)

    def on(collection: str) -> Visitor:
        return Visitor(session=f"v{next_n()}", collection=collection)

    def search(rng: random.Random) -> None:
        v = on(rng.choice(["corpus", "mine"]))
        search_actions.search(svc, v, text=rng.choice(QUERIES), target=rng.choice(["any", "image", "text"]), k=5)

    def lab(rng: random.Random) -> None:
        lab_actions.lab(svc, on("corpus"), text=rng.choice(QUERIES), target="image", k=5, methods=["rrf"])

    def evaluate(rng: random.Random) -> None:
        qrels = uploads / f"q{next_n()}.jsonl"
        lines = [{"id": "pet", "text": "my cat at home", "target": "text", "relevant": ["pet_note.txt"]},
                 {"id": "food", "text": "tomato pasta recipe", "target": "text", "relevant": ["recipe_note.txt"]}]
        qrels.write_text("\n".join(json.dumps(x) for x in lines))
        doc = lab_actions.evaluate(svc, on("corpus"), str(qrels), ["rrf"])
        assert doc["queries"] == 2, doc.get("problems")

    def upload(rng: random.Random) -> None:
        n = next_n()
        note = uploads / f"note{n}.txt"
        note.write_text(f"note {n}: {rng.choice(QUERIES)} and more words {rng.random()}")
        files = [str(note)]
        if n % 3 == 0:  # an image now and then (ConSE): a unique copy of a test photo
            pic = uploads / f"pic{n}.jpg"
            pic.write_bytes((DATA / "images" / rng.choice(["cat.jpg", "coffee.jpg", "rocket.jpg"])).read_bytes() + n.to_bytes(8, "little"))
            files.append(str(pic))
        rep = library_actions.index_uploads(svc, on("mine"), files)
        assert rep["added"] >= 1 and not rep["errors"], rep

    def delete(rng: random.Random) -> None:
        v = on("mine")
        items = library_actions.list_items(svc, v)["items"]
        if len(items) > 2:
            library_actions.delete(svc, v, [rng.choice(items)["id"]])
        else:
            time.sleep(0.05)

    def switch(rng: random.Random) -> None:
        v = on("corpus")
        for name in ("mine", "corpus"):
            svc.switch_collection(v, name)
            library_actions.list_items(svc, v)

    def run(name: str, fn: Callable[[random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                fn(rng)
                done[name] += 1
            except BaseException as exc:  # noqa: BLE001 - every error fails the soak below
                errors.append(exc)
                return

    work = [("search", search), ("search", search), ("search", search), ("lab", lab), ("evaluate", evaluate),
            ("upload", upload), ("delete", delete), ("switch", switch)]
    threads = [threading.Thread(target=run, args=(name, fn, i), name=name) for i, (name, fn) in enumerate(work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 300)
    try:
        assert not errors, f"{len(errors)} errors, e.g. {errors[0]!r}"
        for name in ("corpus", "mine"):
            with svc.library(svc.shared(name)) as lib:
                partitions_agree(lib.collection)
    finally:
        svc.close()
    for name in ("corpus", "mine"):  # the files written on close agree too: nothing rebuilt on reopen
        again = Collection.open(ix, name)
        assert again.rebuilt == [], name
        partitions_agree(again)
        again.close()
    return done


def test_service_soak_with_real_encoders(tmp_path: Path, indexed: Library, shared_cache: Path) -> None:
    done = soak(tmp_path, indexed, shared_cache, seconds=15)
    assert min(done[k] for k in ("search", "lab", "evaluate", "upload", "switch")) >= 1, done
    assert done["search"] >= 10, done


@pytest.mark.slow
def test_service_soak_long(tmp_path: Path, indexed: Library, shared_cache: Path) -> None:
    done = soak(tmp_path, indexed, shared_cache, seconds=120)
    assert done["delete"] >= 5 and done["upload"] >= 10, done
