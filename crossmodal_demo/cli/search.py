"""``python -m crossmodal_demo search``: one query (text, image or audio) → ranked hits."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crossmodal_demo.analysis.bridge import attach_bridges
from crossmodal_demo.cli.args import positive_int
from crossmodal_demo.cli.faults import closing
from crossmodal_demo.cli.output import display, print_json
from crossmodal_demo.config import Config
from crossmodal_demo.retrieval.fusion import DEFAULT_FUSION, RAW_MAX, search_fusion
from crossmodal_demo.retrieval.library import open_library
from crossmodal_demo.retrieval.query import TARGETS, Query


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``search`` on the CLI's subparsers."""
    se = sub.add_parser("search", parents=[common], help="search a collection by text, image or audio")
    se.add_argument("--collection", required=True)
    q = se.add_mutually_exclusive_group()
    q.add_argument("--text")
    q.add_argument("--image", type=Path)
    q.add_argument("--audio", type=Path)
    se.add_argument("--target", default="any", choices=list(TARGETS))
    se.add_argument("-k", type=positive_int, default=10, help="hits to return, ≥ 1 (default 10)")
    se.add_argument(
        "--fusion",
        default=None,
        metavar="METHOD",
        help=f"how the per-source rankings are combined: any fusion method of the lab (e.g. rrf, combmnz, mean-zscore) "
        f"or '{RAW_MAX}' (best raw cosine, the old behaviour). Default: CROSSMODAL_FUSION, else {DEFAULT_FUSION}",
    )
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    """``search``: one query → ranked hits (table or JSON)."""
    query = Query(text=args.text, image=args.image, audio=args.audio)
    query.check(config)  # "exactly one query" and the text budget, before any model loads
    fusion = search_fusion(args.fusion if args.fusion is not None else config.fusion)  # a typo fails before models load
    lib = open_library(config, args.collection, overrides=args.encoders)
    with closing(lib.collection):
        attach_bridges(lib)  # clip preset: sound → picture through CLAP→CLIP joins the fused search (no-op otherwise)
        result = lib.search.search(query, target=args.target, k=args.k, fusion=fusion)
    if args.json:
        print_json(result.to_json())
        return 0
    if result.query.get("transcript") is not None:
        print(f"query transcript: {display(repr(result.query['transcript']))}")
    if not result.hits:
        print(f"no {args.target if args.target != 'any' else ''} items in {display(repr(args.collection))} to return.".replace("  ", " "))
    for h in result.hits:
        extra = h.caption or h.transcript or ""
        print(f"{h.rank:>3}  {h.score:6.3f}  {h.match:<6}  {h.modality:<5}  {h.space}/{h.channel:<7}  {display(h.path)}" + (f"  — {display(extra[:80])}" if extra else ""))
    return 0
