"""The lock-free read side of a collection: items from pooled SQLite readers, searches on FAISS snapshots.

Mixed into :class:`crossmodal_demo.index.store.Collection`, which owns the connections (``_readers``),
the partition snapshots (``_parts``) and the writes. Nothing here takes the write lock: SQLite readers
see committed data only (WAL) and each search runs on the immutable snapshot current when it starts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Iterable

import numpy as np

from crossmodal_demo.index import faiss_index as ann
from crossmodal_demo.index import sqlite_db as sq
from crossmodal_demo.index.partitions import Partition
from crossmodal_demo.index.schema import IndexKey, Item


class CollectionReads:
    """Reads of a collection; the owner sets ``_readers``, ``_parts``, ``policy``, ``manifest``, ``_faiss``,
    ``_use_gpu``, ``_gpu_copies`` and ``_gpu_guard``."""

    _readers: sq.ReaderPool
    _parts: dict[IndexKey, Partition]
    policy: ann.IndexPolicy
    manifest: dict[str, Any]
    _faiss: Any
    _use_gpu: bool
    _gpu_copies: dict[IndexKey, tuple[Any, Any]]
    _gpu_guard: threading.Lock

    def _dim(self, space: str) -> int:
        return int(self.manifest["spaces"][space])

    def _stored_keys(self) -> list[IndexKey]:
        rows = self._query(
            "SELECT DISTINCT v.space, v.channel, i.modality FROM vectors v JOIN items i ON i.id = v.item_id"
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def _ids_for(self, key: IndexKey) -> np.ndarray:
        rows = self._query(
            "SELECT v.item_id FROM vectors v JOIN items i ON i.id = v.item_id "
            "WHERE v.space=? AND v.channel=? AND i.modality=? ORDER BY v.item_id",
            key,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _row_to_item(self, r: sqlite3.Row) -> Item:
        d = {k: r[k] for k in r.keys()}
        d["labels"] = json.loads(d["labels"]) if d.get("labels") else None
        return Item(**d)

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run a read on a pooled reader connection: it sees committed data only (WAL), so it never waits
        for a writer's transaction nor sees half of one."""
        with self._readers.reader() as db:
            return db.execute(sql, params).fetchall()

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

    def vectors_for(self, ids: Iterable[int], space: str, channel: str) -> dict[int, np.ndarray]:
        """Stored vectors of many items in one (space, channel), ``{id: float32 (dim,)}``, in one read per 500 ids."""
        ids = [int(i) for i in ids]
        out: dict[int, np.ndarray] = {}
        for s in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[s : s + 500]
            rows = self._query(f"SELECT item_id, vec FROM vectors WHERE space=? AND channel=? AND item_id IN "
                               f"({','.join('?' * len(chunk))})", (space, channel, *chunk))
            out.update({int(i): np.frombuffer(v, dtype=np.float32).copy() for i, v in rows})
        return out

    def index_kinds(self) -> dict[str, str]:
        """'space.channel.modality' → 'flat' | 'ivf' | 'ivfsq8' (for status and tests)."""
        return {".".join(k): p.kind for k, p in self._parts.items()}

    def index_keys(self) -> list[IndexKey]:
        """The (space, channel, modality) partitions that currently hold vectors."""
        return sorted(k for k, p in self._parts.items() if p.ntotal > 0)

    def index_ids(self, key: IndexKey) -> np.ndarray:
        """Sorted ids held by one FAISS partition (for consistency checks)."""
        part = self._parts.get(key)
        return part.ids() if part is not None else np.zeros(0, dtype=np.int64)

    def index_size(self, key: IndexKey) -> int:
        """Vectors in one partition, without listing them (every search asks: O(1), not O(n) like ``index_ids``)."""
        part = self._parts.get(key)
        return part.ntotal if part is not None else 0

    def search(self, key: IndexKey, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search in one partition: (scores float32 (q, k'), ids int64 (q, k')), k' ≤ k.

        Lock-free: runs on the partition's current snapshot while writers prepare the next one.
        """
        part = self._parts.get(key)
        if part is None or part.ntotal == 0:
            q = len(queries)
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        fetch = self._vector_fetch(key[0], key[1])  # compressed kinds re-rank candidates exactly from SQLite
        return part.search(queries, k, self.policy, fetch, self._gpu_copy(key, part))

    def _vector_fetch(self, space: str, channel: str) -> ann.FetchFn:
        def fetch(ids: np.ndarray) -> np.ndarray:
            with self._readers.reader() as db:
                return ann.sqlite_fetch(db, space, channel, self._dim(space))(ids)

        return fetch

    def _gpu_copy(self, key: IndexKey, part: Partition) -> Any:
        """A GPU clone of the partition's base when faiss has GPU support (made once per base), else None."""
        if not self._use_gpu or part.base is None:
            return None
        with self._gpu_guard:
            cached = self._gpu_copies.get(key)
            if cached is None or cached[0] is not part.base:
                cached = (part.base, ann.index_to_gpu(self._faiss, part.base))
                self._gpu_copies[key] = cached
            return cached[1]

