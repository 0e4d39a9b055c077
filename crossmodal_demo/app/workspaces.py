"""Private workspaces (public mode): one collection per visitor who uploads, seen only by that visitor.

A workspace lives in ``<indexes>/.workspaces/<random token>/`` — a hidden folder, so it is never
listed with the shared collections, and a token nobody can guess. It is created on the visitor's
first upload and deleted with its files when the visitor leaves (``demo.unload``), when Gradio drops
the visitor's session, or after ``workspace_ttl`` idle seconds; whatever a previous run left behind
is deleted at start. Quotas: files and bytes per workspace, and live workspaces at once.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crossmodal_demo.app.collections import CollectionRef, OpenCollections
from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError

log = logging.getLogger(__name__)
WORKSPACES_DIR = ".workspaces"


@dataclass
class Workspace:
    """One visitor's workspace: its collection and when it was last used (monotonic seconds)."""

    ref: CollectionRef
    last_used: float


class Workspaces:
    """Create, find, charge and delete visitors' workspaces (keyed by the visitor's session id)."""

    def __init__(self, config: Config, collections: OpenCollections, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.collections = collections
        self.root = Path(config.indexes_dir) / WORKSPACES_DIR
        self._clock = clock
        self._by_session: dict[str, Workspace] = {}
        self._lock = threading.RLock()
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ life cycle
    def cleanup_leftovers(self) -> int:
        """Delete every workspace folder a previous run left behind; returns how many were removed."""
        if not self.root.is_dir():
            return 0
        n = 0
        for d in self.root.iterdir():
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        return n

    def start_sweeper(self, every: float | None = None) -> None:
        """Delete idle workspaces in a daemon thread, checking every ``every`` seconds (default ttl/4, ≤ 60 s)."""
        if self._sweeper is not None:
            return
        period = every or min(60.0, max(0.5, self.config.workspace_ttl / 4))

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.sweep()
                except Exception:  # the sweeper must outlive one bad folder
                    log.exception("workspace sweep failed")

        self._sweeper = threading.Thread(target=loop, name="workspace-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        """Stop the sweeper and delete every workspace (at shutdown)."""
        self._stop.set()
        for session in list(self._by_session):
            self.remove(session)

    def sweep(self) -> list[str]:
        """Delete workspaces idle for longer than ``workspace_ttl``; returns the sessions removed."""
        now = self._clock()
        with self._lock:
            idle = [s for s, w in self._by_session.items() if now - w.last_used > self.config.workspace_ttl]
        for s in idle:
            self.remove(s)
        return idle

    # ------------------------------------------------------------------ per visitor
    def get(self, session: str) -> CollectionRef | None:
        """The visitor's workspace, or None if they have not uploaded anything (marks it used)."""
        with self._lock:
            ws = self._by_session.get(session)
            if ws is None:
                return None
            ws.last_used = self._clock()
            return ws.ref

    def ensure(self, session: str) -> CollectionRef:
        """The visitor's workspace, created if needed; refused (nobody else harmed) when too many are live."""
        if not session:
            raise UserError("Your browser session has no id; reload the page and try again.")
        with self._lock:
            ref = self.get(session)
            if ref is not None:
                return ref
            if len(self._by_session) >= self.config.max_workspaces:
                raise UserError(
                    f"The app is busy: {len(self._by_session)} visitors have private workspaces right now, the most it "
                    "keeps at once (CROSSMODAL_MAX_WORKSPACES). Please try again in a few minutes; searching the demo "
                    "works meanwhile."
                )
            ref = CollectionRef(self.root, f"ws-{secrets.token_hex(16)}")
            self.root.mkdir(parents=True, exist_ok=True)
            self._by_session[session] = Workspace(ref, self._clock())
            return ref

    def find(self, name: str) -> CollectionRef | None:
        """The live workspace called ``name`` (for signed file links), or None; does not mark it used."""
        with self._lock:
            return next((ws.ref for ws in self._by_session.values() if ws.ref.name == name), None)

    def live(self) -> int:
        """How many workspaces exist now."""
        with self._lock:
            return len(self._by_session)

    def usage(self, ref: CollectionRef) -> tuple[int, int]:
        """(files, bytes) the workspace holds: its media files on disk."""
        media = ref.path / "media"
        files = [f for f in media.rglob("*") if f.is_file()] if media.is_dir() else []
        return len(files), sum(f.stat().st_size for f in files)

    def remaining(self, ref: CollectionRef) -> tuple[int, int]:
        """(files, bytes) the workspace may still take under its quota."""
        files, nbytes = self.usage(ref)
        return self.config.workspace_max_files - files, self.config.workspace_max_bytes - nbytes

    def remove(self, session: str) -> bool:
        """Delete the visitor's workspace and its files (once its last running request ends)."""
        with self._lock:
            ws = self._by_session.pop(session, None)
        if ws is None:
            return False
        path = ws.ref.path
        self.collections.close(ws.ref, then=lambda: shutil.rmtree(path, ignore_errors=True))
        return True

    def owner_of(self, ref: CollectionRef) -> str | None:
        """The session owning ``ref`` (None for shared collections)."""
        with self._lock:
            return next((s for s, w in self._by_session.items() if w.ref == ref), None)


__all__ = ["WORKSPACES_DIR", "Workspace", "Workspaces"]
