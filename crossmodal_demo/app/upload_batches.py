"""Upload batches are recorded before any file is written, so an interrupted upload is cleaned up at start.

``<collection>/uploads/<batch>.json`` says ``pending`` while files are copied and indexed, then
``done``. At start, a batch still ``pending`` (the process was killed) is recovered: the items it
already committed are kept, every other file in its folder is deleted (so no unindexed file stays
in ``media/``), and the record says ``recovered`` with what was kept and removed (Status shows it).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal_demo.index.store import Collection, atomic_write_bytes
from crossmodal_demo.ingest.uploads import prune


@dataclass
class Batch:
    """One upload: the folder its files go to and the record that tracks it."""

    folder: Path
    record: Path

    def write(self, state: str, **extra: Any) -> None:
        """Record ``state`` (pending | done | recovered) atomically."""
        doc = {"state": state, "folder": self.folder.name, "updated_at": time.time(), **extra}
        atomic_write_bytes(self.record, json.dumps(doc).encode())


def begin(coll: Collection) -> Batch:
    """A new batch folder under ``media/`` with a ``pending`` record written first."""
    bid = f"upload-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    batch = Batch(coll.root / "media" / bid, coll.root / "uploads" / f"{bid}.json")
    batch.write("pending")
    batch.folder.mkdir(parents=True)
    return batch


def finish(coll: Collection, batch: Batch) -> int:
    """Delete files of the batch that did not become items; record ``done``. Returns files removed."""
    removed = _prune_batch(coll, batch.folder)
    batch.write("done", removed=removed)
    return removed


def _prune_batch(coll: Collection, folder: Path) -> int:
    keep = {str(Path(it.path).resolve()) for it in coll.items() if Path(it.path).resolve().is_relative_to(folder.resolve())} if folder.exists() else set()
    before = sum(1 for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    prune(folder, keep)
    after = sum(1 for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    return before - after


def recover(coll: Collection) -> list[dict[str, Any]]:
    """Clean up every batch still ``pending`` (killed mid-upload); returns one summary per batch."""
    out = []
    records = coll.root / "uploads"
    for rec in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            doc = json.loads(rec.read_text())
        except (OSError, ValueError):
            doc = {"state": "pending", "folder": rec.stem}
        if doc.get("state") != "pending":
            continue
        folder = coll.root / "media" / Path(str(doc.get("folder") or rec.stem)).name
        removed = _prune_batch(coll, folder)
        kept = sum(1 for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
        Batch(folder, rec).write("recovered", removed=removed, kept=kept)
        out.append({"collection": coll.name, "batch": folder.name, "removed": removed, "kept": kept})
    return out


__all__ = ["Batch", "begin", "finish", "recover"]
