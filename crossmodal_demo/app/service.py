"""What the app does, as plain typed functions over a :class:`Visitor`: no Gradio here.

:class:`AppService` holds what is shared by everyone — settings, the open collections (bounded),
the private workspaces (public mode), the demo build — and nothing that belongs to one visitor.
Every method takes the visitor's state, so two browsers never affect each other. The actions
themselves live in :mod:`.search_actions`, :mod:`.library_actions` and :mod:`.lab_actions`.

Modes: **local** (default off Spaces) — each visitor picks, creates and edits collections (per
session); **public** (``--public``, ``CROSSMODAL_PUBLIC=1`` or on Hugging Face Spaces) — shared
collections are read-only and each visitor who uploads gets a private workspace.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crossmodal_demo.app import upload_batches
from crossmodal_demo.app.collections import CollectionRef, OpenCollections
from crossmodal_demo.app.demo_collection import DEMO_NAME, demo_health, ensure_demo_collection, set_aside
from crossmodal_demo.app.visitors import SCOPE_LABELS, SCOPES, Visitor
from crossmodal_demo.app.workspaces import Workspaces
from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.store import check_name, collection_names
from crossmodal_demo.retrieval.library import Library

log = logging.getLogger(__name__)
MY_UPLOADS = "my uploads"  # how a visitor's workspace is named in results and messages


@dataclass
class BuildState:
    """Progress of the background demo build (``state``: idle | building | done | failed)."""

    state: str = "idle"
    done: int = 0
    total: int = 0
    current: str = ""
    error: str | None = None
    reason: str = ""  # why it was (re)built: missing, unfinished, emptied, damaged


class AppService:
    """Shared app state and the visitor-independent parts of every action.

    ``encoder_overrides`` maps encoder names to ready encoders (tests pass fakes).
    """

    def __init__(self, config: Config, encoder_overrides: dict[str, Encoder] | None = None) -> None:
        self.config = config
        self.public = bool(config.public)
        self.default_collection = check_name(config.collection) if config.collection else DEMO_NAME
        self.collections = OpenCollections(config, config.preset, config.max_open_collections, encoder_overrides)
        self.workspaces = Workspaces(config, self.collections)
        self.write_lock = threading.Lock()  # one writer at a time (uploads, deletes, the demo build)
        self.build = BuildState()
        self.recovered: list[dict[str, Any]] = []  # interrupted uploads cleaned up at start
        self.leftover_workspaces = 0
        self.fusion_warm = "idle"
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ start-up
    def start(self, background: bool = True) -> None:
        """Prepare the shared state (no model loads): remove leftover workspaces, clean interrupted
        uploads, and build or heal the demo — in a background thread (``background``) or here."""
        Path(self.config.indexes_dir).mkdir(parents=True, exist_ok=True)
        self.leftover_workspaces = self.workspaces.cleanup_leftovers()
        if self.public:
            self.workspaces.start_sweeper()
        health = demo_health(self.config.indexes_dir) if self.default_collection == DEMO_NAME else "ok"
        if health == "damaged":
            moved = set_aside(self.config.indexes_dir)
            log.warning("the demo collection was damaged; moved it to %s and rebuilding", moved)
        for name in collection_names(self.config.indexes_dir):
            with self.collections.use(self.shared(name)) as lib:
                self.recovered += upload_batches.recover(lib.collection)
        if health != "ok":
            self.build = BuildState(state="building", reason=health)
            self._spawn(self._build_demo, "demo-build", background)
        elif self.default_collection not in collection_names(self.config.indexes_dir):
            with self.collections.use(self.shared(self.default_collection), create=True):
                pass  # --collection NAME that does not exist yet: created empty

    def _spawn(self, fn: Any, name: str, background: bool) -> None:
        if not background:
            fn()
            return
        t = threading.Thread(target=fn, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _build_demo(self) -> None:
        def progress(done: int, total: int, name: str) -> None:
            self.build.done, self.build.total, self.build.current = done, total, name

        with self.write_lock:
            try:
                with self.collections.use(self.shared(DEMO_NAME), create=True) as lib:
                    summary = ensure_demo_collection(lib, progress)
                self.build.state = "done"
                log.info("demo ready with %s items", summary.get("items"))
            except Exception as exc:  # shown in the status line; the app keeps serving
                log.exception("building the demo collection failed")
                self.build.state, self.build.error = "failed", f"{type(exc).__name__}: {exc}"

    def wait_for_demo(self, timeout: float | None = None) -> BuildState:
        """Block until a background demo build ends (or ``timeout`` seconds pass); returns its state."""
        for t in self._threads:
            if t.name == "demo-build":
                t.join(timeout)
        return self.build

    def close(self) -> None:
        """Stop background work, delete workspaces and close every collection."""
        self.wait_for_demo()
        self.workspaces.stop()
        self.collections.close_all()

    # ------------------------------------------------------------------ which collection a visitor works on
    def shared(self, name: str) -> CollectionRef:
        """A shared collection (under the indexes folder) by name."""
        return CollectionRef(Path(self.config.indexes_dir), check_name(name))

    def shared_names(self) -> list[str]:
        """Collections a visitor may see besides their workspace: all (local) or the default one (public)."""
        names = collection_names(self.config.indexes_dir)
        return [n for n in names if n == self.default_collection] if self.public else names

    def active_name(self, visitor: Visitor) -> str:
        """The shared collection this visitor works on."""
        name = visitor.collection or self.default_collection
        return name if name in self.shared_names() or not self.public else self.default_collection

    def read_refs(self, visitor: Visitor) -> list[tuple[str, CollectionRef]]:
        """(label, collection) pairs a search of this visitor covers, in order."""
        if not self.public:
            return [(self.active_name(visitor), self.shared(self.active_name(visitor)))]
        mine = self.workspaces.get(visitor.session)
        refs: list[tuple[str, CollectionRef]] = []
        if visitor.scope in ("demo", "both"):
            refs.append((self.default_collection, self.shared(self.default_collection)))
        if visitor.scope in ("mine", "both") and mine is not None:
            refs.append((MY_UPLOADS, mine))
        if not refs:
            raise UserError("You have not uploaded anything yet, so “my uploads” is empty: add files in the Library tab, or search the demo.")
        return refs

    def browse_ref(self, visitor: Visitor) -> tuple[str, CollectionRef]:
        """The one collection the Library list, the lab and the evaluation work on for this visitor."""
        if self.public and visitor.scope == "mine":
            return self.read_refs(visitor)[0]
        if self.public and visitor.scope == "both" and self.workspaces.get(visitor.session) is not None:
            return MY_UPLOADS, self.workspaces.get(visitor.session)  # type: ignore[return-value]
        return self.read_refs(visitor)[0]

    def write_ref(self, visitor: Visitor, create: bool = True) -> tuple[str, CollectionRef]:
        """Where this visitor's uploads and deletions go: their workspace (public) or their collection (local)."""
        if self.public:
            ref = self.workspaces.ensure(visitor.session) if create else self.workspaces.get(visitor.session)
            if ref is None:
                raise UserError("You have no uploads to change: the demo collection is shared and read-only here.")
            return MY_UPLOADS, ref
        name = self.active_name(visitor)
        return name, self.shared(name)

    @contextmanager
    def library(self, ref: CollectionRef, create: bool = False) -> Iterator[Library]:
        """Lease an open library (see :meth:`OpenCollections.use`)."""
        with self.collections.use(ref, create=create) as lib:
            yield lib

    def set_scope(self, visitor: Visitor, scope: str) -> Visitor:
        """Public mode: search the demo, my uploads, or both."""
        if scope not in SCOPES:
            raise UserError(f"Unknown scope {scope!r}. Choose one of: {', '.join(SCOPES)}.")
        visitor.scope = scope
        return visitor

    # ------------------------------------------------------------------ collections (local mode)
    def _local_only(self, what: str) -> None:
        if self.public:
            raise UserError(f"{what} is not available on this public app: the shared collections are read-only. "
                            "Your uploads go to your private workspace.")

    def create_collection(self, visitor: Visitor, name: str) -> Visitor:
        """Create an empty collection and make it this visitor's active one (local mode)."""
        self._local_only("Creating collections")
        name = check_name((name or "").strip())
        if name in collection_names(self.config.indexes_dir):
            raise UserError(f"Collection {name!r} already exists; pick it in the list to switch to it.")
        with self.write_lock, self.library(self.shared(name), create=True):
            pass
        visitor.collection = name
        return visitor

    def switch_collection(self, visitor: Visitor, name: str) -> Visitor:
        """Make ``name`` this visitor's active collection (local mode; other visitors are not affected)."""
        self._local_only("Switching collections")
        names = collection_names(self.config.indexes_dir)
        if not name or name not in names:
            raise UserError(f"Unknown collection {name!r}. Available: {', '.join(names) or 'none yet'}.")
        visitor.collection = name
        return visitor

    # ------------------------------------------------------------------ status
    def status(self, visitor: Visitor) -> dict[str, Any]:
        """Mode, what this visitor searches, preset and encoders, counts, quotas, demo build, cleanups."""
        try:
            label, ref = self.browse_ref(visitor)
        except UserError:  # public visitor on "my uploads" before uploading: describe the demo
            label, ref = self.default_collection, self.shared(self.default_collection)
        with self.library(ref, create=label == self.default_collection) as lib:
            enc = lib.encoders
            loaded = set(enc.loaded())
            doc: dict[str, Any] = {
                "mode": "public" if self.public else "local",
                "collection": label,
                "scope": visitor.scope if self.public else None,
                "scope_label": SCOPE_LABELS.get(visitor.scope) if self.public else None,
                "collections": self.shared_names(),
                "preset": enc.preset.name,
                "preset_description": enc.preset.description,
                "preset_reason": lib.preset_reason,
                "encoders": [
                    {"name": s.name, "modality": s.modality, "space": s.space, "dim": s.dim, "model_id": s.model_id, "loaded": s.name in loaded}
                    for s in enc.specs
                ],
                "counts": lib.collection.counts(),
            }
        mine = self.workspaces.get(visitor.session) if self.public else None
        if self.public:
            files, nbytes = self.workspaces.usage(mine) if mine else (0, 0)
            doc["workspace"] = {
                "exists": mine is not None, "files": files, "bytes": nbytes,
                "max_files": self.config.workspace_max_files, "max_bytes": self.config.workspace_max_bytes,
                "ttl_seconds": self.config.workspace_ttl, "live_workspaces": self.workspaces.live(),
                "max_workspaces": self.config.max_workspaces,
            }
        doc.update(
            demo_build=asdict(self.build),
            recovered_uploads=self.recovered,
            folder_indexing=bool(self.config.folder_roots) and not self.public,
            fusion_warm=self.fusion_warm,
        )
        return doc


__all__ = ["AppService", "BuildState", "MY_UPLOADS"]
