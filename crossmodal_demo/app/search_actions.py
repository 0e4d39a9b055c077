"""Search for one visitor: validate the query once, search what the visitor may see, keep the result server-side.

Inputs are plain values only: a text, or the path of a file Gradio itself received as an upload
(never a path typed by a client), a target and k. Results carry item ids, a collection label and a
display path — never a server path in public mode — and are kept in the visitor's state, so the
gallery and cards are built from the server's copy, not from anything the browser sends back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.app.serving import item_file
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.media import Audio, load_text, resample
from crossmodal_demo.retrieval.query import Query, check_k, check_target, check_text
from crossmodal_demo.retrieval.search import SearchService

MAX_K = 50


def as_k(k: Any, most: int) -> int:
    """A slider/API value for k → int in [1, most] (floats like 8.0 from a slider are fine), else a UserError."""
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise UserError(f"k must be a whole number between 1 and {most} (got {str(k)[:20]!r}).") from None
    if not np.isfinite(value) or value != int(value):
        raise UserError(f"k must be a whole number between 1 and {most} (got {str(k)[:20]}).")
    return check_k(int(value), most)


def make_query(service: Any, text: Any, image: Any, audio: Any, verb: str = "search") -> Query:
    """Exactly one of text / an uploaded image file / an uploaded audio file (or a microphone array) → Query.

    The text length is checked before anything else (never echoed back); files must exist.
    """
    cfg = service.config
    if isinstance(text, str) and len(text) <= cfg.max_query_chars and not text.strip():
        text = None  # an empty box: the query is the image or the clip
    elif text is not None:
        text = check_text(text, cfg)  # type and length checked before anything else; never echoed
    given = [m for m, v in (("text", text), ("image", image), ("audio", audio)) if v not in (None, "")]
    if len(given) != 1:
        if not given:
            raise UserError(f"Nothing to {verb} for: type some text, or add an image, or add an audio clip.")
        raise UserError(f"Give one query at a time (got {' and '.join(given)}): clear the others, then {verb} again.")
    if isinstance(audio, tuple):
        audio = audio_from_array(audio, cfg.max_query_audio_seconds)
    for value, what in ((image, "image"), (audio, "audio clip")):
        if isinstance(value, (str, Path)) and not os.path.isfile(value):
            raise UserError(f"The uploaded {what} is gone; add it again.")
    return Query(text=text, image=image, audio=audio)


def audio_from_array(value: tuple[int, Any], max_seconds: float, target_sr: int = 16000) -> Audio:
    """Gradio's ``(sample_rate, int16/float samples)`` → mono float32 :class:`Audio` (length checked first)."""
    sr, data = value
    arr = np.asarray(data)
    if arr.size == 0 or not sr or int(sr) <= 0:
        raise UserError("The audio clip is empty; record or upload it again.")
    frames = arr.shape[0]
    if frames / float(sr) > max_seconds:
        raise UserError(f"The audio clip is {frames / sr:,.1f} s long; the limit for a query is {max_seconds:,.0f} s "
                        "(CROSSMODAL_MAX_QUERY_AUDIO_SECONDS).")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    mono = arr.mean(axis=1) if arr.ndim == 2 else arr
    return Audio(samples=resample(mono, int(sr), target_sr), sr=target_sr, name="recording")


def display_path(coll: Collection, path: str, public: bool) -> str:
    """How an item's path is shown: relative to the collection's media (own copies), else the full path
    (local mode) or just the file name (public mode: no server layout is revealed)."""
    media = os.path.realpath(coll.root / "media") + os.sep
    real = os.path.realpath(path)
    if real.startswith(media):
        return real[len(media):]
    return os.path.basename(path) if public else path


def search(service: Any, visitor: Visitor, text: Any = None, image: Any = None, audio: Any = None,
           target: str = "image", k: Any = 8) -> dict[str, Any]:
    """Search what ``visitor`` may see; returns ``{"query", "hits"}`` and keeps it in ``visitor.last_search``.

    Each hit is the ``search --json`` hit plus ``collection`` (its label: a collection name or "my uploads").
    """
    check_target(str(target)[:40])
    k = as_k(k, MAX_K)
    query = make_query(service, text, image, audio)
    refs = service.read_refs(visitor)
    hits: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    vectors = None
    for label, ref in refs:
        with service.library(ref) as lib:
            # Audio queries have their own, shorter duration limit.
            cfg = dataclasses.replace(lib.config, max_audio_seconds=service.config.max_query_audio_seconds)
            svc = SearchService(lib.collection, lib.encoders, cfg)
            if vectors is None:
                vectors, info = svc.encode_query(query)
            for h in svc.search_vectors(vectors, target, k):
                d = asdict(h)
                d.update(collection=label, path=display_path(lib.collection, h.path, service.public))
                hits.append(d)
            preset = lib.encoders.preset.name
    hits.sort(key=lambda h: (-h["score"], h["collection"], h["id"]))
    hits = hits[:k]
    for r, h in enumerate(hits, start=1):
        h["rank"] = r
    for key in ("image", "audio"):
        if key in info:
            info[key] = Path(str(info[key])).name  # the upload's name, not a server path
    info.update(target=target, k=k, collection=" + ".join(label for label, _ in refs), preset=preset)
    doc = {"query": info, "hits": hits}
    visitor.last_search = doc
    visitor.last_refs = dict(refs)
    return doc


def _excerpt(text: str, n: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def result_view(service: Any, visitor: Visitor) -> dict[str, Any]:
    """What the UI shows for the visitor's last search, built from the server's copy: a summary,
    gallery entries ``(file, caption)`` for images and cards for audio/text (files by item id only)."""
    result = visitor.last_search
    if not result:
        return {"summary": "", "gallery": [], "cards": []}
    q, hits = result["query"], result["hits"]
    what = {"text": f"“{q.get('text', '')}”", "image": "the image", "audio": "the audio clip"}.get(q.get("modality"), "the query")
    summary = f"**{len(hits)} result(s)** for {what} → {q.get('target')} in {q.get('collection')}"
    if q.get("transcript") is not None:
        summary += f"\n\nHeard in the clip: “{q['transcript']}”" if q["transcript"] else "\n\nNo speech heard in the clip."
    if not hits:
        summary += "\n\nNo items of that kind here yet."
        if service.build.state == "building":
            summary += f" The demo collection is still being built ({service.build.done}/{service.build.total or '?'} files)."
    gallery: list[tuple[str, str]] = []
    cards: list[dict[str, Any]] = []
    for h in hits:
        ref = visitor.last_refs.get(h["collection"])
        if ref is None:
            continue
        with service.library(ref) as lib:
            path = item_file(lib.collection, h["id"], service.config)
        name = Path(h["path"]).name
        label = f"#{h['rank']} · {h['score']:.3f} · {h['space']}/{h['channel']} · {name}"
        if h["modality"] == "image":
            if path is not None:
                gallery.append((str(path), label + (f" — {h['caption']}" if h.get("caption") else "")))
            continue
        excerpt = None
        if h["modality"] == "text":
            try:
                excerpt = _excerpt(load_text(path)) if path else "(the file is not stored in this collection)"
            except (MediaError, OSError):
                excerpt = "(file no longer readable)"
        cards.append({**h, "name": name, "label": label, "excerpt": excerpt, "file": str(path) if path else None})
    return {"summary": summary, "gallery": gallery, "cards": cards}


__all__ = ["MAX_K", "as_k", "audio_from_array", "display_path", "make_query", "result_view", "search"]
