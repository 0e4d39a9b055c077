"""A collection kept in Milvus (issue 14): the same interface as the SQLite + FAISS ``Collection``.

One ``MilvusClient`` code path for Milvus Lite (a local ``*.db`` path: embedded, one process at a time),
a server (``http://host:19530``: Lite, standalone or a cluster); processes share collections via a server URI.

Layout in Milvus (``P`` = the collection's prefix, stored in its manifest)::

    P__items                     id, sha256, path, modality, added_at, meta (JSON: the other Item fields)
    P__<space>__<channel>        id (= item id), modality, vec FLOAT_VECTOR(dim), inner product

Milvus has no transactions, so the item row is the commit marker: an add writes the vectors first and
the item row last; a remove deletes the item row first. Readers only return items that have a row
(``get_many`` drops the rest), so a crash in between leaves invisible vectors, overwritten (upsert)
when the file is indexed again. Item ids are derived from the content hash (52 bits, exact in
JavaScript too), so processes adding at once need no id counter; a rare clash takes the next free id.

``<indexes>/<name>/`` keeps ``manifest.json`` (``store: milvus``, the URI) and the app's media/ and thumbs/;
the manifest is also registered in the Milvus itself (``milvus_registry``), so other processes find the collection.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from crossmodal_demo.errors import UserError
from crossmodal_demo.index.milvus_conn import connect, disconnect, is_lite, resolve_uri
from crossmodal_demo.index.milvus_registry import register
from crossmodal_demo.index.schema import SCHEMA_VERSION, IndexKey, Item, NewItem, atomic_write_bytes, check_name

CHANNELS = ("content", "caption")
MODALITIES = ("image", "audio", "text")
CHUNK = 500  # ids per filter expression / get call; string literals in filters are json.dumps'd (Milvus parses that)
_META = ("root", "caption", "transcript", "size", "note", "mtime", "labels")


def _prefix(name: str) -> str:
    """A Milvus-safe collection-name prefix for collection ``name`` (letters, digits, '_'; unique per name)."""
    return "cm_" + re.sub(r"[^A-Za-z0-9_]", "_", name) + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]


def _id_for(sha256: str) -> int:
    """The preferred item id of a content hash: its first 52 bits (ids stay exact as JavaScript numbers)."""
    return int(sha256[:13], 16)


class MilvusCollection:
    """A collection whose items and vectors live in Milvus: :meth:`create`, or reopen from its manifest."""

    def __init__(self, root: Path, manifest: dict[str, Any], policy: Any = None) -> None:
        self.root = Path(root)
        self.name = self.root.name
        self.manifest = manifest
        self.policy = policy
        self.rebuilt: list[IndexKey] = []  # nothing is derived locally: never rebuilt
        self.uri = str(manifest["milvus_uri"])
        self._prefix = str(manifest["milvus_prefix"])
        self._lock = threading.RLock()
        self._client = connect(self.uri)
        self._known: set[str] = set()
        self._know(self._client.list_collections())
        self._listed = time.monotonic()
        self._keys: tuple[float, dict[IndexKey, int]] | None = None  # (when, partition sizes) cache
        self._ensure_items()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, root: Path, name: str, manifest: dict[str, Any], uri: str, policy: Any = None) -> "MilvusCollection":
        """A new collection ``name`` (folder ``root``) stored at Milvus ``uri`` ('' → Lite file in ``root``)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        full = {"schema_version": SCHEMA_VERSION, "name": check_name(name), "created_at": time.time(), **manifest,
                "store": "milvus", "milvus_uri": resolve_uri(uri, root), "milvus_prefix": _prefix(name)}
        atomic_write_bytes(root / "manifest.json", json.dumps(full, indent=2).encode())
        coll = cls(root, full, policy)
        register(coll._client, coll.uri, full)  # other processes on this URI find it (milvus_registry)
        return coll

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        """Refuse to mix encoders (same rule and message as the SQLite store)."""
        mine = {n: (e["space"], e["dim"], e["model_id"]) for n, e in self.manifest.get("encoders", {}).items()}
        theirs = {n: (e["space"], e["dim"], e["model_id"]) for n, e in manifest.get("encoders", {}).items()}
        if mine != theirs:
            raise UserError(f"Collection {self.name!r} was built with preset {self.manifest.get('preset')!r}; preset "
                            f"{manifest.get('preset')!r} uses different encoders. Use --preset {self.manifest.get('preset')}, "
                            "or index into a new collection (--collection NEW).")

    def close(self) -> None:
        """Make writes durable and disconnect."""
        with self._lock:
            self.flush()
            disconnect(self._client, self.uri)

    def flush(self) -> None:
        """Seal what was written (Milvus persists every write; this makes it compact and visible to all)."""
        with self._lock:
            for name in sorted(self._known):
                if name.startswith(self._prefix + "__"):
                    self._client.flush(name)

    # ------------------------------------------------------------------ Milvus collections
    def _items_name(self) -> str:
        return f"{self._prefix}__items"

    def _vec_name(self, space: str, channel: str) -> str:
        return f"{self._prefix}__{re.sub(r'[^A-Za-z0-9_]', '_', space)}__{channel}"

    def _index_params(self, field: str) -> Any:
        ip = self._client.prepare_index_params()
        # Lite: exact FLAT (its engine is for small data); servers: AUTOINDEX (Milvus picks an ANN index).
        ip.add_index(field, index_type="FLAT" if is_lite(self.uri) else "AUTOINDEX", metric_type="IP")
        return ip

    def _ensure_items(self) -> None:
        from pymilvus import DataType  # lazy: heavy, optional

        name = self._items_name()
        if name in self._known or self._client.has_collection(name):
            self._know([name])
            return
        s = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("sha256", DataType.VARCHAR, max_length=64)
        s.add_field("path", DataType.VARCHAR, max_length=8192)
        s.add_field("modality", DataType.VARCHAR, max_length=16)
        s.add_field("added_at", DataType.DOUBLE)
        s.add_field("meta", DataType.JSON)
        s.add_field("pad", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field in every collection
        self._client.create_collection(name, schema=s, index_params=self._index_params("pad"))
        self._known.add(name)

    def _ensure_vectors(self, space: str, channel: str) -> str:
        from pymilvus import DataType  # lazy: heavy, optional

        name = self._vec_name(space, channel)
        if name in self._known:
            return name
        if not self._client.has_collection(name):
            s = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("id", DataType.INT64, is_primary=True)
            s.add_field("modality", DataType.VARCHAR, max_length=16)
            s.add_field("vec", DataType.FLOAT_VECTOR, dim=int(self.manifest["spaces"][space]))
            self._client.create_collection(name, schema=s, index_params=self._index_params("vec"))
        self._know([name])
        return name

    def _know(self, names: Iterable[str]) -> None:
        """Remember Milvus collections and load ours: a reopened one starts 'released' (not searchable)."""
        for n in names:
            if n.startswith(self._prefix + "__") and n not in self._known:
                self._client.load_collection(n)
            self._known.add(n)

    def _vector_names(self) -> dict[tuple[str, str], str]:
        """(space, channel) → Milvus collection, for those that exist (another process may have made one:
        the list is re-read when a partition is missing, at most every 2 s)."""
        wanted = {self._vec_name(s, c) for s in self.manifest.get("spaces", {}) for c in CHANNELS}
        if not wanted <= self._known and time.monotonic() - self._listed > 2.0:
            self._know(self._client.list_collections())
            self._listed = time.monotonic()
        out = {}
        for space in self.manifest.get("spaces", {}):
            for channel in CHANNELS:
                if self._vec_name(space, channel) in self._known:
                    out[(space, channel)] = self._vec_name(space, channel)
        return out

    def _rows(self, ids: list[int], fields: list[str], coll: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in range(0, len(ids), CHUNK):
            out.extend(self._client.get(coll or self._items_name(), ids=ids[s : s + CHUNK], output_fields=fields))
        return out

    def _where(self, expr: str, fields: list[str], coll: str | None = None) -> list[dict[str, Any]]:
        """All rows of ``coll`` (default: items) matching filter ``expr`` (paged with an iterator)."""
        it = self._client.query_iterator(coll or self._items_name(), batch_size=2000, filter=expr, output_fields=fields)
        out: list[dict[str, Any]] = []
        try:
            while batch := it.next():
                out.extend(batch)
        finally:
            it.close()
        return out

    @staticmethod
    def _item(r: dict[str, Any]) -> Item:
        meta = r.get("meta") or {}
        return Item(id=int(r["id"]), path=r["path"], modality=r["modality"], sha256=r["sha256"],
                    added_at=float(r["added_at"]), **{k: meta.get(k) for k in _META if k != "size"},
                    size=int(meta.get("size") or 0))

    # ------------------------------------------------------------------ writes
    def add(self, items: list[NewItem]) -> list[int]:
        """Write ``items`` (vectors first, item row last); returns their ids, -1 for content already present."""
        if not items:
            return []
        with self._lock:
            hashes = [it.sha256 for it in items]
            present = {r["sha256"] for s in range(0, len(hashes), CHUNK)
                       for r in self._where(f"sha256 in {json.dumps(hashes[s:s + CHUNK])}", ["sha256"])}
            ids: list[int] = []
            taken: set[int] = set()
            preferred = sorted({_id_for(h) for h in hashes})
            owner = dict.fromkeys(preferred, "") | {int(r["id"]): r["sha256"] for r in self._rows(preferred, ["sha256"])}
            for it in items:
                if it.sha256 in present:
                    ids.append(-1)
                    continue
                present.add(it.sha256)
                ids.append(self._free_id(it.sha256, taken, owner))
            now = time.time()
            per_coll: dict[str, list[dict[str, Any]]] = {}
            for it, item_id in zip(items, ids):
                if item_id < 0:
                    continue
                for (space, channel), vec in it.vectors.items():
                    v = np.ascontiguousarray(vec, dtype=np.float32)
                    if v.shape != (int(self.manifest["spaces"][space]),):
                        raise ValueError(f"vector for {space}/{channel} has shape {v.shape}")
                    per_coll.setdefault(self._ensure_vectors(space, channel), []).append(
                        {"id": item_id, "modality": it.modality, "vec": v.tolist()})
            for coll, rows in per_coll.items():
                self._client.upsert(coll, rows)
            rows = [{"id": item_id, "sha256": it.sha256, "path": it.path, "modality": it.modality, "added_at": now, "pad": [0.0, 0.0],
                     "meta": {**{k: getattr(it, k) for k in _META}, "labels": [[n, round(float(p), 4)] for n, p in it.labels or []] or None}}
                    for it, item_id in zip(items, ids) if item_id >= 0]
            if rows:
                self._client.upsert(self._items_name(), rows)  # the commit marker
            self._keys = None
            return ids

    def _free_id(self, sha256: str, taken: set[int], owner: dict[int, str]) -> int:
        """The hash-derived id, or the next one not used by other content (clashes are rare: 52 bits).
        ``owner``: id → hash of the row holding it ("" when free), as looked up; ``taken``: ids given out in this batch."""
        item_id = _id_for(sha256)
        while True:
            if item_id not in owner:  # "" = free
                owner[item_id] = next((r["sha256"] for r in self._rows([item_id], ["sha256"])), "")
            if item_id not in taken and owner[item_id] in ("", sha256):
                taken.add(item_id)
                return item_id
            item_id += 1

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Delete items and their vectors by id (item row first); returns the ids actually removed."""
        with self._lock:
            present = sorted(self.get_many(ids))
            for coll in [self._items_name(), *self._vector_names().values()] if present else []:
                self._client.delete(coll, ids=present)
            self._keys = None
            return present

    # ------------------------------------------------------------------ reads
    def get(self, item_id: int) -> Item | None:
        """The item with ``item_id``, or None."""
        return self.get_many([item_id]).get(int(item_id))

    def get_many(self, ids: Iterable[int]) -> dict[int, Item]:
        """Items by id (missing ids are absent from the result)."""
        wanted = sorted({int(i) for i in ids})
        with self._lock:
            return {it.id: it for it in map(self._item, self._rows(wanted, ["*"]))} if wanted else {}

    def find_by_hash(self, sha256: str) -> Item | None:
        """The item with this content hash, or None."""
        with self._lock:
            rows = self._where(f"sha256 == {json.dumps(sha256)}", ["*"])
        return self._item(rows[0]) if rows else None

    def find_by_path(self, path: str) -> list[Item]:
        """Items whose stored absolute path equals ``path``."""
        with self._lock:
            return sorted(map(self._item, self._where(f"path == {json.dumps(path)}", ["*"])), key=lambda i: (i.added_at, i.id))

    def items(self, modality: str | None = None) -> list[Item]:
        """All items (optionally of one modality), oldest first."""
        with self._lock:
            rows = self._where(f"modality == {json.dumps(modality)}" if modality else "", ["*"])
        return sorted(map(self._item, rows), key=lambda i: (i.added_at, i.id))

    def counts(self) -> dict[str, int]:
        """Number of items per modality, plus ``total``."""
        out = {}
        with self._lock:
            for m in MODALITIES:
                res = self._client.query(self._items_name(), filter=f"modality == {json.dumps(m)}", output_fields=["count(*)"])
                out[m] = int(res[0]["count(*)"]) if res else 0
        out["total"] = sum(out.values())
        return out

    def vectors_of(self, item_id: int) -> dict[tuple[str, str], np.ndarray]:
        """The stored vectors of one item, ``{(space, channel): float32 (dim,)}``."""
        out = {}
        with self._lock:
            for key, coll in self._vector_names().items():
                rows = self._client.get(coll, ids=[int(item_id)], output_fields=["vec"])
                if rows:
                    out[key] = np.asarray(rows[0]["vec"], dtype=np.float32)
        return out

    def spaces_of(self, item_id: int) -> list[str]:
        """'space/channel' names holding a vector of the item."""
        return sorted(f"{s}/{c}" for s, c in self.vectors_of(item_id))

    def index_ids(self, key: IndexKey) -> np.ndarray:
        """Sorted ids with a vector in partition (space, channel, modality)."""
        coll = self._vector_names().get(key[:2])
        if coll is None:
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            rows = self._where(f"modality == {json.dumps(key[2])}", ["id"], coll)
        return np.array(sorted(int(r["id"]) for r in rows), dtype=np.int64)

    def index_keys(self) -> list[IndexKey]:
        """The (space, channel, modality) partitions that currently hold vectors."""
        return sorted(self._sizes())

    def index_size(self, key: IndexKey) -> int:
        """Vectors in one partition."""
        return self._sizes().get(key, 0)

    def _sizes(self) -> dict[IndexKey, int]:
        """Non-empty partitions → vectors. Every search asks, and a count is a scan in Milvus: the answer
        is kept 2 s (and dropped by this process's own writes)."""
        with self._lock:
            if self._keys is None or time.monotonic() - self._keys[0] >= 2.0:
                sizes = {}
                for (space, channel), coll in self._vector_names().items():
                    for m in MODALITIES:
                        res = self._client.query(coll, filter=f"modality == {json.dumps(m)}", output_fields=["count(*)"])
                        if res and int(res[0]["count(*)"]) > 0:
                            sizes[(space, channel, m)] = int(res[0]["count(*)"])
                self._keys = (time.monotonic(), sizes)
            return dict(self._keys[1])

    def index_kinds(self) -> dict[str, str]:
        """'space.channel.modality' → 'milvus' (the index lives in Milvus)."""
        return {".".join(k): "milvus" for k in self.index_keys()}

    def search(self, key: IndexKey, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search in one partition: (scores float32 (q, k'), ids int64 (q, k')), k' ≤ k."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        coll = self._vector_names().get(key[:2])
        if coll is None:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        with self._lock:
            res = self._client.search(coll, data=q.tolist(), limit=k, filter=f"modality == {json.dumps(key[2])}",
                                      anns_field="vec", search_params={"metric_type": "IP"}, output_fields=[])
        width = max((len(r) for r in res), default=0)
        scores = np.full((len(q), width), -np.inf, np.float32)
        ids = np.full((len(q), width), -1, np.int64)
        for i, hits in enumerate(res):
            for j, h in enumerate(hits):
                scores[i, j], ids[i, j] = float(h["distance"]), int(h["id"])
        return scores, ids


__all__ = ["MilvusCollection"]
