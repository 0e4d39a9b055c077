"""Evaluation: qrels file → one run per source and per fusion method → metrics and significance (ranx).

Qrels are JSONL, one query a line, or CSV with the same columns::

    {"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}
    {"id": "q2", "image": "photos/cat.jpg", "target": "text", "relevant": {"pet_diary.txt": 2, "cafe_review.md": 1}}

Exactly one of ``text`` / ``image`` / ``audio``; ``relevant`` is a list (grade 1 each) or a
``{name: grade}`` map with integer grades ≥ 1; an optional ``note`` is ignored. A relevant name
matches an item by its full path, its path relative to the folder it was indexed from, or its file
name. Relative query paths resolve against the qrels file's folder. In CSV, ``relevant`` is a
``;``-separated list (``name=grade`` for grades) or a JSON list/map. Bad lines are reported one by
one with what was expected; the valid lines still run.

When a query file is itself an item of the collection (same content), that item is left out of every
ranking for that query, the usual protocol for query-by-example.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, RANX_LOCK, RankedList, break_ties, fuse_runs, parse_method
from crossmodal_demo.retrieval.search import TARGETS, Query
from crossmodal_demo.retrieval.sources import DEFAULT_DEPTH, list_sources, rank_sources

METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")
RANKING_METRIC = "ndcg@10"  # picks the "best" row; ties fall to mrr then recall@1
QUERY_FIELDS = ("text", "image", "audio")
FIELDS = ("id", *QUERY_FIELDS, "target", "relevant", "note")
EXPECTED = (
    'one JSON object per line with "id", exactly one of "text" / "image" / "audio" (a file path), '
    '"target" (image|text|audio|any) and "relevant" (a list of item names, or a {name: grade} map), e.g. '
    '{"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}'
)
STAT_TESTS = ("student", "fisher")


@dataclass
class QrelsProblem:
    """A qrels line that was skipped: 1-based line number (0 = the whole file) and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class QrelsQuery:
    """One valid qrels line. ``relevant`` maps names as written to grades; ``items`` item ids to grades."""

    line: int
    id: str
    query: Query
    modality: str
    target: str
    relevant: dict[str, int]
    items: dict[int, int] = field(default_factory=dict)

    @property
    def pair(self) -> str:
        """Query → target modality pair, e.g. ``text->image``."""
        return f"{self.modality}->{self.target}"


# --------------------------------------------------------------------------- parsing
def parse_qrels(path: Path | str) -> tuple[list[QrelsQuery], list[QrelsProblem]]:
    """Read a JSONL or CSV qrels file → (valid queries, problems). Raises UserError if nothing is usable."""
    path = Path(path).expanduser()
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"Qrels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read qrels file {path}: {exc}. Expected a UTF-8 JSONL or CSV file.") from None
    if not raw.strip():
        raise UserError(f"Qrels file {path} is empty. Expected {EXPECTED}.")
    base = path.parent
    rows = _csv_rows(raw, path) if path.suffix.lower() == ".csv" else _jsonl_rows(raw)
    queries: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, QrelsProblem):
            problems.append(row)
            continue
        try:
            q = _parse_row(row, line, base)
        except UserError as exc:
            problems.append(QrelsProblem(line, str(exc)))
            continue
        if q.id in seen:
            problems.append(QrelsProblem(line, f"duplicate id {q.id!r} (first used on line {seen[q.id]}); ids must be unique."))
            continue
        seen[q.id] = line
        queries.append(q)
    if not queries and not problems:
        raise UserError(f"Qrels file {path} holds no queries. Expected {EXPECTED}.")
    return queries, problems


def _jsonl_rows(raw: str) -> list[tuple[int, dict[str, Any] | QrelsProblem]]:
    out: list[tuple[int, dict[str, Any] | QrelsProblem]] = []
    for n, text in enumerate(raw.splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue  # blank lines and '#' comments are allowed
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            out.append((n, QrelsProblem(n, f"not valid JSON ({exc.msg} at column {exc.colno}). Expected {EXPECTED}.")))
            continue
        if not isinstance(row, dict):
            out.append((n, QrelsProblem(n, f"a JSON {type(row).__name__}, not an object. Expected {EXPECTED}.")))
            continue
        out.append((n, row))
    return out


def _csv_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any] | QrelsProblem]]:
    reader = csv.DictReader(io.StringIO(raw))
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in FIELDS]
    missing = [c for c in ("target", "relevant") if c not in header]
    if unknown or missing or not any(c in header for c in QUERY_FIELDS):
        raise UserError(
            f"Qrels CSV {path} has columns {', '.join(header) or '(none)'}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + ". Expected a header with id, one or more of text/image/audio, target, relevant (optional note)."
        )
    reader.fieldnames = header
    out: list[tuple[int, dict[str, Any] | QrelsProblem]] = []
    for row in reader:
        if None in row:  # more cells than header columns
            out.append((reader.line_num, QrelsProblem(reader.line_num, f"{len(header) + len(row[None])} cells for {len(header)} columns.")))
            continue
        clean = {k: v for k, v in row.items() if v not in (None, "")}
        if not clean:
            continue
        rel = clean.get("relevant", "").strip()
        if rel.startswith(("[", "{")):
            try:
                clean["relevant"] = json.loads(rel)
            except json.JSONDecodeError as exc:
                out.append((reader.line_num, QrelsProblem(reader.line_num, f"'relevant' is not valid JSON ({exc.msg}).")))
                continue
        elif rel:
            grades: dict[str, Any] = {}
            for part in (p.strip() for p in rel.split(";")):
                if part:
                    name, _, grade = part.rpartition("=") if "=" in part else (part, "", "1")
                    grades[name.strip()] = _int_or_text(grade.strip())
            clean["relevant"] = grades
        out.append((reader.line_num, clean))
    return out


def _int_or_text(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        return s


def _parse_row(row: dict[str, Any], line: int, base: Path) -> QrelsQuery:
    unknown = [k for k in row if k not in FIELDS]
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(map(repr, unknown))}. Expected {EXPECTED}.")
    qid = str(row.get("id", f"line{line}")).strip()
    if not qid or re.search(r"\s", qid):
        raise UserError(f"id {qid!r} must be non-empty and hold no spaces (it is written to TREC files).")
    given = [f for f in QUERY_FIELDS if row.get(f) not in (None, "")]
    if len(given) != 1:
        got = f"got {', '.join(given)}" if given else "got none"
        raise UserError(f"needs exactly one of \"text\", \"image\", \"audio\" ({got}).")
    modality = given[0]
    value = row[modality]
    if not isinstance(value, str):
        raise UserError(f"\"{modality}\" must be a string, got {type(value).__name__}.")
    if modality == "text":
        query = Query(text=value)
    else:
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise UserError(
                f"{modality} query file not found: {p} (relative paths resolve against the qrels file's folder, {base})."
            )
        query = Query(image=p) if modality == "image" else Query(audio=p)
    target = row.get("target")
    if target not in TARGETS:
        raise UserError(f"\"target\" is {target!r}; expected one of {', '.join(TARGETS)}.")
    return QrelsQuery(line, qid, query, modality, str(target), _parse_relevant(row.get("relevant")))


def _parse_relevant(rel: Any) -> dict[str, int]:
    if isinstance(rel, str):
        rel = [rel]
    if isinstance(rel, list):
        if not all(isinstance(r, str) and r.strip() for r in rel):
            raise UserError("\"relevant\" list must hold item names (non-empty strings).")
        rel = {r: 1 for r in rel}
    if not isinstance(rel, dict) or not rel:
        raise UserError(
            f"\"relevant\" is {rel!r}; expected a non-empty list of item names or a {{name: grade}} map, "
            'e.g. ["lion.jpg"] or {"lion.jpg": 2, "cat.jpg": 1}.'
        )
    out: dict[str, int] = {}
    for name, grade in rel.items():
        if isinstance(grade, bool) or not isinstance(grade, int) or grade < 1:
            raise UserError(f"grade of {name!r} is {grade!r}; grades are whole numbers ≥ 1 (list only relevant items).")
        out[str(name).strip()] = grade
    return out


# --------------------------------------------------------------------------- names → items
class ItemNames:
    """Resolve names to items: full path, path relative to the indexed root, or file name."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.items = {it.id: it for it in collection.items()}
        self.by_path: dict[str, int] = {}
        self.by_rel: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        self._docnos: dict[int, str] | None = None
        for it in self.items.values():
            self.by_path[os.path.normpath(it.path)] = it.id
            self.by_rel.setdefault(Path(os.path.relpath(it.path, it.root)).as_posix(), []).append(it.id)
            self.by_name.setdefault(Path(it.path).name, []).append(it.id)

    def resolve(self, name: str) -> tuple[int | None, str | None]:
        """(item id, None) or (None, why it matched nothing or several items)."""
        if os.path.isabs(os.path.expanduser(name)):
            hit = self.by_path.get(os.path.normpath(os.path.expanduser(name)))
            if hit is not None:
                return hit, None
        for table in (self.by_rel, self.by_name):
            ids = table.get(Path(name).as_posix() if table is self.by_rel else name)
            if ids and len(ids) == 1:
                return ids[0], None
            if ids:
                paths = ", ".join(self.items[i].path for i in ids[:4])
                return None, f"{name!r} is ambiguous: it matches {len(ids)} items ({paths}); give the path relative to the indexed folder or the full path"
        close = difflib.get_close_matches(Path(name).name, list(self.by_name), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return None, (
            f"unknown item {name!r} in collection {self.collection.name!r} (a name must be an item's full path, its path "
            f"relative to the indexed folder, or its file name; `list --collection {self.collection.name}` shows them).{hint}"
        )

    def docno(self, item_id: int) -> str:
        """A readable TREC doc id: the path relative to the indexed root with spaces → '_' (plus '#<id>' when
        two items would share it)."""
        if self._docnos is None:
            rels = {i: re.sub(r"\s", "_", Path(os.path.relpath(it.path, it.root)).as_posix()) for i, it in self.items.items()}
            counts: dict[str, int] = {}
            for r in rels.values():
                counts[r] = counts.get(r, 0) + 1
            self._docnos = {i: r if counts[r] == 1 else f"{r}#{i}" for i, r in rels.items()}
        return self._docnos[item_id]


def resolve_qrels(collection: Any, queries: Sequence[QrelsQuery]) -> tuple[list[QrelsQuery], list[QrelsProblem]]:
    """Map every relevant name to an item; a line with an unknown, ambiguous or wrong-modality name is skipped."""
    names = ItemNames(collection)
    ok: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    for q in queries:
        errors: list[str] = []
        items: dict[int, int] = {}
        for name, grade in q.relevant.items():
            item_id, why = names.resolve(name)
            if item_id is None:
                errors.append(str(why))
                continue
            modality = names.items[item_id].modality
            if q.target != "any" and modality != q.target:
                errors.append(f"relevant item {name!r} is {modality}, but the target is {q.target}: it can never be retrieved")
                continue
            items[item_id] = grade
        if errors:
            problems.append(QrelsProblem(q.line, "; ".join(errors) + "."))
            continue
        q.items = items
        ok.append(q)
    return ok, problems


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


def build_runs(
    library: Any,
    queries: Sequence[QrelsQuery],
    methods: Sequence[str] = DEFAULT_METHODS,
    depth: int = DEFAULT_DEPTH,
    weights: dict[str, float] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> EvalRuns:
    """Encode each query, rank every source to ``depth`` and fuse with each method.

    A query that cannot be encoded (unreadable file, no speech) becomes a problem and is skipped.
    ``on_progress(done, total, description)`` is called before each query and once before fusing.
    """
    from crossmodal_demo.index.pipeline import file_sha256

    parsed = [parse_method(m) for m in methods]
    singles: dict[str, dict[str, RankedList]] = {}
    described: dict[str, dict[str, Any]] = {}
    ok: list[QrelsQuery] = []
    problems: list[QrelsProblem] = []
    excluded: dict[str, int] = {}
    available: dict[str, list[str]] = {}
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
    return EvalRuns(ok, singles, fused, problems, excluded, list(described.values()), available)


def _weights_present(weights: dict[str, float] | None, singles: dict[str, Any]) -> dict[str, float] | None:
    if not weights:
        return None
    unknown = sorted(set(weights) - set(singles))
    if unknown:
        raise UserError(f"--weights names unknown source(s) {', '.join(unknown)}. Sources in this evaluation: {', '.join(singles)}.")
    return weights


def ranx_qrels(queries: Sequence[QrelsQuery]):  # -> ranx.Qrels
    """ranx Qrels over item-id doc ids."""
    import ranx

    return ranx.Qrels({q.id: {str(i): g for i, g in q.items.items()} for q in queries})


def ranx_run(run: dict[str, RankedList], name: str, qids: Sequence[str]):  # -> ranx.Run
    """ranx Run of the non-empty lists for ``qids`` (scores tie-broken; missing queries score 0)."""
    import ranx

    r = ranx.Run(name=name)
    kept = [q for q in qids if run.get(q)]
    if kept:
        ordered = [break_ties(run[q]) for q in kept]
        r.add_multi(kept, [list(o) for o in ordered], [list(o.values()) for o in ordered])
    return r


def compute_metrics(queries: Sequence[QrelsQuery], run: dict[str, RankedList], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean of each metric over ``queries`` with ranx (a query with no ranked list scores 0)."""
    import ranx

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
    import ranx

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
    library: Any,
    qrels_path: Path | str,
    methods: Sequence[str] = DEFAULT_METHODS,
    depth: int = DEFAULT_DEPTH,
    weights: dict[str, float] | None = None,
    stat_test: str = "student",
    runs_out: Path | str | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """The whole ``evaluate`` command as a function: parse, resolve, run, score, optionally write TREC files.

    ``on_progress(done, total, description)`` reports the per-query runs (see :func:`build_runs`).

    Returns the JSON document: ``{"collection", "qrels", "results": [{"name", "kind", "metrics", ...}],
    "by_pair", "best_single", "problems": [{"line", "message"}], ...}``. Raises UserError when no line is usable.
    """
    for m in methods:
        parse_method(m)  # fail on a typo before any model loads
    queries, problems = parse_qrels(qrels_path)
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
        doc["runs_out"] = write_runs(runs, library.collection, Path(runs_out))
    return doc


def write_runs(runs: EvalRuns, collection: Any, out_dir: Path) -> dict[str, str]:
    """Write ``<out_dir>/<row>.run`` (TREC run) per row and ``<out_dir>/qrels.trec``; returns {row: file}.

    Doc ids are item paths relative to the indexed folder (see :meth:`ItemNames.docno`); '/' in a
    row name becomes '_' in its file name (``text/caption`` → ``text_caption.run``).
    """
    names = ItemNames(collection)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "qrels.trec", "w", encoding="utf-8") as fh:
        for q in runs.queries:
            fh.writelines(f"{q.id} 0 {names.docno(item_id)} {grade}\n" for item_id, grade in sorted(q.items.items()))
    written: dict[str, str] = {}
    for name, run in [*runs.singles.items(), *runs.fused.items()]:
        path = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.run"
        tag = re.sub(r"\s", "_", name)
        with open(path, "w", encoding="utf-8") as fh:
            for q in runs.queries:
                fh.writelines(f"{q.id} Q0 {names.docno(int(doc))} {rank} {score!r} {tag}\n" for rank, (doc, score) in enumerate(break_ties(run.get(q.id, {})).items(), start=1))
        written[name] = str(path)
    return written
