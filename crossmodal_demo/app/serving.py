"""Which file the app may hand out for an item: only by item id, only from inside the collection.

An item's original is served only when its real path (symlinks resolved) lies inside the
collection's own ``media/`` folder; items indexed in place elsewhere (CLI, folder indexing) are
shown by their preview in ``thumbs/``. Nothing else — the database, the manifest, FAISS files, a
path a client typed — is ever served.

Links for remote clients (a hit's ``url``) name a collection *kind* (``c`` shared, ``w`` a live
workspace), its name and an item id, signed with a per-process secret (HMAC-SHA256): only links the
server issued resolve, a workspace link dies with its workspace, and the file is looked up by id
when the link is opened — the link itself never carries a path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.index.store import Collection, Item

from crossmodal_demo.app.thumbnails import thumbnail

ITEM_ROUTE = "/crossmodal/item"  # GET {ITEM_ROUTE}/{kind}/{name}/{item_id}/{sig}[?size=thumb]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
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


def sign(secret: bytes, kind: str, name: str, item_id: int) -> str:
    """32 hex digits authenticating the link to item ``item_id`` of collection ``kind``/``name``."""
    msg = f"{kind}/{name}/{int(item_id)}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:32]


def item_link(secret: bytes, kind: str, name: str, item_id: int, base_url: str = "") -> str:
    """The signed link to an item's file (``base_url`` + :data:`ITEM_ROUTE`/kind/name/id/sig)."""
    return f"{base_url.rstrip('/')}{ITEM_ROUTE}/{kind}/{name}/{int(item_id)}/{sign(secret, kind, name, item_id)}"


def check_link(secret: bytes, kind: str, name: str, item_id: str, sig: str) -> int | None:
    """The item id of a link the server issued, or None for anything forged or malformed."""
    if kind not in ("c", "w") or not _NAME.fullmatch(name or "") or not str(item_id).isdigit() or len(str(item_id)) > 18:
        return None
    return int(item_id) if hmac.compare_digest(sign(secret, kind, name, int(item_id)), str(sig)[:64]) else None


def blocked_paths(collection_root: Path) -> list[str]:
    """Paths of a collection Gradio must refuse to serve whatever happens (second line of defence)."""
    return [str(collection_root / n) for n in NEVER_SERVED]


__all__ = ["ITEM_ROUTE", "NEVER_SERVED", "blocked_paths", "check_link", "item_file", "item_link", "original_file", "preview_file", "sign"]
