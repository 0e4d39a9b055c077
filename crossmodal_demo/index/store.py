"""Collections on disk: SQLite is the truth, FAISS indexes are a derived, rebuildable cache.

Layout of ``<indexes_dir>/<name>/``::

    manifest.json          schema version, preset, encoders, spaces (written atomically)
    items.sqlite           items + their vectors per (space, channel); WAL, synchronous=FULL
    faiss/<space>.<channel>.<modality>.faiss   one exact inner-product index per partition

A *channel* is what a vector was computed from: ``content`` (the item itself) or ``caption``.
Indexes are partitioned by target modality so ``--target`` filters exactly, with no over-fetching.
An item and all its vectors are written in one SQLite transaction, so a crash never leaves half an
item; index files are written to a temp file, fsynced and ``os.replace``d, and an index whose ids
disagree with SQLite is rebuilt from SQLite when the collection opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from crossmodal_demo.errors import UserError
from crossmodal_demo.index import faiss_index as ann
from crossmodal_demo.index.schema import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    IndexKey,
    Item,
    NewItem,
    atomic_write_bytes,
    check_name,
    collection_names,
)

class Collection:
    """A persistent, thread-safe collection. Use :meth:`open` or :meth:`create`, not the constructor."""

    def __init__(self, root: Path, manifest: dict[str, Any], policy: ann.IndexPolicy | None = None) -> None:
        import faiss  # lazy: heavy native library, loaded when a collection opens

        self._faiss = faiss
        self.policy = policy or ann.IndexPolicy()
        self.root = root
        self.name = root.name
        self.manifest = manifest
        self._lock = threading.RLock()
        self._db = sqlite3.connect(root / "items.sqlite", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._indexes: dict[IndexKey, Any] = {}
        self._dirty: set[IndexKey] = set()
        # GPU search copies (faiss-gpu with a GPU only); the CPU index stays the one written to disk.
        self._use_gpu = self.policy.gpu and ann.faiss_has_gpu(faiss)
        self._gpu_copies: dict[IndexKey, Any] = {}
        self.rebuilt: list[IndexKey] = []  # which indexes had to be rebuilt at open (for tests / status)
        self._load_indexes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls, indexes_dir: Path, name: str, manifest: dict[str, Any], policy: ann.IndexPolicy | None = None
    ) -> "Collection":
        """Create collection ``name`` with ``manifest`` (preset, encoders, spaces), or open it if compatible."""
        root = Path(indexes_dir) / check_name(name)
        if (root / "manifest.json").is_file():
            coll = cls.open(indexes_dir, name, policy)
            coll.check_compatible(manifest)
            return coll
        root.mkdir(parents=True, exist_ok=True)
        full = {"schema_version": SCHEMA_VERSION, "name": name, "created_at": time.time(), **manifest}
        atomic_write_bytes(root / "manifest.json", json.dumps(full, indent=2).encode())
        return cls(root, full, policy)

    @classmethod
    def open(cls, indexes_dir: Path, name: str, policy: ann.IndexPolicy | None = None) -> "Collection":
        """Open an existing collection; unknown names fail listing the available ones."""
        root = Path(indexes_dir) / check_name(name)
        mf = root / "manifest.json"
        if not mf.is_file():
            known = collection_names(Path(indexes_dir))
            hint = f"Available: {', '.join(known)}." if known else "There are no collections there yet."
            raise UserError(
                f"Unknown collection {name!r} in {Path(indexes_dir)}. {hint} "
                "Create one with: python -m crossmodal_demo index PATH --collection NAME"
            )
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"Collection {name!r}: manifest.json is unreadable ({exc}).") from None
        version = manifest.get("schema_version")
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            raise UserError(
                f"Collection {name!r} has schema version {version}; this version of crossmodal_demo reads "
                f"{SCHEMA_VERSION}. Rebuild it: delete {root} and index the files again."
            )
        return cls(root, manifest, policy)

    def _migrate(self) -> None:
        """Upgrade an older collection in place (schema ``MIGRATIONS``), then record the new version."""
        version = int(self.manifest.get("schema_version", SCHEMA_VERSION))
        steps = [sql for v, sql in MIGRATIONS if v > version]
        if not steps:
            return
        for sql in steps:
            self._db.executescript(sql)
        self.manifest = {**self.manifest, "schema_version": SCHEMA_VERSION}
        atomic_write_bytes(self.root / "manifest.json", json.dumps(self.manifest, indent=2).encode())

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        """Refuse to mix encoders: the requested preset must write the same models and dims as the stored one."""
        mine = {n: (e["space"], e["dim"], e["model_id"]) for n, e in self.manifest.get("encoders", {}).items()}
        theirs = {n: (e["space"], e["dim"], e["model_id"]) for n, e in manifest.get("encoders", {}).items()}
        if mine != theirs:
            diff = [
                f"{n}: {mine[n][2] if n in mine else '—'} ({mine[n][1] if n in mine else '—'}-d) here, "
                f"{theirs[n][2] if n in theirs else '—'} ({theirs[n][1] if n in theirs else '—'}-d) requested"
                for n in sorted(set(mine) | set(theirs))
                if mine.get(n) != theirs.get(n)
            ]
            raise UserError(
                f"Collection {self.name!r} was built with preset {self.manifest.get('preset')!r}; preset "
                f"{manifest.get('preset')!r} uses different encoders ({'; '.join(diff)}). Vectors of different "
                f"models cannot share a space. Use --preset {self.manifest.get('preset')} with the same models "
                f"(CROSSMODAL_CLIP_* / CROSSMODAL_CLAP_MODEL settings), or index into a new collection "
                f"(--collection NEW), or rebuild: delete {self.root} and index again."
            )

    def close(self) -> None:
        """Write dirty indexes and close the database."""
        with self._lock:
            self.flush()
            self._db.close()

    # ------------------------------------------------------------------ FAISS (derived)
    def _index_path(self, key: IndexKey) -> Path:
        return self.root / "faiss" / (".".join(key) + ".faiss")

    def _stored_keys(self) -> list[IndexKey]:
        rows = self._db.execute(
            "SELECT DISTINCT v.space, v.channel, i.modality FROM vectors v JOIN items i ON i.id = v.item_id"
        ).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def _ids_for(self, key: IndexKey) -> np.ndarray:
        rows = self._db.execute(
            "SELECT v.item_id FROM vectors v JOIN items i ON i.id = v.item_id "
            "WHERE v.space=? AND v.channel=? AND i.modality=? ORDER BY v.item_id",
            key,
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _load_indexes(self) -> None:
        """Load each index file; rebuild from SQLite any that is missing, damaged or disagrees on ids."""
        with self._lock:
            self._indexes.clear()
            for key in self._stored_keys():
                ids = self._ids_for(key)
                index = None
                path = self._index_path(key)
                if path.is_file():
                    try:
                        index = ann.tune_loaded(self._faiss.read_index(str(path)), self.policy)
                        if not np.array_equal(ann.ids_of(index), ids) or ann.needs_rebuild(index, self.policy):
                            index = None
                    except RuntimeError:
                        index = None
                if index is None:
                    index = self._rebuild(key)
                    self.rebuilt.append(key)
                    self._touch(key)
                self._indexes[key] = index
            self.flush()

    def _rebuild(self, key: IndexKey) -> Any:
        """A fresh index for one partition from the vectors in SQLite (kind chosen by size)."""
        dim = int(self.manifest["spaces"][key[0]])
        rows = self._db.execute(
            "SELECT v.item_id, v.vec FROM vectors v JOIN items i ON i.id = v.item_id "
            "WHERE v.space=? AND v.channel=? AND i.modality=?",
            key,
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.zeros((len(rows), dim), np.float32)
        for j, r in enumerate(rows):
            vecs[j] = np.frombuffer(r[1], dtype=np.float32)
        return ann.build(vecs, ids, dim, self.policy)

    def _touch(self, key: IndexKey) -> None:
        """Mark a partition changed: to be written at the next flush; its GPU copy is stale."""
        self._dirty.add(key)
        self._gpu_copies.pop(key, None)

    def _search_copy(self, key: IndexKey) -> Any:
        """The index to search: a GPU clone when available, else the CPU index (or None)."""
        ix = self._indexes.get(key)
        if not self._use_gpu or ix is None:
            return ix
        if key not in self._gpu_copies:
            self._gpu_copies[key] = ann.index_to_gpu(self._faiss, ix)
        return self._gpu_copies[key]

    def flush(self) -> None:
        """Write every index changed since the last flush (atomically); switch kinds that outgrew theirs."""
        with self._lock:
            for key in sorted(self._dirty):
                if key in self._indexes and ann.needs_rebuild(self._indexes[key], self.policy):
                    self._indexes[key] = self._rebuild(key)
                    self._gpu_copies.pop(key, None)
                index = self._indexes.get(key)
                path = self._index_path(key)
                if index is None or index.ntotal == 0:
                    path.unlink(missing_ok=True)
                    continue
                data = self._faiss.serialize_index(index).tobytes()
                atomic_write_bytes(path, data)
            self._dirty.clear()

    # ------------------------------------------------------------------ writes
    def add(self, items: list[NewItem]) -> list[int]:
        """Commit ``items`` and their vectors in one transaction; returns their new ids.

        Items whose content hash is already present are skipped (id -1 returned for them).
        """
        if not items:
            return []
        with self._lock:
            ids: list[int] = []
            now = time.time()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for it in items:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO items (path, root, modality, sha256, caption, transcript, size, added_at,"
                        " note, mtime, labels) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (it.path, it.root, it.modality, it.sha256, it.caption, it.transcript, it.size, now, it.note,
                         it.mtime, json.dumps([[n, round(float(p), 4)] for n, p in it.labels]) if it.labels else None),
                    )
                    if cur.rowcount == 0:
                        ids.append(-1)
                        continue
                    item_id = int(cur.lastrowid)  # type: ignore[arg-type]
                    ids.append(item_id)
                    for (space, channel), vec in it.vectors.items():
                        v = np.ascontiguousarray(vec, dtype=np.float32)
                        if v.shape != (int(self.manifest["spaces"][space]),):
                            raise ValueError(f"vector for {space}/{channel} has shape {v.shape}")
                        self._db.execute(
                            "INSERT INTO vectors (item_id, space, channel, vec) VALUES (?,?,?,?)",
                            (item_id, space, channel, v.tobytes()),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # Only after the commit: the in-memory indexes mirror what is durable.
            for it, item_id in zip(items, ids):
                if item_id < 0:
                    continue
                for (space, channel), vec in it.vectors.items():
                    key = (space, channel, it.modality)
                    if key not in self._indexes:
                        self._indexes[key] = ann.new_flat(int(self.manifest["spaces"][space]))
                    self._indexes[key].add_with_ids(
                        np.ascontiguousarray(vec, dtype=np.float32)[None, :], np.array([item_id], dtype=np.int64)
                    )
                    self._touch(key)
            return ids

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Delete items (and their vectors in every space) by id; returns the ids actually removed."""
        wanted = sorted({int(i) for i in ids})
        with self._lock:
            present = [i for i in wanted if self.get(i) is not None]
            if not present:
                return []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM items WHERE id=?", [(i,) for i in present])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            sel = np.array(present, dtype=np.int64)
            for key, index in self._indexes.items():
                if index.remove_ids(sel):
                    self._touch(key)
            self.flush()
            return present

    # ------------------------------------------------------------------ reads
    def _row_to_item(self, r: sqlite3.Row) -> Item:
        d = {k: r[k] for k in r.keys()}
        d["labels"] = json.loads(d["labels"]) if d.get("labels") else None
        return Item(**d)

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run a read under the lock: the connection is shared, and a read must never see another
        thread's uncommitted transaction on it (that would expose half-added items)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def get(self, item_id: int) -> Item | None:
        """The item with ``item_id``, or None."""
        r = next(iter(self._query("SELECT * FROM items WHERE id=?", (int(item_id),))), None)
        return self._row_to_item(r) if r else None

    def get_many(self, ids: Iterable[int]) -> dict[int, Item]:
        """Items by id (missing ids are absent from the result)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(f"SELECT * FROM items WHERE id IN ({marks})", ids)
        return {r["id"]: self._row_to_item(r) for r in rows}

    def find_by_hash(self, sha256: str) -> Item | None:
        """The item with this content hash, or None."""
        r = next(iter(self._query("SELECT * FROM items WHERE sha256=?", (sha256,))), None)
        return self._row_to_item(r) if r else None

    def find_by_path(self, path: str) -> list[Item]:
        """Items whose stored absolute path equals ``path``."""
        rows = self._query("SELECT * FROM items WHERE path=?", (path,))
        return [self._row_to_item(r) for r in rows]

    def items(self, modality: str | None = None) -> list[Item]:
        """All items (optionally of one modality), oldest first."""
        if modality:
            rows = self._query("SELECT * FROM items WHERE modality=? ORDER BY id", (modality,))
        else:
            rows = self._query("SELECT * FROM items ORDER BY id")
        return [self._row_to_item(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of items per modality, plus ``total``."""
        out = {"image": 0, "audio": 0, "text": 0}
        for modality, n in self._query("SELECT modality, COUNT(*) FROM items GROUP BY modality"):
            out[modality] = n
        out["total"] = sum(out.values())
        return out

    def spaces_of(self, item_id: int) -> list[str]:
        """'space/channel' names holding a vector of the item."""
        rows = self._query("SELECT space, channel FROM vectors WHERE item_id=? ORDER BY space, channel", (item_id,))
        return [f"{s}/{c}" for s, c in rows]

    def vectors_of(self, item_id: int) -> dict[tuple[str, str], np.ndarray]:
        """The stored vectors of one item, ``{(space, channel): float32 (dim,)}``."""
        rows = self._query("SELECT space, channel, vec FROM vectors WHERE item_id=?", (item_id,))
        return {(s, c): np.frombuffer(v, dtype=np.float32).copy() for s, c, v in rows}

    def index_kinds(self) -> dict[str, str]:
        """'space.channel.modality' → 'flat' | 'ivf' (for status and tests)."""
        with self._lock:
            return {".".join(k): ann.kind_of(ix) for k, ix in self._indexes.items()}

    def index_keys(self) -> list[IndexKey]:
        """The (space, channel, modality) partitions that currently hold vectors."""
        with self._lock:
            return sorted(k for k, ix in self._indexes.items() if ix.ntotal > 0)

    def index_ids(self, key: IndexKey) -> np.ndarray:
        """Sorted ids held by one FAISS partition (for consistency checks)."""
        with self._lock:
            ix = self._indexes.get(key)
            if ix is None:
                return np.zeros(0, dtype=np.int64)
            return ann.ids_of(ix)

    def search(self, key: IndexKey, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search in one partition: (scores float32 (q, k'), ids int64 (q, k')), k' ≤ k."""
        with self._lock:
            ix = self._search_copy(key)
            if ix is None or ix.ntotal == 0:
                q = len(queries)
                return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
            kk = min(k, ix.ntotal)
            scores, ids = ix.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
            return scores, ids


__all__ = ["Collection", "IndexKey", "Item", "NewItem", "SCHEMA_VERSION", "atomic_write_bytes", "check_name", "collection_names"]
