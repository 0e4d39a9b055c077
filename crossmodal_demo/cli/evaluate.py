"""``python -m crossmodal_demo evaluate``: score every source and fusion method on a labelled qrels file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from crossmodal_demo.analysis.evaluate import evaluate_qrels
from crossmodal_demo.cli.args import positive_int
from crossmodal_demo.cli.faults import closing
from crossmodal_demo.cli.output import display, print_json
from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, method_names, parse_method, parse_weights
from crossmodal_demo.retrieval.library import open_library
from crossmodal_demo.retrieval.sources import DEFAULT_DEPTH

SHORT = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr": "MRR", "ndcg@10": "nDCG@10"}


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``evaluate`` on the main parser's subparsers."""
    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="score sources and fusion methods on a labelled qrels file (ranx metrics)",
        description="Run every query of a qrels file through each single source and each fusion method; "
        "print recall@1/5/10, MRR and nDCG@10 with paired significance against the best single source.",
    )
    ev.add_argument("--collection", required=True)
    ev.add_argument("--qrels", required=True, type=Path, help="JSONL (or .csv) file, one query a line")
    ev.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help=f"fusion methods (default: {' '.join(DEFAULT_METHODS)}; 'none' = single sources only). "
        f"Accepted: {', '.join(method_names())}",
    )
    ev.add_argument("--weights", default=None, help="wsum weights per source, e.g. text/content=0.7,text/caption=0.3")
    ev.add_argument("--depth", type=positive_int, default=DEFAULT_DEPTH, help=f"items ranked per source (default {DEFAULT_DEPTH})")
    ev.add_argument("--stat-test", choices=["student", "fisher"], default="student", help="paired test (default: student t-test)")
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("--runs-out", type=Path, default=None, metavar="DIR", help="write DIR/<row>.run (TREC) and DIR/qrels.trec")
    ev.set_defaults(func=cmd_evaluate)


def parse_methods(given: list[str] | None) -> list[str]:
    """CLI ``--methods`` (space- or comma-separated; 'none' for single sources only) → method names."""
    if given is None:
        return list(DEFAULT_METHODS)
    names = [m.strip() for g in given for m in g.split(",") if m.strip()]
    return [] if names == ["none"] else names


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    """``evaluate``: results table (or JSON); bad qrels lines are listed on stderr, the rest still runs."""
    methods = parse_methods(args.methods)
    for m in methods:
        parse_method(m)  # a typo fails before the collection and models load
    weights = parse_weights(args.weights) or None
    if not args.qrels.is_file():
        raise UserError(f"Qrels file not found: {display(args.qrels)}")
    lib = open_library(config, args.collection, overrides=args.encoders)
    with closing(lib.collection):
        doc = evaluate_qrels(
            lib, args.qrels, methods, depth=args.depth, weights=weights, stat_test=args.stat_test, runs_out=args.runs_out
        )
    for p in doc["problems"]:
        where = f"line {p['line']}" if p["line"] else "file"
        print(display(f"qrels {args.qrels}: {where}: {p['message']}"), file=sys.stderr)
    if args.json:
        print_json(doc)
        return 0
    print("\n".join(display(line) for line in format_report(doc).split("\n")))
    return 0


def format_report(doc: dict[str, Any]) -> str:
    """The results as a plain-text table plus the per-pair winners."""
    metrics = doc["metrics"]
    lines = [
        f"collection {doc['collection']!r}: {doc['queries']} queries from {doc['qrels']}"
        + (f" ({len(doc['problems'])} qrels line(s) skipped, see stderr)" if doc["problems"] else "")
        + (f"; {doc['excluded_query_items']} query file(s) are items themselves and were left out of their rankings" if doc.get("excluded_query_items") else ""),
        "",
    ]
    width = max(len(r["name"]) for r in doc["results"]) + 2
    head = f"{'row':<{width}}{'kind':<8}{'n':>4}" + "".join(f"{SHORT.get(m, m):>9}" for m in metrics) + f"  p vs best single ({SHORT.get(metrics[-1], metrics[-1])})"
    lines += [head, "-" * len(head)]
    for r in doc["results"]:
        cells = "".join(f"{r['metrics'][m]:9.3f}" for m in metrics)
        if r.get("best_single"):
            note = "  (best single)"
        elif r.get("vs_best_single"):
            t = r["vs_best_single"][metrics[-1]]
            note = "  –" if t["p_value"] is None else f"  {t['p_value']:.3f}" + (" *" if t["significant"] else "")
        else:
            note = ""
        lines.append(f"{r['name']:<{width}}{r['kind']:<8}{r.get('answered', 0):>4}{cells}{note}")
    lines.append(f"n = queries the row could rank at all (others score 0); * significant at p < {doc['max_p']} ({doc['stat_test']}, paired over queries)")
    if doc["by_pair"]:
        lines += ["", "by query type (nDCG@10; a source missing for a pair is not listed there):"]
        for p in doc["by_pair"]:
            rows = {r["name"]: r for r in p["results"]}
            s = rows[p["best_single"]]["metrics"].get("ndcg@10", 0.0)
            f = rows[p["best_fused"]]["metrics"].get("ndcg@10", 0.0) if p["best_fused"] else None
            verdict = {"tie": "tie", "single": "single source wins", "fused": "fusion wins"}[p["winner_kind"]]
            lines.append(
                f"  {p['pair']:<14} n={p['queries']:<3} best single {p['best_single']} {s:.3f}"
                + (f", best fused {p['best_fused']} {f:.3f}" if f is not None else "")
                + f"  → {verdict}"
            )
    ms = doc.get("match_strength") or {}
    if ms.get("negatives"):  # match strength: only meaningful when the qrels hold negative queries
        lines += ["", f"match strength (main search, top {ms['k']}): negative queries whose top hit is weak "
                  f"{ms['negatives_weak']:.2f} (n={ms['negatives']}); answered positive queries whose top relevant hit is strong "
                  + (f"{ms['positives_strong']:.2f} (n={ms['positives_answered']})" if ms["positives_strong"] is not None else "–")]
    if doc.get("runs_out"):
        lines += ["", f"runs written: {len(doc['runs_out'])} run files + qrels.trec in {Path(next(iter(doc['runs_out'].values()))).parent}"]
    return "\n".join(lines)
