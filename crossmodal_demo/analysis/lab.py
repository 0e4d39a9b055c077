"""Fusion lab: one query, every single source side by side with fused rankings — a plain function for the UI.

``run_lab`` returns JSON-ready data only (no UI types): one column per single source and per fusion
method, each fused hit's rank movement against the best single source and each source's share of
its fused score, plus 2-D coordinates (PCA; UMAP when installed) of the query and the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.analysis.projection import project
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import contributions, fuse, parse_method
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.query import check_k
from crossmodal_demo.retrieval.sources import (
    DEFAULT_DEPTH,
    ExtraSource,
    QueryLike,
    as_terms,
    encode_terms,
    list_sources,
    rank_sources,
    select_sources,
)


def run_lab(
    library: Library,
    query: QueryLike,
    target: str,
    sources: list[str] | None,
    methods: list[str],
    k: int = 10,
    weights: Mapping[str, float] | None = None,
    *,
    baseline: str | None = None,
    depth: int = DEFAULT_DEPTH,
    extra_sources: Sequence[ExtraSource] = (),
    projection: str = "auto",
) -> dict[str, Any]:
    """Rank ``target`` items for ``query`` by each source and each fusion method.

    ``query`` is a Query, a text, or weighted terms ``[(Query | text, weight), ...]`` (vector-level
    fusion: terms summed in every space they share; negative weights subtract). ``sources`` are
    source names (None = all); ``methods`` fusion method names (see :mod:`.fusion`); ``weights``
    {source: w} for ``wsum``. Each source ranks ``depth`` items; columns show the top ``k``.
    ``baseline`` is the single source rank movements are measured against; by default the source
    most confident in its top hit (highest top-1 cosine). ``extra_sources`` (e.g. an alignment
    bridge) add single-source columns carrying their ``quality``; they rank the first query term.

    Returns ``{"query", "target", "k", "sources", "baseline", "columns": [{"name", "kind", "method",
    "hits": [{"rank", "id", "path", "name", "modality", "score", "movement", "baseline_rank",
    "contributions"}]}], "projection": {"method", "points": [{"label", "kind", "id", "x", "y"}]}}``.
    Movement = baseline rank - rank here (positive: moved up; None: the baseline never ranked it).
    """
    check_k(k)
    parsed = [parse_method(m) for m in methods]
    terms = as_terms(query)
    vectors, info = encode_terms(library, terms)
    available = list_sources(library, list(vectors), target)
    given = {e.name for e in extra_sources}  # plus the library's own (e.g. attach_bridges), once each
    extra_sources = [*extra_sources, *(e for e in library.extra_sources if e.name not in given)]
    extra_names = {e.name for e in extra_sources}
    chosen = select_sources(available, None if sources is None else [s for s in sources if s not in extra_names])
    lists = rank_sources(library, vectors, chosen, target, max(depth, k))
    quality: dict[str, Any] = {}
    for extra in extra_sources:
        if sources is not None and extra.name not in sources:
            continue
        ranked = extra.rank(terms[0][0], target, max(depth, k))
        if ranked:
            lists[extra.name] = ranked
            quality[extra.name] = extra.quality
    if not lists:
        raise UserError(
            f"No source can rank {target} items for this query (available: {', '.join(s.name for s in available) or 'none'})."
        )
    if weights and parsed and not any(m.fusion == "wsum" for m in parsed):
        weights = None  # weights only mean something to wsum; ignore rather than fail the other methods
    base = baseline or max(lists, key=lambda s: (next(iter(lists[s].values()), -np.inf), -list(lists).index(s)))
    if base not in lists:
        raise UserError(f"Unknown baseline source {base!r}. Sources here: {', '.join(lists)}.")
    base_rank = {d: r for r, d in enumerate(lists[base], start=1)}

    ids = {int(d) for lst in lists.values() for d in list(lst)[:k]}
    columns: list[dict[str, Any]] = []
    for name, lst in lists.items():
        col = {"name": name, "kind": "single", "method": None, "hits": _hits(lst, k, base_rank, None)}
        if name in quality:
            col["quality"] = quality[name]
        columns.append(col)
    for m in parsed:
        fused = fuse(lists, m, weights)
        contrib = contributions(lists, m, weights)
        ids |= {int(d) for d in list(fused)[:k]}
        columns.append({"name": m.name, "kind": "fused", "method": m.name, "hits": _hits(fused, k, base_rank, contrib)})
    items = library.collection.get_many(sorted(ids))
    for col in columns:
        for h in col["hits"]:
            it = items.get(h["id"])
            h.update(
                path=it.path if it else None,
                name=Path(it.path).name if it else None,
                modality=it.modality if it else None,
                caption=it.caption if it else None,
                transcript=it.transcript if it else None,
            )
    space = next((s.space for s in chosen if s.name == base), None) or next(iter(vectors))
    return {
        "query": info,
        "target": target,
        "k": k,
        "depth": depth,
        "sources": [s.to_json() for s in chosen]
        + [{"name": e.name, "description": e.description, "quality": e.quality} for e in extra_sources if e.name in lists],
        "baseline": base,
        "weights": dict(weights or {}),
        "columns": columns,
        "projection": project(library, vectors.get(space), space, sorted(ids), items, projection),
    }


def _hits(ranked: Mapping[str, float], k: int, base_rank: dict[str, int], contrib: dict[str, dict[str, float]] | None) -> list[dict[str, Any]]:
    out = []
    for r, (d, s) in enumerate(list(ranked.items())[:k], start=1):
        b = base_rank.get(d)
        hit: dict[str, Any] = {"rank": r, "id": int(d), "score": round(float(s), 6), "baseline_rank": b, "movement": (b - r) if b else None}
        if contrib is not None:
            hit["contributions"] = {src: round(v, 6) for src, v in contrib.get(d, {}).items()}
        out.append(hit)
    return out


def movement_tag(hit: dict[str, Any]) -> str:
    """Rank movement against the baseline source: ``▲2`` (moved up 2), ``▼1``, ``=`` or ``new`` (baseline never ranked it)."""
    mv = hit.get("movement")
    if mv is None:
        return "new"
    return "=" if mv == 0 else (f"▲{mv}" if mv > 0 else f"▼{-mv}")


def lab_table(result: dict[str, Any]) -> list[list[Any]]:
    """Rows for a side-by-side table: one row per rank, one cell per column.

    A cell is ``item name · score``; fused cells add the movement vs the baseline (``▲2`` / ``▼1`` / ``=`` /
    ``new``). Fewer rows than k when the collection holds fewer items.
    """
    cols = result["columns"]
    rows = []
    for r in range(max((len(c["hits"]) for c in cols), default=0)):
        row: list[Any] = [r + 1]
        for c in cols:
            if r >= len(c["hits"]):
                row.append("")
                continue
            h = c["hits"][r]
            cell = f"{h.get('name') or h['id']} · {h['score']:.4g}"
            row.append(f"{cell} {movement_tag(h)}" if c["kind"] == "fused" else cell)
        rows.append(row)
    return rows


__all__ = ["lab_table", "movement_tag", "project", "run_lab"]
