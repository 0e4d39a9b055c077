"""Search for one visitor: validate the query once, search what the visitor may see, keep the result server-side.

Inputs are plain values only: a text, or the path of a file Gradio itself received as an upload
(never a path typed by a client), a target and k. Results carry item ids, a collection label and a
display path — never a server path in public mode — and are kept in the visitor's state, so the
gallery and cards are built from the server's copy, not from anything the browser sends back.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.analysis.bridge import attach_bridges
from crossmodal_demo.app.results import card_html, excerpt, query_words, strip_markdown
from crossmodal_demo.app.serving import item_file
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.media import Audio, load_text, resample
from crossmodal_demo.retrieval.query import Query, check_k, check_target, check_text
from crossmodal_demo.retrieval.fusion import search_fusion

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
           target: str = "image", k: Any = 8, base_url: str = "", fusion: Any = None) -> dict[str, Any]:
    """Search what ``visitor`` may see; returns ``{"query", "hits"}`` and keeps it in ``visitor.last_search``.

    ``fusion``: a fusion method name, ``max``, or empty for the configured default (``mean-zscore``).

    Each hit is the ``search --json`` hit plus ``collection`` (its label: a collection name or "my uploads")
    and ``url``: a signed link to the item's file through this server (``base_url`` + path; see
    :meth:`AppService.file_link`). ``path`` is a display path (never a server path in public mode).
    """
    with service.searching():
        return _search(service, visitor, text, image, audio, target, k, base_url, fusion)


def _search(service: Any, visitor: Visitor, text: Any, image: Any, audio: Any, target: str, k: Any, base_url: str,
            fusion: Any = None) -> dict[str, Any]:
    check_target(str(target)[:40])
    k = as_k(k, MAX_K)
    method = search_fusion(str(fusion)[:40] if fusion else service.config.fusion)  # a typo fails before any model runs
    query = make_query(service, text, image, audio)
    refs = service.read_refs(visitor)
    hits: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    vectors = None
    for label, ref in refs:
        with service.library(ref) as lib:
            attach_bridges(lib)  # clip preset: sound → picture (audio queries have their own limit: AudioLimits.query)
            svc = lib.search
            if vectors is None:
                vectors, info = svc.encode_query(query)
            for h in svc.search_vectors(vectors, target, k, fusion=method, modality=info.get("modality")):
                d = asdict(h)
                d.update(collection=label, path=display_path(lib.collection, h.path, service.public),
                         url=service.file_link(ref, h.id, base_url))
                hits.append(d)
            preset = lib.encoders.preset.name
    hits.sort(key=lambda h: (-h["score"], h["collection"], h["id"]))
    hits = hits[:k]
    for r, h in enumerate(hits, start=1):
        h["rank"] = r
    for key in ("image", "audio"):
        if key in info:
            info[key] = Path(str(info[key])).name  # the upload's name, not a server path
    info.update(target=target, k=k, collection=" + ".join(label for label, _ in refs), preset=preset, fusion=method)
    doc = {"query": info, "hits": hits}
    visitor.last_search = doc
    visitor.last_refs = dict(refs)
    return doc


def similar(service: Any, visitor: Visitor, rank: Any, base_url: str = "") -> dict[str, Any]:
    """Search with hit ``rank`` of the visitor's last search as the query (its file, found by item id on the
    server), for the same target and k; the item itself is left out. Returns the new result (``query.similar_to``)."""
    last = visitor.last_search or {}
    hit = next((h for h in last.get("hits", []) if isinstance(rank, int) and h.get("rank") == rank), None)
    ref = visitor.last_refs.get(hit["collection"]) if hit else None
    if hit is None or ref is None:
        raise UserError("That result is no longer shown; search again, then pick a result.")
    name = Path(hit["path"]).name
    with service.library(ref) as lib:
        item = lib.collection.get(int(hit["id"]))
        path = item_file(lib.collection, int(hit["id"]), service.config)
    if item is None or path is None:
        raise UserError(f"'{name}' is no longer in the collection (or its file is not stored there), so it cannot be a query.")
    q, k = last["query"], int(last["query"].get("k", 8))
    if item.modality == "text":
        kw: dict[str, Any] = {"text": " ".join(load_text(path).split())[: service.config.max_query_chars]}
    else:
        kw = {item.modality: str(path)}
    try:
        doc = search(service, visitor, target=q.get("target", "any"), k=min(k + 1, MAX_K), base_url=base_url,
                     fusion=q.get("fusion"), **kw)
    except UserError:
        if item.modality != "audio" or not item.caption:
            raise
        # A sound with no speech cannot be a query in a speech-only preset: its caption says what it is.
        doc = search(service, visitor, text=item.caption[: service.config.max_query_chars], target=q.get("target", "any"),
                     k=min(k + 1, MAX_K), base_url=base_url, fusion=q.get("fusion"))
    doc["hits"] = [h for h in doc["hits"] if not (h["collection"] == hit["collection"] and h["id"] == hit["id"])][:k]
    for r, h in enumerate(doc["hits"], start=1):
        h["rank"] = r
    doc["query"].update(similar_to=name, k=k, modality=item.modality)
    doc["query"].pop("text", None)
    return doc


def _text_of(path: Path | None) -> str:
    try:
        return strip_markdown(load_text(path)) if path else "(the file is not stored in this collection)"
    except (MediaError, OSError):
        return "(file no longer readable)"


def summary_markdown(service: Any, q: dict[str, Any], hits: list[dict[str, Any]]) -> str:
    """One or two lines above the results: how many, for what, where; "no close match" when the best is weak."""
    if q.get("similar_to"):
        what = f"items like **{md_plain(q['similar_to'])}**"
    else:
        what = {"text": f"“{md_plain(q.get('text', ''))}”", "image": "the image", "audio": "the audio clip"}.get(q.get("modality"), "the query")
    out = f"**{len(hits)} result(s)** for {what} → {q.get('target')} in {q.get('collection')}"
    if q.get("transcript") is not None:
        out += f"\n\nHeard in the clip: “{md_plain(q['transcript'])}”" if q["transcript"] else "\n\nNo speech heard in the clip."
    if hits and hits[0].get("match") == "weak":
        out += "\n\n**No close match** — these are the nearest items, but none is a confident match."
    if not hits:
        out += "\n\nNo items of that kind here yet."
        if service.build.state == "building":
            out += f" The demo collection is still being built ({service.build.done}/{service.build.total or '?'} files)."
    return out


def md_plain(text: str) -> str:
    """User text safe inside Markdown (syntax characters escaped)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~>])", r"\\\1", str(text))


def result_view(service: Any, visitor: Visitor) -> dict[str, Any]:
    """What the UI shows for the visitor's last search, built from the server's copy: a summary and one card per
    hit (``kind`` "image" for the picture grid, "row" for audio/text, "divider" before the first weak row), each
    with its ``rank`` and ``html``. Pictures and players load through signed item links (by item id only)."""
    result = visitor.last_search
    if not result:
        return {"summary": "", "cards": []}
    q, hits = result["query"], result["hits"]
    words = query_words(q.get("text") or q.get("transcript"))  # a voice query: mark the words it said
    top = max((h["score"] for h in hits), default=0.0)
    cards: list[dict[str, Any]] = []
    weak_seen = False
    several = len({h["collection"] for h in hits}) > 1
    all_weak = bool(hits) and hits[0].get("match") == "weak"  # said once in the summary, not on every card
    for h in hits:
        ref = visitor.last_refs.get(h["collection"])
        if ref is None:
            continue
        with service.library(ref) as lib:
            path = item_file(lib.collection, h["id"], service.config)
        card = {**h, "name": Path(h["path"]).name, "show_collection": several}
        if all_weak:
            card["match"] = None
        link = service.file_link(ref, h["id"]) if path is not None else None  # relative: the page's own origin
        if h["modality"] == "image":
            card["thumb"] = f"{link}?size=thumb" if link else None
            cards.append({"rank": h["rank"], "kind": "image", "html": card_html(card, words, top)})
            continue
        if h.get("match") == "weak" and not weak_seen and any(c["kind"] == "row" for c in cards):
            cards.append({"kind": "divider", "html": '<div class="weak-divider">weak matches below</div>', "rank": 0})
        weak_seen = weak_seen or h.get("match") == "weak"
        if h["modality"] == "text":
            card["excerpt"] = excerpt(_text_of(path), words)
        card["url"] = link
        cards.append({"rank": h["rank"], "kind": "row", "html": card_html(card, words, top)})
    return {"summary": summary_markdown(service, q, hits), "cards": cards}


__all__ = ["MAX_K", "as_k", "audio_from_array", "display_path", "make_query", "md_plain", "result_view", "search", "similar", "summary_markdown"]
