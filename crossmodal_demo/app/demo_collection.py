"""The built-in demo collection: media shipped in ``crossmodal_demo/demo_data``, indexed once at first start.

The four media folders (``photos``, ``speech``, ``sounds``, ``notes``) are copied into the collection's
own ``media/`` folder, so the collection is self-contained (it survives the package moving, and
deleting an item deletes only the copy). A marker file written after the last batch tells later
starts that the build finished; an interrupted build resumes (already indexed files are skipped as
duplicates).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.ingest.discover import MANIFESTS
from crossmodal_demo.index.pipeline import ProgressFn, index_paths
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.ingest.media import modality_of
from crossmodal_demo.index.store import atomic_write_bytes

DEMO_NAME = "demo"
DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_FOLDERS = ("photos", "speech", "sounds", "notes")
MARKER = "demo-complete.json"


def demo_files(source: Path = DEMO_DATA) -> list[Path]:
    """The files of the demo that get indexed (media and caption manifests), relative to ``source``."""
    out: list[Path] = []
    for folder in DEMO_FOLDERS:
        d = Path(source) / folder
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and not f.name.startswith(".") and (modality_of(f) or f.name in MANIFESTS):
                out.append(f.relative_to(source))
    return out


def is_demo_complete(config: Config) -> bool:
    """True if the demo collection under ``config.indexes_dir`` finished building."""
    return (Path(config.indexes_dir) / DEMO_NAME / MARKER).is_file()


def ensure_demo_collection(
    config: Config,
    progress: ProgressFn | None = None,
    *,
    library: Library | None = None,
    source: Path = DEMO_DATA,
    preset: str | None = None,
) -> Library:
    """Open the ``demo`` collection, building it from ``source`` first if it is missing or unfinished.

    ``progress(done, total, name)`` is called after each indexed batch. Pass ``library`` (the open
    demo collection) to index into an object other threads already search; otherwise the collection
    is opened (or created with ``preset``, default: the library's) here. Returns the library; models
    load only if a build runs.
    """
    if library is None:
        library = open_library(config, DEMO_NAME, preset=preset, create=True)
    root = library.collection.root
    if (root / MARKER).is_file():
        return library
    files = demo_files(source)
    media = root / "media"
    for rel in files:
        dst = media / rel
        src = Path(source) / rel
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            continue  # copied by an earlier, interrupted build
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    folders = [media / f for f in DEMO_FOLDERS if (media / f).is_dir()]
    t0 = time.time()
    report = index_paths(library.collection, library.encoders, folders, config, on_progress=progress)
    summary = {"built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.time() - t0, 1)}
    summary.update(report.to_json())
    atomic_write_bytes(root / MARKER, json.dumps(summary, indent=2).encode())
    return library


__all__ = ["DEMO_NAME", "DEMO_DATA", "DEMO_FOLDERS", "demo_files", "ensure_demo_collection", "is_demo_complete"]
