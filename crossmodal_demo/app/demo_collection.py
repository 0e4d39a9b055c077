"""The built-in demo collection: media shipped in ``crossmodal_demo/demo_data``, indexed at first start and healed later.

The four media folders (``photos``, ``speech``, ``sounds``, ``notes``) are copied into the collection's
own ``media/`` folder, so the collection is self-contained. A marker written after the last batch
records how many items the build produced. At every start :func:`demo_health` checks the collection:
missing, unfinished (no marker), emptied or short of items (fewer than the marker says), or damaged
(it does not open): the app then rebuilds it in the background — a damaged one is moved to
``<indexes>/.damaged/`` first (kept for inspection, never listed as a collection).
An interrupted build resumes (files already indexed are skipped as duplicates).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import ProgressFn, index_paths
from crossmodal_demo.index.store import Collection, atomic_write_bytes
from crossmodal_demo.ingest.discover import MANIFESTS
from crossmodal_demo.ingest.media import modality_of
from crossmodal_demo.retrieval.library import Library

DEMO_NAME = "demo"
DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
DEMO_FOLDERS = ("photos", "speech", "sounds", "notes")
DEMO_BENCHMARK = DEMO_DATA / "benchmark.jsonl"
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


def demo_health(indexes_dir: Path, name: str = DEMO_NAME) -> str:
    """'ok', 'missing', 'unfinished', 'emptied' or 'damaged' for the demo collection under ``indexes_dir``."""
    root = Path(indexes_dir) / name
    if not (root / "manifest.json").is_file():
        return "missing"
    marker = root / MARKER
    if not marker.is_file():
        return "unfinished"
    try:
        expected = int(json.loads(marker.read_text()).get("items", 0))
        coll = Collection.open(Path(indexes_dir), name)
    except (UserError, OSError, ValueError, Exception):  # any failure to open is damage, repaired by a rebuild
        return "damaged"
    try:
        total = coll.counts()["total"]
    finally:
        coll.close()
    return "emptied" if total < expected else "ok"


def set_aside(indexes_dir: Path, name: str = DEMO_NAME) -> Path | None:
    """Move a damaged collection folder out of the way, to ``<indexes>/.damaged/<name>-<time>``; returns where."""
    root = Path(indexes_dir) / name
    if not root.exists():
        return None
    dst = Path(indexes_dir) / ".damaged" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    root.rename(dst)
    return dst


def ensure_demo_collection(library: Library, progress: ProgressFn | None = None, source: Path = DEMO_DATA) -> dict[str, object]:
    """Copy any missing demo file into ``library``'s media and index what is not indexed yet.

    ``progress(done, total, name)`` is called after each indexed batch. Returns the build summary
    written to the marker (``items`` = the collection's item count when the build finished).
    """
    root = library.collection.root
    (root / MARKER).unlink(missing_ok=True)  # unfinished until the last batch is in
    media = root / "media"
    for rel in demo_files(source):
        dst, src = media / rel, Path(source) / rel
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            continue  # copied by an earlier, interrupted build
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    folders = [media / f for f in DEMO_FOLDERS if (media / f).is_dir()]
    t0 = time.time()
    report = index_paths(library.collection, library.encoders, folders, library.config, on_progress=progress)
    summary: dict[str, object] = {
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 1),
        "items": library.collection.counts()["total"],
        **report.to_json(),
    }
    atomic_write_bytes(root / MARKER, json.dumps(summary, indent=2).encode())
    return summary


# Example queries shown under the search box: an id the browser sends back (never a path), what it fills in
# and runs. Files are shipped demo files (``DEMO_DATA``-relative). Offline, a non-speech sound cannot be a query
# (its transcript is empty), so the sound example finds sounds by words.
EXAMPLES: dict[str, dict[str, str]] = {
    "text": {"label": "“a cat” → photos", "text": "a cat", "target": "image"},
    "photo": {"label": "a rocket photo → notes", "image": "photos/rocket.jpg", "target": "text"},
    "speech": {"label": "a voice message → notes", "audio": "speech/dentist.flac", "target": "text"},
    "sound": {"label": "“a doorbell” → sounds", "text": "a doorbell ringing", "target": "audio"},
}
FOLDER_WORDS = {"photos": "photos", "speech": "voice messages", "sounds": "sounds", "notes": "notes"}


def example_query(example_id: str, source: Path = DEMO_DATA) -> dict[str, str]:
    """``{"text"|"image"|"audio": value, "target"}`` for a known example id (files as absolute paths of
    shipped demo files); :class:`UserError` for anything else."""
    ex = EXAMPLES.get(str(example_id)[:40])
    if ex is None:
        raise UserError(f"Unknown example {str(example_id)[:40]!r}. Examples: {', '.join(EXAMPLES)}.")
    out = {"target": ex["target"]}
    for key in ("text", "image", "audio"):
        if key in ex:
            out[key] = ex[key] if key == "text" else str(Path(source) / ex[key])
    return out


def demo_strip(source: Path = DEMO_DATA) -> str:
    """One line: what the shipped demo holds, e.g. "12 photos · 8 voice messages · 5 sounds · 11 notes"."""
    counts = {f: 0 for f in DEMO_FOLDERS}
    for rel in demo_files(source):
        if rel.parts[0] in counts and modality_of(rel):
            counts[rel.parts[0]] += 1
    return " · ".join(f"{n} {FOLDER_WORDS[f]}" for f, n in counts.items() if n)


def is_demo_complete(config: Config) -> bool:
    """True if the demo collection under ``config.indexes_dir`` finished building and is whole."""
    return demo_health(config.indexes_dir) == "ok"


__all__ = [
    "DEMO_BENCHMARK", "DEMO_DATA", "DEMO_FOLDERS", "DEMO_NAME", "EXAMPLES", "MARKER",
    "demo_files", "demo_strip", "example_query", "demo_health", "ensure_demo_collection", "is_demo_complete", "set_aside",
]
