"""The collection's durable shape: SQLite schema, item records, collection names, atomic file writes."""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.errors import UserError

SCHEMA_VERSION = 2
# Upgrades from an older schema, in order: (version reached, SQL). A collection is migrated on open.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (2, "ALTER TABLE items ADD COLUMN mtime REAL; ALTER TABLE items ADD COLUMN labels TEXT;"),
)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
IndexKey = tuple[str, str, str]  # (space, channel, modality)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    root TEXT NOT NULL,
    modality TEXT NOT NULL CHECK (modality IN ('image', 'audio', 'text')),
    sha256 TEXT NOT NULL UNIQUE,
    caption TEXT,
    transcript TEXT,
    size INTEGER NOT NULL,
    added_at REAL NOT NULL,
    note TEXT,
    mtime REAL,
    labels TEXT
);
CREATE INDEX IF NOT EXISTS items_path ON items(path);
CREATE TABLE IF NOT EXISTS vectors (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    space TEXT NOT NULL,
    channel TEXT NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (item_id, space, channel)
);
"""


@dataclass
class Item:
    """One indexed file. ``path`` is absolute; ``added_at`` and ``mtime`` (the file's, when indexed) are
    Unix time in seconds; ``labels`` are zero-shot tags ``[[name, probability], ...]`` best first (images)."""

    id: int
    path: str
    root: str
    modality: str
    sha256: str
    caption: str | None
    transcript: str | None
    size: int
    added_at: float
    note: str | None
    mtime: float | None = None
    labels: list[list[Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the ``list --json`` item fields)."""
        d = dict(self.__dict__)
        d["added_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.added_at))
        d["relpath"] = os.path.relpath(self.path, self.root) if self.path.startswith(self.root) else self.path
        return d


@dataclass
class NewItem:
    """An item ready to commit: metadata plus its vectors, ``{(space, channel): float32 (dim,)}``."""

    path: str
    root: str
    modality: str
    sha256: str
    size: int
    caption: str | None = None
    transcript: str | None = None
    note: str | None = None
    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    mtime: float | None = None  # the file's modification time (s); lets re-indexing skip unchanged files unread
    labels: list[tuple[str, float]] | None = None  # zero-shot tags, best first


def collection_names(indexes_dir: Path) -> list[str]:
    """Names of the collections under ``indexes_dir`` (folders holding a manifest)."""
    d = Path(indexes_dir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "manifest.json").is_file())


def check_name(name: str) -> str:
    """Validate a collection name (it becomes a folder name)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: "$" would accept a trailing newline
        raise UserError(
            f"Invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit."
        )
    return name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and ``os.replace`` (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
