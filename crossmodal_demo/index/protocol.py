"""The store interface every collection backend offers, and the one place that picks a backend.

Two stores implement :class:`Store`: the default SQLite + FAISS :class:`~crossmodal_demo.index.store.Collection`
(one machine) and :class:`~crossmodal_demo.index.milvus.MilvusCollection` (Milvus Lite, a server or a
cluster). The choice is made when a collection is created (``Config.store`` / ``--store``) and
remembered in its ``manifest.json`` (``"store"``), so opening never needs to be told again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.index.faiss_index import policy_for
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.milvus import MilvusCollection
from crossmodal_demo.index.milvus_conn import is_lite
from crossmodal_demo.index.milvus_registry import registered
from crossmodal_demo.index.schema import IndexKey, Item, NewItem, atomic_write_bytes, check_name
from crossmodal_demo.index.schema import collection_names as local_collection_names
from crossmodal_demo.index.store import Collection

log = logging.getLogger(__name__)
ADOPT_EVERY_S = 5.0  # how stale another replica's new collection may be in this process's lists
_adopted_at: dict[tuple[str, str], float] = {}  # (indexes folder, URI) → when its registry was last read
_adopt_lock = threading.Lock()


class Store(Protocol):
    """What retrieval, analysis, the app and the CLI use of a collection.

    Ids are int64 item ids; vectors are float32, L2-normalised, ``(dim,)`` per (space, channel);
    a partition is ``(space, channel, modality)``, so searching one filters by target modality.
    """

    root: Path  # local folder: manifest.json, and the app's media/ and thumbs/
    name: str
    manifest: dict[str, Any]
    rebuilt: list[IndexKey]

    def add(self, items: list[NewItem]) -> list[int]:
        """Commit items with their vectors; their ids in order, -1 for content already present."""

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Delete items and all their vectors; the ids actually removed."""

    def search(self, key: IndexKey, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product in one partition: (scores float32 (q, k'), ids int64 (q, k')), k' ≤ k, -1 pads."""

    def get(self, item_id: int) -> Item | None:
        """One item, or None."""

    def get_many(self, ids: Iterable[int]) -> dict[int, Item]:
        """Items by id; unknown ids are absent."""

    def find_by_hash(self, sha256: str) -> Item | None:
        """The item with this content hash, or None."""

    def find_by_path(self, path: str) -> list[Item]:
        """Items stored under this absolute path."""

    def items(self, modality: str | None = None) -> list[Item]:
        """Every item (of one modality), oldest first: the iteration the library and evaluation use."""

    def counts(self) -> dict[str, int]:
        """Items per modality and ``total``."""

    def spaces_of(self, item_id: int) -> list[str]:
        """'space/channel' names holding a vector of the item."""

    def vectors_of(self, item_id: int) -> dict[tuple[str, str], np.ndarray]:
        """The item's vectors by (space, channel)."""

    def index_keys(self) -> list[IndexKey]:
        """Partitions holding vectors."""

    def index_ids(self, key: IndexKey) -> np.ndarray:
        """Sorted ids in one partition."""

    def index_size(self, key: IndexKey) -> int:
        """Vectors in one partition (cheap: every search asks)."""

    def index_kinds(self) -> dict[str, str]:
        """'space.channel.modality' → index kind (flat, ivf, ivfsq8, milvus)."""

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        """Raise UserError when ``manifest``'s encoders differ from the stored ones."""

    def flush(self) -> None:
        """Make pending writes durable (derived indexes written)."""

    def close(self) -> None:
        """Flush and release the store."""


def stored_kind(indexes_dir: Path, name: str) -> str | None:
    """The store recorded in collection ``name``'s manifest ('sqlite' when absent), or None when there is none."""
    try:
        return str(json.loads((Path(indexes_dir) / name / "manifest.json").read_text()).get("store") or "sqlite")
    except (OSError, ValueError, AttributeError):
        return None  # missing or unreadable: the SQLite store's open reports the details


def adopt_registered(config: Config, force: bool = False) -> list[str]:
    """With a Milvus *server* URI configured (``config.milvus_uri``): write the local manifest of every collection
    registered on that server that the indexes folder lacks, so it lists and opens like one made here (another
    app replica or machine made it). The registry is read at most every ``ADOPT_EVERY_S`` s unless ``force``.
    Returns the names adopted; an unreachable server is logged and adopts nothing (local collections still work)."""
    uri = config.milvus_uri
    if not uri or is_lite(uri):  # a Lite file serves one process at a time: nothing to share
        return []
    key = (str(Path(config.indexes_dir).resolve()), uri)
    with _adopt_lock:
        if not force and time.monotonic() - _adopted_at.get(key, -ADOPT_EVERY_S) < ADOPT_EVERY_S:
            return []
        _adopted_at[key] = time.monotonic()
        try:
            found = registered(uri)
        except UserError as exc:
            log.warning("could not list the collections on Milvus %s: %s", uri, exc)
            return []
        adopted = []
        for name, manifest in sorted(found.items()):
            try:
                check_name(name)  # a name becomes a folder: the registry is data, not trusted as a path
            except UserError:
                continue
            root = Path(config.indexes_dir) / name
            if (root / "manifest.json").exists():
                continue
            root.mkdir(parents=True, exist_ok=True)
            manifest = {**manifest, "name": name, "store": "milvus", "milvus_uri": uri}  # reached by *this* URI
            atomic_write_bytes(root / "manifest.json", json.dumps(manifest, indent=2).encode())
            adopted.append(name)
        return adopted


def collection_names(config: Config) -> list[str]:
    """Names of the collections this process can open: the indexes folder's, plus those registered on the
    configured Milvus server (:func:`adopt_registered`), sorted."""
    adopt_registered(config)
    return local_collection_names(config.indexes_dir)


def open_collection(config: Config, name: str, read_only: bool | None = None) -> Store:
    """Open existing collection ``name`` with the store its manifest records (``read_only``: SQLite store only;
    Milvus access rights are the server's); one only registered on the configured Milvus server is adopted first."""
    kind = stored_kind(config.indexes_dir, check_name(name))
    if kind is None:
        adopt_registered(config, force=True)
        kind = stored_kind(config.indexes_dir, name)  # (re-read: another thread may have adopted it)
    if kind == "milvus":
        root = Path(config.indexes_dir) / name
        return MilvusCollection(root, json.loads((root / "manifest.json").read_text()), policy_for(config))
    return Collection.open(config.indexes_dir, name, policy_for(config), read_only)


def create_collection(config: Config, name: str, manifest: dict[str, Any]) -> Store:
    """Create collection ``name`` in the configured store (``config.store``, ``config.milvus_uri``), or open
    it if it exists (its recorded store wins) and check its encoders match ``manifest``."""
    kind = stored_kind(config.indexes_dir, check_name(name))
    if kind is None and config.store == "milvus":
        adopt_registered(config, force=True)  # made by another process on this server: open that one
        kind = stored_kind(config.indexes_dir, name)
        if kind is None:
            return MilvusCollection.create(Path(config.indexes_dir) / name, name, manifest, config.milvus_uri, policy_for(config))
    if kind == "milvus":
        coll = open_collection(config, name)
        coll.check_compatible(manifest)
        return coll
    return Collection.create(config.indexes_dir, name, manifest, policy_for(config))


__all__ = ["Store", "adopt_registered", "collection_names", "create_collection", "open_collection", "stored_kind"]
