"""Fusion lab and evaluation for one visitor, on the collection they browse (read-only work).

The lab ranks one query by every single source and fusion method; the evaluation scores them on
labelled queries. An uploaded qrels file is a .jsonl/.csv (queries by text, or naming items of the
collection) or a .zip holding the qrels file and its query media: query files are resolved only
inside that zip or among the collection's items — never from other server paths.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.analysis.bridge import attach_bridges
from crossmodal_demo.analysis.qrels import parse_qrels
from crossmodal_demo.analysis.evaluate import evaluate_qrels
from crossmodal_demo.analysis.lab import run_lab
from crossmodal_demo.app.jobs import stoppable
from crossmodal_demo.app.demo_collection import DEMO_BENCHMARK, DEMO_DATA, DEMO_NAME
from crossmodal_demo.app.search_actions import as_k, make_query
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import ProgressFn
from crossmodal_demo.ingest.uploads import UploadBudget, extract_zip
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, RANX_LOCK, fuse, method_names, parse_method, parse_weights
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.query import check_target
from crossmodal_demo.retrieval.sources import list_sources, target_modalities

log = logging.getLogger(__name__)
LAB_METHODS = ("rrf", "mean-zscore", "wsum-minmax")  # the lab's default fusion methods
MAX_LAB_K = 20
QRELS_EXTS = (".jsonl", ".csv", ".zip")
EXPORT_COLUMNS = ["name", "kind", "answered", "recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "p_ndcg@10", "significant", "best_single"]


def warm_up_fusion(service: Any) -> threading.Thread:
    """Compile ranx's numba kernels (~12 s once per process) in a daemon thread, one method at a time and only
    while no search runs (compiling holds the GIL: a search would wait for it); serving never waits."""

    def run() -> None:
        a, b = {"d1": 0.9, "d2": 0.5}, {"d2": 2.0, "d3": 1.0}
        try:
            for name in method_names():
                service.wait_until_idle()
                with RANX_LOCK:
                    fuse({"a": a, "b": b}, name)
            service.fusion_warm = "ready"
        except Exception:  # fusion then compiles on first use; the app keeps serving
            log.exception("fusion warm-up failed")
            service.fusion_warm = "failed"

    service.fusion_warm = "warming"
    t = threading.Thread(target=run, name="fusion-warm-up", daemon=True)
    t.start()
    return t


def lab_sources(service: Any, visitor: Visitor, target: str = "image") -> list[str]:
    """Source names (``space/channel``) the visitor's collection holds for ``target`` items (no model loads)."""
    target_modalities(target)
    _, ref = service.browse_ref(visitor)
    with service.library(ref) as lib:
        spaces = sorted({space for space, _, _ in lib.collection.index_keys()})
        return [s.name for s in list_sources(lib, spaces, target)]


def _query_spaces(lib: Library, modalities: Sequence[str]) -> set[str]:
    """Spaces every one of ``modalities`` is encoded into with this preset (no model loads)."""
    spaces: set[str] | None = None
    for m in modalities:
        mine = {spec.space for spec in lib.encoders.specs_for(m)}
        spaces = mine if spaces is None else spaces & mine
    return spaces or set()


def lab(service: Any, visitor: Visitor, text: Any = None, image: Any = None, audio: Any = None, target: str = "image",
        sources: Sequence[str] | None = None, methods: Sequence[str] | None = LAB_METHODS, k: Any = 10,
        weights: str | dict[str, float] | None = None, extra_text: str | None = None, extra_weight: Any = 0.0) -> dict[str, Any]:
    """One query ranked by each single source and each fusion method, side by side (:func:`analysis.lab.run_lab`);
    kept in ``visitor.last_lab``. ``extra_text`` × ``extra_weight`` (may be negative) is added to the query."""
    check_target(str(target)[:40])
    k = as_k(k, MAX_LAB_K)
    methods = [str(m) for m in (methods or [])][:40]
    for m in methods:
        parse_method(m)
    if sources is not None and not list(sources):
        raise UserError("Tick at least one source to rank with.")
    query = make_query(service, text, image, audio, "rank")
    terms: list[tuple[Any, float]] = [(query, 1.0)]
    extra_text = (extra_text or "").strip()
    try:
        extra_weight = float(extra_weight or 0.0)
    except (TypeError, ValueError):
        raise UserError(f"The weight of the added text must be a number (got {str(extra_weight)[:20]!r}).") from None
    if not np.isfinite(extra_weight):
        raise UserError("The weight of the added text must be a finite number.")
    if extra_text and extra_weight != 0.0:
        terms.append((make_query(service, extra_text, None, None), extra_weight))
    label, ref = service.browse_ref(visitor)
    with service.library(ref) as lib:
        reach = _query_spaces(lib, [q.modality for q, _ in terms])
        skipped: list[str] = []
        if sources is not None:
            sources = [str(s)[:80] for s in sources][:40]
            skipped = [s for s in sources if s.split("/", 1)[0] not in reach]
            sources = [s for s in sources if s not in skipped]
            if not sources:
                raise UserError(
                    f"None of the ticked sources ({', '.join(skipped)}) can rank for this query: it is encoded in the "
                    f"{', '.join(sorted(reach)) or 'no'} space(s). Tick a source of one of those spaces."
                )
        if isinstance(weights, str) and len(weights) > 2000:
            raise UserError("The weights text is too long (at most 2,000 characters).")
        w = parse_weights(weights)
        spaces = sorted({space for space, _, _ in lib.collection.index_keys()})
        used = set(sources) if sources is not None else {s.name for s in list_sources(lib, spaces, target) if s.space in reach}
        ignored = sorted(n for n in w if n not in used)
        w = {n: v for n, v in w.items() if n in used}
        with RANX_LOCK:  # waits for the warm-up (or an evaluation) rather than crash numba
            res = run_lab(lib, terms if len(terms) > 1 else query, target, None if sources is None else list(sources), methods, k, w or None,
                          extra_sources=attach_bridges(lib))  # clip preset: sound → picture through CLAP→CLIP
    for col in res["columns"]:
        for h in col["hits"]:
            h.pop("path", None)  # server paths stay on the server; the name identifies the item
    res.update(collection=label, skipped_sources=skipped, ignored_weights=ignored)
    visitor.last_lab = res
    visitor.last_refs = {**visitor.last_refs, label: ref}
    return res


def _qrels_from_upload(service: Any, upload: Path) -> tuple[Path, Path | None]:
    """(qrels file, folder query files may come from) for an uploaded .jsonl/.csv or .zip."""
    ext = upload.suffix.lower()
    if ext not in QRELS_EXTS:
        raise UserError(f"Qrels must be a .jsonl or .csv file, or a .zip holding one with its query files (got '{upload.name[:80]}').")
    if ext != ".zip":
        return upload, None
    dest = Path(tempfile.mkdtemp(prefix="crossmodal-qrels-"))
    budget = UploadBudget(service.config.max_upload_bytes, service.config.max_qrels_queries + 1,
                          "CROSSMODAL_MAX_UPLOAD_BYTES", "CROSSMODAL_MAX_QRELS_QUERIES")
    res = extract_zip(upload, dest, budget, service.config.max_file_bytes, extra_names=("*.jsonl", "*.csv"),
                      max_manifest_bytes=service.config.max_manifest_bytes)
    found = sorted(p for p in dest.rglob("*") if p.suffix.lower() in (".jsonl", ".csv") and p.name not in ("captions.csv", "captions.jsonl"))
    if not found:
        raise UserError(f"'{upload.name[:80]}' holds no .jsonl or .csv qrels file" + (f" ({res.problems[0].reason})." if res.problems else "."))
    return found[0], dest


def evaluate(service: Any, visitor: Visitor, qrels_file: Any = None, methods: Sequence[str] | None = None,
             progress: ProgressFn | None = None, stat_test: str = "student") -> dict[str, Any]:
    """Score every single source and fusion method of the visitor's collection on labelled queries.

    ``qrels_file`` None: the shipped demo benchmark (demo collection only). Kept in ``visitor.last_eval``.
    """
    methods = list(DEFAULT_METHODS) if methods is None else [str(m) for m in methods][:40]
    for m in methods:
        parse_method(m)
    label, ref = service.browse_ref(visitor)
    if qrels_file in (None, ""):
        if label != DEMO_NAME:
            raise UserError(f"The demo benchmark labels items of the '{DEMO_NAME}' collection, but you are on '{label}'. "
                            f"Switch to '{DEMO_NAME}', or upload a qrels file for this collection.")
        if service.build.state == "building":
            raise UserError(f"The demo collection is still being built ({service.build.done}/{service.build.total or '?'} files); "
                            "evaluate when it is done, or the missing items would count as misses.")
        path, root, kind = DEMO_BENCHMARK, DEMO_DATA, "demo"
    else:
        path, root = _qrels_from_upload(service, Path(str(qrels_file)))
        kind = "uploaded"
    if progress and RANX_LOCK.acquire(blocking=False):
        RANX_LOCK.release()
    elif progress:
        progress(0, 1, "waiting for the fusion warm-up or another lab run to finish…")
    with service.jobs.track(visitor.session) as flag, service.library(ref) as lib:
        # Budgets (bytes, number of queries) and bad lines are checked before waiting for the fusion lock,
        # so an oversized file is refused at once even while a lab run or the warm-up holds it.
        parse_qrels(path, query_root=root, collection=lib.collection, allow_files=kind == "demo",
                    max_queries=service.config.max_qrels_queries, max_bytes=service.config.max_manifest_bytes)
        with RANX_LOCK:
            doc = evaluate_qrels(lib, path, methods, on_progress=stoppable(progress, flag, "the evaluation"), stat_test=stat_test,
                                 query_root=root, allow_files=kind == "demo", max_queries=service.config.max_qrels_queries)
    doc.update(benchmark=kind, qrels_name=Path(path).name, qrels=Path(path).name, collection=label)
    visitor.last_eval = doc
    return doc


def evaluation_rows(doc: dict[str, Any]) -> list[list[Any]]:
    """One row per source / method: name, kind, answered, the five metrics, p of nDCG@10 vs the best single, significant, best."""
    rows = []
    for r in doc.get("results", []):
        m = r["metrics"]
        test = (r.get("vs_best_single") or {}).get("ndcg@10") or {}
        rows.append(
            [r["name"], r["kind"], r.get("answered", ""), *(round(m.get(k, 0.0), 4) for k in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")),
             "" if test.get("p_value") is None else round(test["p_value"], 4), bool(test.get("significant")), bool(r.get("best_single"))]
        )
    return rows


def export_evaluation(doc: dict[str, Any] | None) -> dict[str, str]:
    """Write ``evaluation.csv`` and ``evaluation.json`` into a new temporary folder; returns their paths."""
    if not doc or not doc.get("results"):
        raise UserError("Run an evaluation first; there is nothing to export yet.")
    out = Path(tempfile.mkdtemp(prefix="crossmodal-eval-"))
    csv_path, json_path = out / "evaluation.csv", out / "evaluation.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(evaluation_rows(doc))
    json_path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"csv": str(csv_path), "json": str(json_path)}


__all__ = [
    "LAB_METHODS", "MAX_LAB_K", "evaluate", "evaluation_rows", "export_evaluation", "lab", "lab_sources",
    "warm_up_fusion",
]
