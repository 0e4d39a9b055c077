"""Evaluation: qrels → one run per source and per fusion method → metrics and significance (ranx).

The qrels format and its checks live in :mod:`.qrels`, TREC files in :mod:`.trec`. When a query file
is itself an item of the collection (same content), that item is left out of every ranking for that
query, the usual protocol for query-by-example.

Match strength (see :mod:`crossmodal_demo.retrieval.calibration`) is measured on the main search's
own ranking (default fusion, top :data:`MATCH_K`): the share of *negative* queries (qrels lines with
``"negative": true``; left out of the ranking metrics) whose top hit is weak, and the share of
answered positive queries (a relevant item in the top ``MATCH_K``) whose best-ranked relevant hit is strong.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.analysis.qrels import QrelsProblem, QrelsQuery, parse_qrels, resolve_qrels
from crossmodal_demo.analysis.trec import write_runs
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import ProgressFn
from crossmodal_demo.ingest.hashing import file_sha256
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, RANX_LOCK, RankedList, break_ties, fuse_runs, parse_method
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.sources import DEFAULT_DEPTH, list_sources, rank_sources

METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")
MATCH_K = 10  # the main search's default page: match strength is judged on what a user sees
RANKING_METRIC = "ndcg@10"  # picks the "best" row; ties fall to mrr then recall@1
STAT_TESTS = ("student", "fisher")


# --------------------------------------------------------------------------- runs and metrics
@dataclass
class EvalRuns:
    """Everything ``evaluate`` computed before metrics: per-row runs over item-id doc ids."""

    queries: list[QrelsQuery]
    singles: dict[str, dict[str, RankedList]]  # source name → qid → ranked list
    fused: dict[str, dict[str, RankedList]]  # method name → qid → ranked list
    problems: list[QrelsProblem]
    excluded: dict[str, int]  # qid → item id left out (the query file itself)
    sources: list[dict[str, Any]]
    available: dict[str, list[str]] = field(default_factory=dict)  # qid → sources that exist for it
    matches: list[dict[str, Any]] = field(default_factory=list)  # per query: match strength of the main search's hits


def build_runs(
    library: Library,
    queries: Sequence[QrelsQuery],
    methods: Sequence[str] = DEFAULT_METHODS,
    depth: int = DEFAULT_DEPTH,
    weights: dict[str, float] | None = None,
    on_progress: ProgressFn | None = None,
) -> EvalRuns:
    """Encode each query, rank every source to ``depth`` and fuse with each method.

    A query that cannot be encoded (unreadable file, no speech) becomes a problem and is skipped.
    ``on_progress(done, total, description)`` is called before each query and once before fusing.
    """
    parsed = [parse_method(m) for m in methods]
    singles: dict[str, dict[str, RankedList]] = {}
    described: dict[str, dict[str, Any]] = {}
    ok: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    excluded: dict[str, int] = {}
    available: dict[str, list[str]] = {}
    matches: list[dict[str, Any]] = []
    for n, q in enumerate(queries):
        if on_progress:
            on_progress(n, len(queries), f"query {n + 1}/{len(queries)}: {q.id}")
        try:
            vectors, _ = library.search.encode_query(q.query)
        except UserError as exc:
            problems.append(QrelsProblem(q.line, f"query {q.id!r} cannot be used: {exc}"))
            continue
        exclude: set[int] = set()
        path = q.query.image or q.query.audio
        if path is not None:
            same = library.collection.find_by_hash(file_sha256(Path(path)))
            if same is not None:
                exclude.add(same.id)
                excluded[q.id] = same.id
                if same.id in q.items:
                    q.items = {i: g for i, g in q.items.items() if i != same.id}
                    what = "so it was dropped from 'relevant'" if q.items else "and no other relevant item is left: query skipped"
                    problems.append(
                        QrelsProblem(q.line, f"query {q.id!r}: the query file is itself the relevant item {Path(same.path).name!r}; it is left out of the rankings, {what}.")
                    )
                    if not q.items:
                        continue
        matches.append(_match_row(library, q, vectors, exclude))
        if q.negative:
            continue  # nothing relevant: no ranking metric, match strength only
        sources = list_sources(library, list(vectors), q.target)
        available[q.id] = [s.name for s in sources]
        for s in sources:
            described.setdefault(s.name, {"name": s.name, "space": s.space, "channel": s.channel, "description": s.description})
        for name, ranked in rank_sources(library, vectors, sources, q.target, depth, exclude).items():
            singles.setdefault(name, {})[q.id] = ranked
        ok.append(q)
    for per_query in singles.values():  # a source a query does not have ranks nothing for it
        for q in ok:
            per_query.setdefault(q.id, {})
    if on_progress:
        on_progress(len(queries), len(queries), f"fusing {len(parsed)} method(s) over {len(ok)} queries")
    fused = {m.name: fuse_runs(singles, m, _weights_present(weights, singles)) for m in parsed} if singles else {}
    return EvalRuns(ok, singles, fused, problems, excluded, list(described.values()), available, matches)


def _match_row(library: Library, q: QrelsQuery, vectors: dict[str, np.ndarray], exclude: set[int]) -> dict[str, Any]:
    """The main search's top-:data:`MATCH_K` for one query → its top hit's match and its best relevant hit's."""
    hits = library.search.search_vectors(vectors, q.target, MATCH_K, exclude=exclude, modality=q.query.modality)
    rel = next((h for h in hits if h.id in q.items), None)
    return {
        "id": q.id,
        "modality": q.query.modality,
        "negative": q.negative,
        "top_match": hits[0].match if hits else None,
        "relevant_rank": rel.rank if rel else None,
        "relevant_match": rel.match if rel else None,
    }


def match_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Shares from :func:`_match_row` rows: ``negatives_weak`` (top hit weak) and ``positives_strong``
    (best relevant hit strong, over answered positives); None when there is no such query."""
    neg = [r for r in rows if r["negative"] and r["top_match"] is not None]
    pos = [r for r in rows if not r["negative"] and r["relevant_match"] is not None]
    return {
        "k": MATCH_K,
        "negatives": len(neg),
        "negatives_weak": round(sum(r["top_match"] == "weak" for r in neg) / len(neg), 4) if neg else None,
        "positives_answered": len(pos),
        "positives_unanswered": sum(1 for r in rows if not r["negative"] and r["relevant_match"] is None),
        "positives_strong": round(sum(r["relevant_match"] == "strong" for r in pos) / len(pos), 4) if pos else None,
        "queries": list(rows),
    }


def _weights_present(weights: dict[str, float] | None, singles: dict[str, Any]) -> dict[str, float] | None:
    if not weights:
        return None
    unknown = sorted(set(weights) - set(singles))
    if unknown:
        raise UserError(f"--weights names unknown source(s) {', '.join(unknown)}. Sources in this evaluation: {', '.join(singles)}.")
    return weights


def ranx_qrels(queries: Sequence[QrelsQuery]):  # -> ranx.Qrels
    """ranx Qrels over item-id doc ids."""
    import ranx  # lazy: heavy import (numba kernels)

    return ranx.Qrels({q.id: {str(i): g for i, g in q.items.items()} for q in queries})


def ranx_run(run: dict[str, RankedList], name: str, qids: Sequence[str]):  # -> ranx.Run
    """ranx Run of the non-empty lists for ``qids`` (scores tie-broken; missing queries score 0)."""
    import ranx  # lazy: heavy import (numba kernels)

    r = ranx.Run(name=name)
    kept = [q for q in qids if run.get(q)]
    if kept:
        ordered = [break_ties(run[q]) for q in kept]
        r.add_multi(kept, [list(o) for o in ordered], [list(o.values()) for o in ordered])
    return r


def compute_metrics(queries: Sequence[QrelsQuery], run: dict[str, RankedList], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean of each metric over ``queries`` with ranx (a query with no ranked list scores 0)."""
    import ranx  # lazy: heavy import (numba kernels)

    qids = [q.id for q in queries]
    if not qids:
        return {m: 0.0 for m in metrics}
    r = ranx_run(run, "run", qids)
    if not r.run:
        return {m: 0.0 for m in metrics}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RANX_LOCK:
            res = ranx.evaluate(ranx_qrels(queries), r, list(metrics), make_comparable=True)
    res = res if isinstance(res, dict) else {metrics[0]: res}
    return {m: float(res[m]) for m in metrics}


def evaluate_runs(
    runs: EvalRuns, metrics: Sequence[str] = METRICS, stat_test: str = "student", max_p: float = 0.05
) -> dict[str, Any]:
    """Metrics per row (single sources, then fused), paired tests against the best single source, and a
    per-modality-pair breakdown. Returns the ``evaluate --json`` document (without file/collection fields)."""
    import ranx  # lazy: heavy import (numba kernels)

    if stat_test not in STAT_TESTS:
        raise UserError(f"Unknown statistical test {stat_test!r}. Choose one of: {', '.join(STAT_TESTS)}.")
    rows = [(n, "single", r) for n, r in runs.singles.items()] + [(n, "fused", r) for n, r in runs.fused.items()]
    results = [
        {"name": n, "kind": k, "metrics": compute_metrics(runs.queries, r, metrics), "answered": _answered(runs, n, k, runs.queries)}
        for n, k, r in rows
    ]
    doc: dict[str, Any] = {
        "queries": len(runs.queries),
        "metrics": list(metrics),
        "stat_test": {"student": "paired t-test", "fisher": "Fisher randomization test"}[stat_test],
        "max_p": max_p,
        "results": results,
        "best_single": None,
        "by_pair": [],
        "sources": runs.sources,
        "excluded_query_items": len(runs.excluded),
        "match_strength": match_summary(runs.matches),
    }
    singles = [r for r in results if r["kind"] == "single"]
    if not singles:
        return doc
    best = _best(singles, list(runs.singles))
    doc["best_single"] = best["name"]
    best["best_single"] = True
    others = [(n, r) for n, _, r in rows if n != best["name"]]
    if others and len(runs.queries) > 1:
        qids = [q.id for q in runs.queries]
        ranx_runs = [ranx_run(runs.singles[best["name"]], best["name"], qids)] + [ranx_run(r, n, qids) for n, r in others]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            with RANX_LOCK:
                report = ranx.compare(
                    ranx_qrels(runs.queries), ranx_runs, list(metrics), stat_test=stat_test, max_p=max_p, make_comparable=True
                )
        for res in results:
            if res["name"] == best["name"]:
                continue
            cmp = report.comparisons[frozenset([best["name"], res["name"]])]
            res["vs_best_single"] = {
                m: {"p_value": _finite(cmp[m]["p_value"]), "significant": bool(cmp[m]["significant"]) and _finite(cmp[m]["p_value"]) is not None}
                for m in metrics
            }
    for pair in sorted({q.pair for q in runs.queries}):
        qs = [q for q in runs.queries if q.pair == pair]
        # a source that does not exist for any query of this pair (e.g. captions of text items) is left out
        pres = [
            {"name": n, "kind": k, "metrics": compute_metrics(qs, r, metrics), "answered": _answered(runs, n, k, qs)}
            for n, k, r in rows
            if k == "fused" or _answered(runs, n, k, qs)
        ]
        order = [r["name"] for r in pres]
        best_s = _best([r for r in pres if r["kind"] == "single"], order)
        fused_rows = [r for r in pres if r["kind"] == "fused"]
        best_f = _best(fused_rows, order) if fused_rows else None
        winner = _best(pres, order)
        tie = best_f is not None and _key(best_f) == _key(best_s)
        doc["by_pair"].append(
            {
                "pair": pair,
                "queries": len(qs),
                "results": pres,
                "best_single": best_s["name"],
                "best_fused": best_f["name"] if best_f else None,
                "winner": winner["name"],
                "winner_kind": "tie" if tie else winner["kind"],
            }
        )
    return doc


def _key(r: dict[str, Any]) -> tuple[float, ...]:
    keys = [m for m in (RANKING_METRIC, "mrr", "recall@1") if m in r["metrics"]] or sorted(r["metrics"])
    return tuple(round(r["metrics"][k], 12) for k in keys)


def _best(results: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """Highest nDCG@10, then MRR, then recall@1; remaining ties go to the row listed first."""
    return max(results, key=lambda r: (_key(r), -order.index(r["name"])))


def _answered(runs: EvalRuns, name: str, kind: str, queries: Sequence[QrelsQuery]) -> int:
    """How many of ``queries`` this row could rank at all (a fused row: those with any source)."""
    if kind == "fused":
        return sum(1 for q in queries if runs.available.get(q.id))
    return sum(1 for q in queries if name in runs.available.get(q.id, []))


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def evaluate_qrels(
    library: Library,
    qrels_path: Path | str,
    methods: Sequence[str] = DEFAULT_METHODS,
    depth: int = DEFAULT_DEPTH,
    weights: dict[str, float] | None = None,
    stat_test: str = "student",
    runs_out: Path | str | None = None,
    on_progress: ProgressFn | None = None,
    *,
    query_root: Path | str | None = None,
    allow_files: bool = True,
    max_queries: int | None = None,
) -> dict[str, Any]:
    """The whole ``evaluate`` command as a function: parse, resolve, run, score, optionally write TREC files.

    Query-file policy (see :func:`.qrels.parse_qrels`): by default (CLI) relative query paths resolve
    against the qrels file's folder. With ``query_root`` (the folder an uploaded zip was extracted
    into) or ``allow_files=False`` (a bare uploaded qrels file), a query file must be inside
    ``query_root`` or name an item of the collection. ``max_queries`` defaults to
    ``library.config.max_qrels_queries``; the file may hold at most ``config.max_manifest_bytes``.
    ``on_progress(done, total, description)`` reports the per-query runs (see :func:`build_runs`).

    Returns the JSON document: ``{"collection", "qrels", "results": [{"name", "kind", "metrics", ...}],
    "by_pair", "best_single", "problems": [{"line", "message"}], ...}``. Raises UserError when no line is usable.
    """
    for m in methods:
        parse_method(m)  # fail on a typo before any model loads
    config = library.config
    queries, problems = parse_qrels(
        qrels_path,
        query_root=query_root,
        collection=library.collection,
        allow_files=allow_files,
        max_queries=config.max_qrels_queries if max_queries is None else max_queries,
        max_bytes=config.max_manifest_bytes,
    )
    queries, unresolved = resolve_qrels(library.collection, queries)
    problems += unresolved
    runs = build_runs(library, queries, methods, depth, weights, on_progress)
    problems += runs.problems
    problems.sort(key=lambda p: p.line)
    if not runs.queries:
        listing = "\n  ".join(str(p) for p in problems)
        raise UserError(f"No usable query in {qrels_path} ({len(problems)} problem(s)):\n  {listing}")
    doc = evaluate_runs(runs, stat_test=stat_test)
    doc = {
        "collection": library.collection.name,
        "qrels": str(qrels_path),
        "depth": depth,
        **doc,
        "problems": [asdict(p) for p in problems],
    }
    if runs_out is not None:
        doc["runs_out"] = write_runs(runs.queries, {**runs.singles, **runs.fused}, library.collection, Path(runs_out))
    return doc
