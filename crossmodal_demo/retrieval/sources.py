"""Sources: the ways of ranking a target's items for one query, one ranked list each.

A source is (space, channel): the query's vector in ``space`` against the target items' vectors of
``channel`` there — ``content`` (the item itself: ConSE image vectors, audio transcripts, texts) or
``caption`` (the caption of a captioned item, embedded as text). With the offline preset a text→image
query has two sources, ``text/content`` and ``text/caption``; with more spaces there are more.
Source names are ``"<space>/<channel>"``. Doc ids in the ranked lists are item ids as strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import RankedList, combine_query_vectors
from crossmodal_demo.retrieval.query import CHANNELS, Query, check_k, target_modalities

if TYPE_CHECKING:  # the functions below take a Library or a SearchService: anything with .collection and .encoders
    from crossmodal_demo.retrieval.library import Library

DEFAULT_DEPTH = 100  # items ranked per source; fusion sees only these (see README "Fusion lab")


@dataclass(frozen=True)
class Source:
    """One way of ranking ``target`` items: ``space``/``channel``; ``size`` = target items it can rank."""

    name: str
    space: str
    channel: str
    description: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class ExtraSource:
    """A source from outside the collection's spaces, e.g. an alignment bridge (see :mod:`.bridge`).

    ``rank(query, target, depth)`` returns a ranked list ``{item id str: score}`` (may be empty when
    it cannot handle the query); ``quality`` is shown next to its results (e.g. held-out recall@1).
    """

    name: str
    description: str
    rank: Callable[[Query, str, int], RankedList]
    quality: dict[str, float] | None = None
    # ranks from the query's vectors ({space: (dim,)}, target, depth); lets the main search fuse it in
    rank_vectors: Callable[[dict[str, np.ndarray], str, int], RankedList] | None = None


def _describe(library: Library, space: str, channel: str, modalities: Sequence[str]) -> str:
    if channel == "caption":
        return f"captions of {'/'.join(modalities)} items, embedded as text in the {space} space"
    parts = []
    for m in modalities:
        spec = next((s for s in library.encoders.specs_for(m) if s.space == space), None)
        if spec is None:
            continue
        what = "transcripts" if (m == "audio" and "transcript" in spec.name) else "content"
        parts.append(f"{m} {what} ({spec.name})")
    return f"{', '.join(parts) or 'content'} in the {space} space"


def list_sources(library: Library, query_spaces: Sequence[str], target: str) -> list[Source]:
    """Sources a query encoded into ``query_spaces`` has for ``target`` items, in space then channel order.

    Only (space, channel) pairs holding at least one target item are listed.
    """
    modalities = target_modalities(target)
    keys = set(library.collection.index_keys())
    out = []
    for space in query_spaces:
        for channel in CHANNELS:
            present = [m for m in modalities if (space, channel, m) in keys]
            if not present:
                continue
            size = sum(library.collection.index_size((space, channel, m)) for m in present)  # O(1): every search asks
            out.append(Source(f"{space}/{channel}", space, channel, _describe(library, space, channel, present), size))
    return out


def select_sources(available: Sequence[Source], wanted: Sequence[str] | None) -> list[Source]:
    """The ``wanted`` sources by name (all when None); unknown names fail listing the available ones."""
    if wanted is None:
        return list(available)
    by_name = {s.name: s for s in available}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise UserError(
            f"Unknown source(s) {', '.join(unknown)} for this query and target. "
            f"Available: {', '.join(by_name) or 'none'}."
        )
    return [by_name[w] for w in dict.fromkeys(wanted)]


QueryLike = Query | str | Sequence[tuple[Any, float]]


def as_terms(query: QueryLike) -> list[tuple[Query, float]]:
    """Normalise a query into weighted terms: a Query, a text, or ``[(Query | text, weight), ...]``."""
    if isinstance(query, Query):
        return [(query, 1.0)]
    if isinstance(query, str):
        return [(Query(text=query), 1.0)]
    terms: list[tuple[Query, float]] = []
    for item in query:
        try:
            q, w = item
        except (TypeError, ValueError):
            raise UserError(f"Query terms are (query, weight) pairs; got {item!r}.") from None
        terms.append((Query(text=q) if isinstance(q, str) else q, float(w)))
    if not terms:
        raise UserError("No query terms given: give a text, an image or an audio file.")
    if all(w <= 0 for _, w in terms):
        raise UserError("At least one query term needs a positive weight (negative terms only subtract).")
    return terms


def encode_terms(library: Library, terms: Sequence[tuple[Query, float]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Encode weighted query terms → ({space: float32 (dim,)}, description).

    One term: its vectors as they are. Several: their normalised vectors are summed with the weights
    (vector-level fusion), in the spaces *every* term reaches, so the arithmetic means the same
    thing everywhere; if the terms share no space the query fails with the spaces of each term.
    """
    encoded = []
    for q, w in terms:
        vecs, info = library.search.encode_query(q)
        encoded.append((vecs, info, w))
    if len(encoded) == 1 and encoded[0][2] == 1.0:
        vecs, info, _ = encoded[0]
        return vecs, info
    shared = set(encoded[0][0])
    for vecs, _, _ in encoded[1:]:
        shared &= set(vecs)
    if not shared:
        spaces = "; ".join(f"{_label(i)} → {', '.join(sorted(v))}" for v, i, _ in encoded)
        raise UserError(f"These query terms share no space, so they cannot be added: {spaces}.")
    combined = {s: combine_query_vectors([(v[s], w) for v, _, w in encoded]) for s in sorted(shared)}
    info = {
        "modality": "+".join(dict.fromkeys(i["modality"] for _, i, _ in encoded)),
        "terms": [{**i, "weight": w} for _, i, w in encoded],
        "spaces": sorted(shared),
    }
    return combined, info


def _label(info: dict[str, Any]) -> str:
    return str(info.get("text") or Path(str(info.get("image") or info.get("audio") or "?")).name)


def rank_source(
    library: Library, source: Source, vector: np.ndarray, target: str, depth: int, exclude: set[int] | None = None
) -> RankedList:
    """Top-``depth`` target items of one source for a query vector: ``{item id str: cosine}``, best first.

    Partitions of several modalities (target 'any') are merged by score; they share a space, so
    the scores are comparable. Ids in ``exclude`` (e.g. the query item itself) are left out.
    """
    exclude = exclude or set()
    merged: dict[int, float] = {}
    for m in target_modalities(target):
        key = (source.space, source.channel, m)
        scores, ids = library.collection.search(key, np.asarray(vector, dtype=np.float32)[None, :], depth + len(exclude))
        for s, i in zip(scores[0] if len(scores) else [], ids[0] if len(ids) else []):
            if i >= 0 and int(i) not in exclude:
                merged[int(i)] = float(s)
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
    return {str(i): s for i, s in ranked}


def rank_sources(
    library: Library,
    vectors: dict[str, np.ndarray],
    sources: Sequence[Source],
    target: str,
    depth: int = DEFAULT_DEPTH,
    exclude: set[int] | None = None,
) -> dict[str, RankedList]:
    """One ranked list per source: ``{source name: {item id str: cosine}}`` for the query ``vectors``."""
    check_k(depth, name="depth")
    return {s.name: rank_source(library, s, vectors[s.space], target, depth, exclude) for s in sources if s.space in vectors}
