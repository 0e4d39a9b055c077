"""``python -m crossmodal_demo list``: the items of a collection and their counts (loads no model)."""

from __future__ import annotations

import argparse
from typing import Any

from crossmodal_demo.cli.faults import closing
from crossmodal_demo.cli.output import display, print_json
from crossmodal_demo.config import Config
from crossmodal_demo.index.protocol import open_collection
from crossmodal_demo.ingest.media import MODALITIES


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``list`` on the CLI's subparsers."""
    ls = sub.add_parser("list", parents=[common], help="list the items of a collection")
    ls.add_argument("--collection", required=True)
    ls.add_argument("--modality", choices=list(MODALITIES), default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """``list``: items and counts (no model is loaded)."""
    coll = open_collection(config, args.collection)  # SQLite + FAISS or Milvus, as its manifest records
    with closing(coll):
        items = coll.items(args.modality)
        counts = coll.counts()
        if args.json:
            docs = [{**it.to_json(), "spaces": coll.spaces_of(it.id)} for it in items]
            print_json({"collection": coll.name, "preset": coll.manifest.get("preset"), "items": docs, "counts": counts})
            return 0
        print(f"collection {display(repr(coll.name))} (preset {display(coll.manifest.get('preset'))}): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for it in items:
            extra = it.caption or it.transcript or it.note or ""
            print(f"{it.id:>6}  {it.modality:<5}  {display(it.path)}" + (f"  — {display(extra[:80])}" if extra else ""))
    return 0
