"""The store interface every collection backend offers, and the one place that picks a backend.

Two stores implement :class:`Store`: the default SQLite + FAISS :class:`~crossmodal_demo.index.store.Collection`
(one machine) and :class:`~crossmodal_demo.index.milvus.MilvusCollection` (Milvus Lite, a server or a
cluster). The choice is made when a collection is created (``Config.store`` / ``--store``) and
remembered in its ``manifest.json`` (``"store"``), so opening never needs to be told again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.index.faiss_index import policy_for
from crossmodal_demo.index.milvus import MilvusCollection
from crossmodal_demo.index.schema import IndexKey, Item, NewItem, check_name
from crossmodal_demo.index.store import Collection


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


def open_collection(config: Config, name: str, read_only: bool | None = None) -> Store:
    """Open existing collection ``name`` with the store its manifest records (``read_only``: SQLite store only;
    Milvus access rights are the server's)."""
    if stored_kind(config.indexes_dir, check_name(name)) == "milvus":
        root = Path(config.indexes_dir) / name
        return MilvusCollection(root, json.loads((root / "manifest.json").read_text()), policy_for(config))
    return Collection.open(config.indexes_dir, name, policy_for(config), read_only)


def create_collection(config: Config, name: str, manifest: dict[str, Any]) -> Store:
    """Create collection ``name`` in the configured store (``config.store``, ``config.milvus_uri``), or open
    it if it exists (its recorded store wins) and check its encoders match ``manifest``."""
    if stored_kind(config.indexes_dir, check_name(name)) is None and config.store == "milvus":
        return MilvusCollection.create(Path(config.indexes_dir) / name, name, manifest, config.milvus_uri, policy_for(config))
    if stored_kind(config.indexes_dir, name) == "milvus":
        coll = open_collection(config, name)
        coll.check_compatible(manifest)
        return coll
    return Collection.create(config.indexes_dir, name, manifest, policy_for(config))


__all__ = ["Store", "create_collection", "open_collection", "stored_kind"]
