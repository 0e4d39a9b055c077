"""Plain functions shared by the CLI and the app: open collections with their encoders, resolve item references."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSet
from crossmodal_demo.encoders.presets import check_preset_name, preset_for, resolve_preset
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.protocol import create_collection, open_collection
from crossmodal_demo.index.store import Collection, Item, check_name
from crossmodal_demo.retrieval.search import SearchService
from crossmodal_demo.retrieval.sources import ExtraSource

DEFAULT_PRESET = "auto"  # clip when its weights can be had, else offline (encoders/presets.py)


@dataclass
class Library:
    """A collection with the encoders it was built with, and a search service over both."""

    collection: Collection
    encoders: EncoderSet
    config: Config
    preset_reason: str = ""  # why this preset was chosen (auto's choice), for the CLI / app banner
    # sources beyond the collection's spaces that the main search fuses in (e.g. analysis.bridge.attach_bridges)
    extra_sources: list[ExtraSource] = field(default_factory=list)

    @property
    def search(self) -> SearchService:
        """A SearchService over this collection (cheap to create)."""
        return SearchService(self.collection, self.encoders, self.config, self.extra_sources)


def open_library(
    config: Config,
    name: str,
    preset: str | None = None,
    create: bool = False,
    overrides: dict[str, Encoder] | None = None,
) -> Library:
    """Open (or with ``create``, create) collection ``name`` with the encoders of its preset.

    An existing collection keeps the preset stored in its manifest and is opened with no network
    access (a missing-weights error surfaces only when a model actually loads); asking for a
    different preset fails with a message that says how to rebuild. Only a new collection resolves
    ``auto`` (which may probe the hub briefly). ``overrides`` maps encoder names to ready encoders.
    """
    check_name(name)
    stored = _stored_preset(config, name)
    if preset is not None:
        check_preset_name(preset)
    if stored is not None or not create:
        coll = open_collection(config, name)  # the store its manifest records (SQLite + FAISS or Milvus)
        stored = coll.manifest.get("preset") or "offline"
        concrete = stored if preset in (None, "auto") else preset
        encoders = EncoderSet(preset_for(concrete, config), config, overrides)
        coll.check_compatible(encoders.manifest())
        return Library(coll, encoders, config, f"collection {name!r} was built with preset {stored!r}")
    chosen, reason = resolve_preset(preset or config.preset or DEFAULT_PRESET, config)
    encoders = EncoderSet(preset_for(chosen, config), config, overrides)
    coll = create_collection(config, name, encoders.manifest())  # in config.store (--store / CROSSMODAL_STORE)
    return Library(coll, encoders, config, reason)


def _stored_preset(config: Config, name: str) -> str | None:
    """The preset in collection ``name``'s manifest, or None for a new (or unreadable) collection."""
    try:
        return json.loads((Path(config.indexes_dir) / name / "manifest.json").read_text()).get("preset") or "offline"
    except (OSError, ValueError, AttributeError):
        return None  # Collection.open/create reports the details


def resolve_refs(coll: Collection, refs: list[str]) -> tuple[list[Item], list[str]]:
    """Items named by id, absolute/relative path, path relative to the indexed root, or unique file name.

    Returns (items found, refs that matched nothing or were ambiguous, with the reason).
    """
    found: dict[int, Item] = {}
    unknown: list[str] = []
    everything: list[Item] | None = None
    for ref in refs:
        # ASCII digits within SQLite's int64 only: "²" is isdigit() but not int(); 2**63 overflows SQLite.
        if ref.isascii() and ref.isdigit() and int(ref) < 2**63 and (it := coll.get(int(ref))) is not None:
            found[it.id] = it
            continue
        by_path = coll.find_by_path(os.path.abspath(os.path.expanduser(ref)))
        if by_path:
            found.update({i.id: i for i in by_path})
            continue
        if everything is None:
            everything = coll.items()
        matches = [i for i in everything if os.path.relpath(i.path, i.root) == ref] or [
            i for i in everything if Path(i.path).name == ref
        ]
        if len(matches) == 1:
            found[matches[0].id] = matches[0]
        elif len(matches) > 1:
            unknown.append(f"{ref} (ambiguous: matches ids {', '.join(str(m.id) for m in matches)}; give an id)")
        else:
            unknown.append(f"{ref} (no such id or path in collection {coll.name!r})")
    return list(found.values()), unknown


__all__ = ["Library", "open_library", "resolve_refs", "UserError", "DEFAULT_PRESET"]
