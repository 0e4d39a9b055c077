"""Which file the app may hand out for an item: only by item id, only from inside the collection.

An item's original is served only when its real path (symlinks resolved) lies inside the
collection's own ``media/`` folder; items indexed in place elsewhere (CLI, folder indexing) are
shown by their preview in ``thumbs/``. Nothing else — the database, the manifest, FAISS files, a
path a client typed — is ever served.
"""

from __future__ import annotations

import os
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.index.store import Collection, Item

from crossmodal_demo.app.thumbnails import thumbnail

NEVER_SERVED = ("items.sqlite", "items.sqlite-wal", "items.sqlite-shm", "manifest.json", "faiss", "uploads")


def _inside(path: str | Path, folder: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real.startswith(base + os.sep)


def original_file(coll: Collection, item: Item) -> Path | None:
    """The item's own file if it is inside the collection's ``media/`` folder and exists, else None."""
    if _inside(item.path, coll.root / "media") and os.path.isfile(item.path):
        return Path(os.path.realpath(item.path))
    return None


def preview_file(coll: Collection, item: Item, config: Config) -> Path | None:
    """The item's cached preview (inside ``thumbs/``), made if needed; None if it cannot be placed there."""
    path = thumbnail(coll, item, config)
    return path if _inside(path, coll.root / "thumbs") else None


def item_file(coll: Collection, item_id: int, config: Config, prefer: str = "original") -> Path | None:
    """File to show for item ``item_id`` of ``coll``: its original (``prefer="original"``) or preview, or None.

    Images fall back to their preview when the original is outside ``media/``; audio and text have no
    fallback (a waveform is not a recording)."""
    item = coll.get(int(item_id))
    if item is None:
        return None
    if prefer == "original":
        found = original_file(coll, item)
        if found is not None or item.modality != "image":
            return found
    return preview_file(coll, item, config)


def blocked_paths(collection_root: Path) -> list[str]:
    """Paths of a collection Gradio must refuse to serve whatever happens (second line of defence)."""
    return [str(collection_root / n) for n in NEVER_SERVED]


__all__ = ["NEVER_SERVED", "blocked_paths", "item_file", "original_file", "preview_file"]
