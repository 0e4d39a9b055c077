"""``python -m crossmodal_demo index``: add files or folders to a collection (created if new)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crossmodal_demo.cli.output import print_json
from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.library import open_library


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``index`` on the CLI's subparsers."""
    ix = sub.add_parser("index", parents=[common], help="add files or folders to a collection (created if new)")
    ix.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ix.add_argument("--collection", required=True)
    ix.add_argument("--preset", default=None, help="auto (default), clip or offline; auto picks clip when its weights can be had, else offline")
    ix.add_argument("--max-audio-seconds", type=float, default=None, help="longest audio accepted (default 600)")
    ix.add_argument("--batch-size", type=int, default=None)
    ix.add_argument("--json", action="store_true", help="print the report as JSON")
    ix.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    """``index``: add files/folders; tqdm progress on stderr; per-file errors listed at the end."""
    missing = [str(p) for p in args.paths if not Path(p).exists()]
    if missing and len(missing) == len(args.paths):
        raise UserError(f"No such file or folder: {', '.join(missing)}")
    lib = open_library(config, args.collection, preset=args.preset, create=True, overrides=args.encoders)
    print(f"preset {lib.encoders.preset.name}: {lib.preset_reason}", file=sys.stderr)
    bar = tqdm(total=0, unit="file", desc=f"indexing into {args.collection}", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(name[:30], refresh=False)

    try:
        report = index_paths(lib.collection, lib.encoders, args.paths, config, on_progress=progress)
    finally:
        bar.close()
        lib.collection.close()
    if args.json:
        print_json({"collection": args.collection, **report.to_json()})
        return 0
    print(
        f"added {len(report.added)} item(s) to {args.collection!r} in {report.seconds:.1f} s "
        f"({report.items_per_second:.1f} items/s); {len(report.duplicates)} already indexed; "
        f"{len(report.problems)} skipped."
    )
    if report.ignored:
        kinds = Counter(Path(p).suffix.lower() or Path(p).name for p in report.ignored)
        print(f"ignored {len(report.ignored)} file(s) of other types: " + ", ".join(f"{k} ×{v}" for k, v in kinds.most_common()))
    for n in report.notes:
        print(f"  note: {n.path}: {n.reason}")
    if report.problems:
        print("skipped files:")
        for p in report.problems:
            print(f"  {p.path}: {p.reason}")
    return 0
