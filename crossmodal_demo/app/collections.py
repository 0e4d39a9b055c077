"""The collections the app holds open: each opened once, at most ``max_open`` at a time, leased while in use.

Every visitor's request leases the library it works on (``with collections.use(ref) as lib``); the
least recently used idle collection is closed when too many are open, so a burst of new
workspaces cannot exhaust file descriptors. All open collections of one preset share one set of
encoder objects, so a model loads once per process whatever the number of collections.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSet
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import Library, open_library


@dataclass(frozen=True)
class CollectionRef:
    """Where a collection lives: ``root`` (a folder of collections) and its ``name`` there."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        """The collection's own folder."""
        return self.root / self.name


@dataclass
class _Entry:
    lib: Library
    users: int = 0
    on_closed: list[Callable[[], None]] = field(default_factory=list)
    doomed: bool = False


class OpenCollections:
    """A bounded, thread-safe registry of open libraries keyed by :class:`CollectionRef`.

    ``preset``: preset for collections created here (an existing collection keeps its own).
    ``overrides``: ready encoders by name (tests pass fakes); otherwise encoders are built once per
    preset and shared by every collection of that preset.
    """

    def __init__(self, config: Config, preset: str | None, max_open: int, overrides: dict[str, Encoder] | None = None) -> None:
        self.config = config
        self.preset = preset
        self.max_open = max(1, int(max_open))
        self._overrides = dict(overrides or {})
        self._shared: dict[str, EncoderSet] = {}  # preset name → the encoder set its collections share
        self._entries: OrderedDict[CollectionRef, _Entry] = OrderedDict()
        self._lock = threading.RLock()

    def _open(self, ref: CollectionRef, create: bool) -> Library:
        cfg = dataclasses.replace(self.config, indexes_dir=ref.root, cache_dir_override=self.config.cache_dir)
        lib = open_library(cfg, ref.name, preset=self.preset, create=create, overrides=self._overrides or None)
        name = lib.encoders.preset.name
        if not self._overrides:
            # Share one encoder set (and so its lazily built encoders and models) across collections of one preset;
            # the collection opened above is kept, only its encoder set is swapped for the shared one. Nothing is
            # built here: opening a collection at start-up must not import torch or load a model.
            lib = Library(lib.collection, self._shared.setdefault(name, lib.encoders), cfg, lib.preset_reason)
        return lib

    @contextmanager
    def use(self, ref: CollectionRef, create: bool = False) -> Iterator[Library]:
        """Lease the library at ``ref`` (opened, or with ``create`` created, on first use)."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None or entry.doomed:
                if entry is not None and entry.doomed:
                    raise UserError("This collection is being closed; try again in a moment.")
                entry = _Entry(self._open(ref, create))
                self._entries[ref] = entry
            entry.users += 1
            self._entries.move_to_end(ref)
        try:
            yield entry.lib
        finally:
            with self._lock:
                entry.users -= 1
                if entry.doomed and entry.users == 0:
                    self._close(ref, entry)
                self._evict()

    def is_open(self, ref: CollectionRef) -> bool:
        """True while ``ref`` is held open."""
        with self._lock:
            return ref in self._entries

    def open_count(self) -> int:
        """How many collections are open now."""
        with self._lock:
            return len(self._entries)

    def close(self, ref: CollectionRef, then: Callable[[], None] | None = None) -> None:
        """Close ``ref`` now if idle, else as soon as its last lease ends; ``then()`` runs after closing."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None:
                if then:
                    then()
                return
            if then:
                entry.on_closed.append(then)
            entry.doomed = True
            if entry.users == 0:
                self._close(ref, entry)

    def close_all(self) -> None:
        """Close every collection (at shutdown)."""
        with self._lock:
            for ref, entry in list(self._entries.items()):
                self._close(ref, entry)

    def _close(self, ref: CollectionRef, entry: _Entry) -> None:
        self._entries.pop(ref, None)
        try:
            entry.lib.collection.close()
        finally:
            for fn in entry.on_closed:
                fn()

    def _evict(self) -> None:
        """Close least recently used idle collections until at most ``max_open`` are open."""
        for ref in list(self._entries):
            if len(self._entries) <= self.max_open:
                return
            entry = self._entries[ref]
            if entry.users == 0:
                self._close(ref, entry)


__all__ = ["CollectionRef", "OpenCollections"]
