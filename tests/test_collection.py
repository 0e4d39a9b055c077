"""Collections: de-duplication, removal from every space, bad files in a batch, crash safety, manifests
(fake encoders: the models are not the subject here)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.config import Config, load_config
from crossmodal_demo.errors import FatalError, UserError
from crossmodal_demo.index import store
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.library import Library, open_library, resolve_refs
from crossmodal_demo.retrieval.query import Query
from crossmodal_demo.index.faiss_index import IndexPolicy
from crossmodal_demo.index.store import Collection, NewItem
from tests.fakes import fake_overrides

DATA = Path(__file__).parent / "data"


def assert_consistent(coll: Collection) -> None:
    """SQLite and every FAISS partition hold exactly the same ids; every item has its content vector."""
    db = sqlite3.connect(coll.root / "items.sqlite")
    for key in coll.index_keys():
        space, channel, modality = key
        want = sorted(
            r[0]
            for r in db.execute(
                "SELECT v.item_id FROM vectors v JOIN items i ON i.id=v.item_id WHERE space=? AND channel=? AND modality=?",
                key,
            )
        )
        assert coll.index_ids(key).tolist() == want, key
    orphans = db.execute("SELECT COUNT(*) FROM vectors WHERE item_id NOT IN (SELECT id FROM items)").fetchone()[0]
    assert orphans == 0
    # text and image items always carry a content vector: no half-added item
    bare = db.execute(
        "SELECT COUNT(*) FROM items i WHERE modality != 'audio' AND NOT EXISTS "
        "(SELECT 1 FROM vectors v WHERE v.item_id=i.id AND v.channel='content')"
    ).fetchone()[0]
    assert bare == 0


@pytest.fixture
def lib(config: Config, fake_overrides: dict) -> Library:
    return open_library(config, "c1", preset="offline", create=True, overrides=fake_overrides)


def test_reindexing_adds_nothing_and_copies_are_deduplicated(lib: Library, config: Config, tmp_path: Path) -> None:
    first = index_paths(lib.collection, lib.encoders, [DATA / "texts"], config)
    assert len(first.added) == 10
    again = index_paths(lib.collection, lib.encoders, [DATA / "texts"], config)
    assert again.added == [] and len(again.unchanged) == 10 and again.duplicates == []
    copy = tmp_path / "copy.txt"
    shutil.copy(DATA / "texts" / "pet_note.txt", copy)
    assert index_paths(lib.collection, lib.encoders, [copy], config).added == []
    assert lib.collection.counts()["total"] == 10
    assert_consistent(lib.collection)


def test_changed_file_replaces_its_old_version(lib: Library, config: Config, tmp_path: Path) -> None:
    note = tmp_path / "n.txt"
    note.write_text("bicycle repair shop")
    index_paths(lib.collection, lib.encoders, [note], config)
    note.write_text("violin concert tonight")
    rep = index_paths(lib.collection, lib.encoders, [note], config)
    assert len(rep.added) == 1 and len(rep.replaced) == 1
    assert lib.collection.counts()["total"] == 1
    hit = lib.search.search(Query(text="violin concert"), target="text", k=1).hits[0]
    assert hit.path == str(note.resolve())


def test_remove_deletes_from_every_space_and_disk(lib: Library, config: Config) -> None:
    photos = DATA / "images"
    cap_dir = Path(config.indexes_dir).parent / "captioned"
    cap_dir.mkdir()
    shutil.copy(photos / "cat.jpg", cap_dir / "cat.jpg")
    (cap_dir / "cat.jpg.txt").write_text("my cat Chelsea")
    index_paths(lib.collection, lib.encoders, [cap_dir, DATA / "texts"], config)
    cat = [i for i in lib.collection.items("image")][0]
    assert lib.collection.spaces_of(cat.id) == ["text/caption", "text/content"]
    items, unknown = resolve_refs(lib.collection, ["cat.jpg", "no_such.png"])
    assert [i.id for i in items] == [cat.id] and "no such id or path" in unknown[0]
    assert lib.collection.remove([cat.id]) == [cat.id]
    assert all(cat.id not in lib.collection.index_ids(k) for k in lib.collection.index_keys())
    assert lib.search.search(Query(text="a cat"), target="image", k=5).hits == []
    lib.collection.close()
    reopened = Collection.open(config.indexes_dir, "c1")
    assert reopened.rebuilt == []  # files on disk agreed with SQLite
    assert reopened.get(cat.id) is None and reopened.counts()["image"] == 0
    assert_consistent(reopened)


def test_bad_files_are_reported_and_the_good_one_indexed(lib: Library, tmp_path: Path) -> None:
    cfg = load_config(indexes_dir=tmp_path / "indexes", max_audio_seconds=10)
    rep = index_paths(lib.collection, lib.encoders, [DATA / "bad"], cfg)
    assert [Path(p).name for p in (lib.collection.get(i).path for i in rep.added)] == ["good_coffee.jpg"]
    reasons = {Path(p.path).name: p.reason for p in rep.problems}
    assert set(reasons) == {"bomb.png", "empty.png", "long_tone.wav", "notes_not_image.jpg", "truncated.jpg"}
    assert "is empty (0 bytes)" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "limit is 10 s" in reasons["long_tone.wav"]
    assert "looks like a text file" in reasons["notes_not_image.jpg"]
    assert "Mpx" in reasons["bomb.png"] or "bomb" in reasons["bomb.png"]
    assert_consistent(lib.collection)


def test_faiss_files_that_disagree_are_rebuilt(lib: Library, config: Config) -> None:
    index_paths(lib.collection, lib.encoders, [DATA / "texts"], config)
    lib.collection.close()
    faiss_dir = lib.collection.root / "faiss"
    (faiss_dir / "text.content.text.faiss").write_bytes(b"garbage")  # a torn write
    c = Collection.open(config.indexes_dir, "c1")
    assert ("text", "content", "text") in c.rebuilt
    assert_consistent(c)
    recipe = next(it for it in c.items() if it.path.endswith("recipe_note.txt"))
    scores, ids = c.search(("text", "content", "text"), c.vectors_of(recipe.id)[("text", "content")][None, :], 1)
    assert int(ids[0, 0]) == recipe.id


def test_incompatible_preset_is_refused_with_the_way_out(lib: Library, config: Config) -> None:
    manifest = lib.encoders.manifest()
    manifest["encoders"]["minilm-text"] = dict(manifest["encoders"]["minilm-text"], model_id="other/model", dim=512)
    with pytest.raises(UserError, match=r"uses different encoders.*--preset offline.*rebuild: delete"):
        lib.collection.check_compatible(manifest)


def test_unknown_collection_lists_the_known_ones(lib: Library, config: Config) -> None:
    with pytest.raises(UserError, match=r"Unknown collection 'nope'.*Available: c1"):
        Collection.open(config.indexes_dir, "nope")
    with pytest.raises(UserError, match="Invalid collection name"):
        Collection.open(config.indexes_dir, "../etc")


def _make_notes(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    words = "apple river mountain guitar engine violin desert harbour lantern meadow".split()
    for i in range(n):
        (folder / f"note{i:04d}.txt").write_text(f"note {i}: {words[i % 10]} {words[(i * 7) % 10]} number {i}")


@pytest.mark.parametrize("target", [16, 56])
def test_kill_9_mid_indexing_leaves_a_consistent_collection(tmp_path: Path, target: int) -> None:
    kill_trial(tmp_path, target)


@pytest.mark.slow
def test_kill_9_at_twenty_random_moments(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        kill_trial(tmp_path / f"t{trial}", int(rng.integers(1, 380)))


# The CLI in a real process with fake encoders that take 20 ms per batch (so there is time to kill it).
INDEXER = """
import sys, time
from crossmodal_demo.cli.main import main
from tests.fakes import FakeText, fake_overrides
class Slow(FakeText):
    def encode(self, batch):
        time.sleep(0.02)
        return super().encode(batch)
encoders = fake_overrides()
encoders["minilm-text"] = Slow()
sys.exit(main(sys.argv[1:], encoders=encoders))
"""


def kill_trial(tmp_path: Path, target: int, extra: tuple[str, ...] = ()) -> None:
    """Index 400 notes in a subprocess (``index`` arguments ``extra`` added), SIGKILL it once ``target`` items
    are committed, then check."""
    notes = tmp_path / "notes"
    _make_notes(notes, 400)
    env = dict(os.environ, CROSSMODAL_INDEXES=str(tmp_path / "ix"), CROSSMODAL_BATCH_SIZE="8")
    log = tmp_path / "indexer.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", INDEXER, "index", str(notes), "--collection", "k", *extra],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    db = tmp_path / "ix" / "k" / "items.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            n = sqlite3.connect(db, timeout=1).execute("SELECT COUNT(*) FROM items").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= target:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"indexer finished before it could be killed: {log.read_text()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    coll = Collection.open(tmp_path / "ix", "k")
    committed = coll.counts()["total"]
    assert committed >= target
    assert_consistent(coll)
    # every committed item is searchable: each one is among the best matches of its own vector
    for it in coll.items()[:: max(1, committed // 10)]:
        vec = coll.vectors_of(it.id)[("text", "content")]
        scores, ids = coll.search(("text", "content", "text"), vec[None, :], 3)
        assert it.id in ids[0][scores[0] >= scores[0, 0] - 1e-6]  # (fake vectors of two notes may coincide)
    # and indexing resumes without duplicates
    cfg = load_config(indexes_dir=tmp_path / "ix")
    coll.close()
    lib = open_library(cfg, "k", overrides=fake_overrides())
    rep = index_paths(lib.collection, lib.encoders, [notes], cfg)
    assert len(rep.added) == 400 - committed and lib.collection.counts()["total"] == 400
    assert_consistent(lib.collection)


def test_large_partitions_switch_to_ivf_and_agree_with_exact_search(tmp_path: Path) -> None:
    """Index choice by size: below the threshold Flat, above it IVF; IVF top-10 ≈ exact top-10."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 32)).astype(np.float32)
    vecs = centers[rng.integers(0, 50, 6000)] + 0.3 * rng.standard_normal((6000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    manifest = {"preset": "synthetic", "encoders": {}, "spaces": {"s": 32}}
    coll = Collection.create(tmp_path, "ann", manifest, IndexPolicy(ivf_min_items=5000, nprobe=16))

    def add(lo: int, hi: int) -> None:
        coll.add([NewItem(f"/x/{i}", "/x", "image", f"{i:064x}", 1, vectors={("s", "content"): vecs[i]}) for i in range(lo, hi)])
        coll.flush()

    add(0, 4000)
    assert coll.index_kinds() == {"s.content.image": "flat"}
    add(4000, 6000)
    assert coll.index_kinds() == {"s.content.image": "ivf"}
    assert_consistent(coll)
    q = vecs[:50] + 0.05 * rng.standard_normal((50, 32)).astype(np.float32)
    _, got = coll.search(("s", "content", "image"), q, 10)
    exact = np.argsort(-(q @ vecs.T), axis=1)[:, :10] + 1  # item ids start at 1
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.95
    # removal works on IVF, and a reopened collection keeps the IVF index and its ids
    coll.remove(range(1, 101))
    coll.close()
    again = Collection.open(tmp_path, "ann", IndexPolicy(ivf_min_items=5000, nprobe=16))
    assert again.rebuilt == [] and again.index_kinds() == {"s.content.image": "ivf"}
    assert again.index_ids(("s", "content", "image")).tolist() == list(range(101, 6001))
    # an explicit policy overrides the size rule
    flat = Collection.open(tmp_path, "ann", IndexPolicy(kind="flat"))
    assert flat.index_kinds() == {"s.content.image": "flat"} and flat.rebuilt


# ---------------------------------------------------------------------------- store robustness (issue 11)
def synthetic(root: Path, n: int = 40, dim: int = 8, name: str = "syn") -> Collection:
    """A collection of ``n`` items alternating text / image, one content vector each (space 's')."""
    rng = np.random.default_rng(1)
    coll = Collection.create(root, name, {"preset": "synthetic", "encoders": {}, "spaces": {"s": dim}})
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    coll.add([NewItem(f"/x/{i}", "/x", ("text", "image")[i % 2], f"{i:064x}", 1, vectors={("s", "content"): vecs[i]})
              for i in range(n)])
    coll.flush()
    return coll


def test_remove_rewrites_only_the_partitions_it_changes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = synthetic(tmp_path)
    files = {k: coll.root / "faiss" / (".".join(k) + ".faiss") for k in coll.index_keys()}
    before = {k: p.stat().st_ino for k, p in files.items()}
    written: list[Path] = []
    real = store.atomic_write_bytes
    monkeypatch.setattr(store, "atomic_write_bytes", lambda p, d: (written.append(p), real(p, d)))
    texts = [it.id for it in coll.items("text")][:3]
    assert coll.remove(texts + [10**9]) == texts
    text_key, image_key = ("s", "content", "text"), ("s", "content", "image")
    assert written == [files[text_key]]  # one write, of the one partition that held them
    assert files[image_key].stat().st_ino == before[image_key]
    assert_consistent(coll)
    coll.close()
    assert Collection.open(tmp_path, "syn").rebuilt == []


def test_vectors_of_many_items_are_read_at_once(tmp_path: Path) -> None:
    coll = synthetic(tmp_path)
    got = coll.vectors_for([3, 4, 99], "s", "content")
    assert sorted(got) == [3, 4]
    assert all(np.array_equal(got[i], coll.vectors_of(i)[("s", "content")]) for i in (3, 4))


def test_searches_neither_wait_for_a_write_nor_see_it_half_done(tmp_path: Path) -> None:
    """A writer stalls inside its transaction (item row inserted, vectors not yet): reads and searches of
    other threads finish at once and see the collection as it was; after the commit they see the item."""
    coll = synthetic(tmp_path)
    inside, go_on = threading.Event(), threading.Event()

    class StallingVectors(dict):
        def items(self):  # called by add() after the item's row is inserted, inside the transaction
            inside.set()
            go_on.wait(20)
            return super().items()

    q = np.ones((1, 8), np.float32)
    new = NewItem("/x/new", "/x", "text", "f" * 64, 1, vectors=StallingVectors({("s", "content"): q[0]}))
    writer = threading.Thread(target=coll.add, args=([new],))
    writer.start()
    try:
        assert inside.wait(20)
        t0 = time.monotonic()
        scores, ids = coll.search(("s", "content", "text"), q, 50)
        found = coll.get_many(int(i) for i in ids[0])
        counts = coll.counts()
        assert time.monotonic() - t0 < 2.0, "a read waited for the writer"
        assert counts["total"] == 40 and coll.find_by_path("/x/new") == [] and len(found) == 20
    finally:
        go_on.set()
        writer.join(20)
    new_id = coll.find_by_path("/x/new")[0].id
    assert int(coll.search(("s", "content", "text"), q, 1)[1][0, 0]) == new_id
    assert_consistent(coll)


def _ro_bind_mount(src: Path, dst: Path) -> bool:
    """Bind-mount ``src`` read-only at ``dst``; False where the sandbox does not allow mounting."""
    dst.mkdir()
    ok = subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(dst)], capture_output=True).returncode == 0
    if ok and os.access(dst, os.W_OK):  # an old kernel ignoring "ro" on the first bind
        subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True)
    return ok and not os.access(dst, os.W_OK)


def check_read_only(indexes: Path, read_only: bool | None) -> None:
    coll = Collection.open(indexes, "syn", read_only=read_only)
    try:
        assert coll.read_only
        assert coll.counts()["total"] == 40
        q = coll.vectors_of(5)[("s", "content")][None, :]
        assert int(coll.search(("s", "content", "text"), q, 1)[1][0, 0]) == 5  # odd ids are texts
        for write in (lambda: coll.remove([5]), lambda: coll.add([NewItem("/x/n", "/x", "text", "e" * 64, 1)])):
            with pytest.raises(FatalError, match="read-only.*listing and searching work"):
                write()
        assert coll.get(5) is not None
    finally:
        coll.close()


def test_read_only_mount_opens_read_only(tmp_path: Path) -> None:
    """A collection on a read-only filesystem lists and searches; writes stop with one line; nothing changes."""
    synthetic(tmp_path / "src").close()
    (tmp_path / "src" / "syn" / "faiss" / "s.content.text.faiss").unlink()  # must be rebuilt in memory only
    ro = tmp_path / "ro"
    if not _ro_bind_mount(tmp_path / "src", ro):
        pytest.skip("no read-only bind mount here (the read_only=True path is tested below)")
    try:
        check_read_only(ro, None)
        assert not (tmp_path / "src" / "syn" / "faiss" / "s.content.text.faiss").exists()
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True)  # lazy: never leave a mount behind


def test_explicit_read_only_opens_without_writing(tmp_path: Path) -> None:
    synthetic(tmp_path).close()
    (tmp_path / "syn" / "faiss" / "s.content.text.faiss").unlink()

    def files() -> list:  # SQLite's -wal/-shm side files may appear for a mode=ro reader; the data may not change
        return sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "syn").rglob("*") if p.suffix[-4:] not in ("-wal", "-shm"))

    before = files()
    check_read_only(tmp_path, True)
    assert files() == before


def test_database_damaged_in_the_middle_is_refused_with_advice(tmp_path: Path) -> None:
    synthetic(tmp_path, n=400, dim=64).close()
    db = tmp_path / "syn" / "items.sqlite"
    page = 4096
    pages = db.stat().st_size // page
    assert pages > 20
    with open(db, "r+b") as fh:  # three whole pages of garbage halfway through: torn sectors, a bad disk
        fh.seek(page * (pages // 2))
        fh.write(np.random.default_rng(0).integers(0, 256, 3 * page, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match=r"is damaged.*integrity check.*Move it aside.*index the files again") as err:
        Collection.open(tmp_path, "syn")
    assert "\n" not in str(err.value)


def test_large_database_opens_without_reading_it_all_and_damage_is_reported_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossmodal_demo.index import sqlite_db

    synthetic(tmp_path, n=400, dim=64).close()
    db = tmp_path / "syn" / "items.sqlite"
    pages = db.stat().st_size // 4096
    with open(db, "r+b") as fh:  # garbage over the second half: item rows, vectors, index pages
        fh.seek(4096 * (pages // 2))
        fh.write(np.random.default_rng(0).integers(0, 256, 4096 * (pages - pages // 2), dtype=np.uint8).tobytes())
    conn = sqlite3.connect(db)
    size = db.stat().st_size
    assert sqlite_db.quick_check(conn, size)  # small (under 256 MB): every page read, the damage found
    monkeypatch.setattr(sqlite_db, "FULL_CHECK_MAX_BYTES", size - 1)
    assert sqlite_db.quick_check(conn, size) is None  # large: the schema only (minutes saved on a 4 GB file)
    conn.close()
    with pytest.raises(UserError, match=r"is damaged.*Move it aside") as err:  # found by the first read that meets it
        Collection.open(tmp_path, "syn").items()
    assert "\n" not in str(err.value)


def test_full_disk_while_adding_is_one_fatal_line_and_keeps_what_was_committed(tmp_path: Path) -> None:
    coll = synthetic(tmp_path)
    pages = coll._db.execute("PRAGMA page_count").fetchone()[0]
    coll._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    big = [NewItem(f"/x/b{i}", "/x", "text", f"b{i:063x}", 1, vectors={("s", "content"): np.ones(8, np.float32)},
                   note="x" * 4000) for i in range(20)]
    with pytest.raises(FatalError, match=r"^Cannot write collection 'syn'.*disk is full.*re-run") as err:
        coll.add(big)
    assert "\n" not in str(err.value)
    assert coll.counts()["total"] == 40 and coll.find_by_path("/x/b0") == []
    assert_consistent(coll)


def test_full_disk_while_writing_an_index_is_one_fatal_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = synthetic(tmp_path)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store, "atomic_write_bytes", full)
    with pytest.raises(FatalError, match="disk is full"):
        coll.remove([1])
    monkeypatch.undo()
    # as if the process stopped here: SQLite committed the removal, the stale index file is rebuilt from it
    again = Collection.open(tmp_path, "syn")
    assert again.get(1) is None and ("s", "content", "text") in again.rebuilt
    assert_consistent(again)
    again.close()
    coll.close()  # the still-dirty partition is written now that there is room
    assert Collection.open(tmp_path, "syn").rebuilt == []
