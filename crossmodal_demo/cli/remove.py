"""``python -m crossmodal_demo remove``: delete items by id or path from every space."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crossmodal_demo.cli.args import id_or_path
from crossmodal_demo.cli.faults import closing
from crossmodal_demo.cli.output import EXIT_USAGE, display, print_json
from crossmodal_demo.config import Config
from crossmodal_demo.index.protocol import open_collection
from crossmodal_demo.retrieval.library import resolve_refs


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``remove`` on the CLI's subparsers."""
    rm = sub.add_parser("remove", parents=[common], help="remove items by id or path")
    rm.add_argument("--collection", required=True)
    rm.add_argument("refs", nargs="+", metavar="ID_OR_PATH", type=id_or_path)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=cmd_remove)


def cmd_remove(args: argparse.Namespace, config: Config) -> int:
    """``remove``: delete items by id or path; exit 2 when nothing matched."""
    coll = open_collection(config, args.collection)  # SQLite + FAISS or Milvus, as its manifest records
    with closing(coll):
        items, unknown = resolve_refs(coll, args.refs)
        removed = coll.remove([i.id for i in items])
    if args.json:
        print_json({"removed": removed, "unknown": unknown})
    else:
        for it in items:
            print(f"removed {it.id}  {display(it.path)}")
        for u in unknown:
            print(f"not found: {display(u)}", file=sys.stderr)
    if unknown and not removed:
        return EXIT_USAGE
    return 0
