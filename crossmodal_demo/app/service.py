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
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from crossmodal_demo.app import lab_actions, search_actions, upload_batches
from crossmodal_demo.app.jobs import Jobs
from crossmodal_demo.app.collections import CollectionRef, OpenCollections
from crossmodal_demo.app.demo_collection import DEMO_NAME, demo_health, ensure_demo_collection, set_aside
from crossmodal_demo.app.serving import check_link, item_file, item_link
from crossmodal_demo.app.visitors import SCOPE_LABELS, SCOPES, Visitor
from crossmodal_demo.app.workspaces import Workspaces
from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.protocol import collection_names
from crossmodal_demo.index.store import check_name
from crossmodal_demo.ingest.media import Audio
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


@dataclass
class ModelsState:
    """The background model warm-up (``state``: idle = load on first use | loading | ready | failed)."""

    state: str = "idle"
    seconds: float = 0.0
    error: str | None = None


def _tiny_input(modality: str) -> Any:
    """The smallest input an encoder of ``modality`` takes: encoding it loads the model."""
    if modality == "image":
        return Image.new("RGB", (64, 64), (128, 128, 128))
    if modality == "audio":
        return Audio(np.zeros(16000, np.float32), 16000)
    return "warm up"


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
        self.jobs = Jobs()  # long jobs a visitor can stop (indexing, evaluation)
        self.build = BuildState()
        self.recovered: list[dict[str, Any]] = []  # interrupted uploads cleaned up at start
        self.leftover_workspaces = 0
        self.fusion_warm = "idle"
        self.models = ModelsState()
        self.secret = secrets.token_bytes(32)  # signs file links (see serving.item_link); new per process
        self.announce: Callable[[str], None] = log.info  # start-up progress; app.py prints it
        self._threads: list[threading.Thread] = []
        self._deferred: list[tuple[Any, str]] = []
        self._searching = 0  # searches running now (background warm-ups give way to them)
        self._searching_lock = threading.Lock()
        self._defer = False

    # ------------------------------------------------------------------ start-up
    def start(self, background: bool = True, warm: bool = False, defer: bool = False) -> None:
        """Prepare the shared state (no model loads): remove leftover workspaces, clean interrupted
        uploads, and build or heal the demo — in a background thread (``background``) or here.

        ``warm``: also load the models and warm search and fusion in the background. ``defer``: start
        the background work only at :meth:`run_deferred` (call it once the page is served, so start-up
        work never competes with serving the first page)."""
        self._defer = defer and background
        Path(self.config.indexes_dir).mkdir(parents=True, exist_ok=True)
        self.leftover_workspaces = self.workspaces.cleanup_leftovers()
        if self.public:
            self.workspaces.start_sweeper()
        health = demo_health(self.config.indexes_dir) if self.default_collection == DEMO_NAME else "ok"
        if health == "damaged":
            moved = set_aside(self.config.indexes_dir)
            log.warning("the demo collection was damaged; moved it to %s and rebuilding", moved)
        for name in collection_names(self.config):
            with self.collections.use(self.shared(name)) as lib:
                self.recovered += upload_batches.recover(lib.collection)
        if health != "ok":
            self.build = BuildState(state="building", reason=health)
            self._spawn(self._build_demo, "demo-build", background)
        elif self.default_collection not in collection_names(self.config):
            with self.collections.use(self.shared(self.default_collection), create=True):
                pass  # --collection NAME that does not exist yet: created empty
        if warm:
            self.models.state = "loading"
            self._spawn(self.warm_up, "warm-up", background)
        self._defer = False

    def run_deferred(self) -> None:
        """Start the background work :meth:`start` deferred (the demo build, the warm-up)."""
        if self.build.state != "building":
            with self.library(self.shared(self.default_collection), create=True) as lib:
                self.announce(f"Collection '{self.default_collection}' ready with {lib.collection.counts()['total']} items.")
        for fn, name in self._deferred:
            self._spawn(fn, name, True)
        self._deferred.clear()

    def _spawn(self, fn: Any, name: str, background: bool) -> None:
        if not background:
            fn()
            return
        if self._defer:
            self._deferred.append((fn, name))
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
                self.announce(f"Demo ready with {summary.get('items')} items.")
            except Exception as exc:  # shown in the status line; the app keeps serving
                log.exception("building the demo collection failed")
                self.build.state, self.build.error = "failed", f"{type(exc).__name__}: {exc}"

    def warm_up(self) -> None:
        """Load every model of the default collection's preset and run one search (``models.state`` → ready),
        then start warming fusion in the background."""
        t0 = time.perf_counter()
        try:
            with self.library(self.shared(self.default_collection), create=True) as lib:
                for spec in lib.encoders.specs:
                    lib.encoders.get(spec.name).encode([_tiny_input(spec.modality)])
            # One real search: FAISS indexes, SQLite pages and the query path are warm for the first visitor.
            for target in ("any", "image", "text", "audio"):  # every target's indexes and calibration
                search_actions.search(self, Visitor(session="warm-up"), text="warm up", target=target, k=10)
            self.models.seconds = round(time.perf_counter() - t0, 1)
            self.models.state = "ready"
            self.announce(f"Models ready in {self.models.seconds:.1f} s.")
        except Exception as exc:  # the app keeps serving; models then load on first use
            log.exception("warming up the models failed")
            self.models.state, self.models.error = "failed", f"{type(exc).__name__}: {exc}"
        if self.fusion_warm == "idle":
            lab_actions.warm_up_fusion(self)

    @contextmanager
    def searching(self) -> Iterator[None]:
        """Mark a visitor's search as running while the block runs (see :meth:`wait_until_idle`)."""
        with self._searching_lock:
            self._searching += 1
        try:
            yield
        finally:
            with self._searching_lock:
                self._searching -= 1

    def wait_until_idle(self, poll: float = 0.05) -> None:
        """Block while any search runs: background work yields the CPU (and the GIL) to visitors."""
        while self._searching:
            time.sleep(poll)

    def file_link(self, ref: CollectionRef, item_id: int, base_url: str = "") -> str:
        """A signed link a remote client can download item ``item_id`` of ``ref`` from (see serving.item_link)."""
        kind = "w" if ref.root == self.workspaces.root else "c"
        return item_link(self.secret, kind, ref.name, item_id, base_url)

    def open_link(self, kind: str, name: str, item_id: str, sig: str, preview: bool = False) -> tuple[Path, str] | None:
        """(file, download name) behind a link this process issued, or None (forged, gone, not servable);
        ``preview``: the item's small preview (``thumbs/``) instead of its file."""
        iid = check_link(self.secret, kind, name, item_id, sig)
        if iid is None:
            return None
        ref = self.workspaces.find(name) if kind == "w" else self.shared(name) if name in collection_names(self.config) else None
        if ref is None:
            return None
        try:
            with self.library(ref) as lib:
                item = lib.collection.get(iid)
                path = item_file(lib.collection, iid, self.config, prefer="preview" if preview else "original")
        except UserError:
            return None
        if item is None or path is None:
            return None
        name = Path(item.path).name
        return path, name if path.suffix == Path(item.path).suffix else f"{Path(name).stem}-preview{path.suffix}"

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
        names = collection_names(self.config)
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
        if name in collection_names(self.config):
            raise UserError(f"Collection {name!r} already exists; pick it in the list to switch to it.")
        with self.write_lock, self.library(self.shared(name), create=True):
            pass
        visitor.collection = name
        return visitor

    def switch_collection(self, visitor: Visitor, name: str) -> Visitor:
        """Make ``name`` this visitor's active collection (local mode; other visitors are not affected)."""
        self._local_only("Switching collections")
        names = collection_names(self.config)
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
            models=asdict(self.models),
        )
        return doc


__all__ = ["AppService", "BuildState", "MY_UPLOADS", "ModelsState"]
