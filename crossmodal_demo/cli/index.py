"""``python -m crossmodal_demo index``: add files or folders to a collection (created if new)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crossmodal_demo.cli.args import positive_float, positive_int
from crossmodal_demo.cli.faults import closing
from crossmodal_demo.cli.output import display, print_json
from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.index.ray_engine import index_paths_ray
from crossmodal_demo.retrieval.library import open_library


def add_subcommands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``index`` on the CLI's subparsers."""
    ix = sub.add_parser("index", parents=[common], help="add files or folders to a collection (created if new)")
    ix.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ix.add_argument("--collection", required=True)
    ix.add_argument("--preset", default=None, help="auto (default), clip or offline; auto picks clip when its weights can be had, else offline")
    ix.add_argument("--max-audio-seconds", type=positive_float, default=None,
                    help="longest audio accepted, seconds > 0 (default 600; CROSSMODAL_MAX_AUDIO_SECONDS)")
    ix.add_argument("--batch-size", type=positive_int, default=None, help="files encoded together, ≥ 1 (default 16; CROSSMODAL_BATCH_SIZE)")
    ix.add_argument("--json", action="store_true", help="print the report as JSON")
    ix.add_argument("--store", choices=("sqlite", "milvus"), default=None,
                    help="where a NEW collection lives: sqlite (SQLite + FAISS, default) or milvus; remembered by the collection")
    ix.add_argument("--milvus-uri", default=None, metavar="URI",
                    help="Milvus to use with --store milvus: a local .db path (Milvus Lite, default <collection>/milvus.db) or http://host:19530")
    ix.add_argument("--engine", choices=("local", "ray"), default=None, help="local (default) or ray: decode + encode on Ray Data actors")
    ix.add_argument("--ray-address", default=None, metavar="ADDRESS", help="Ray cluster for --engine ray (default: start Ray on this machine)")
    ix.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    """``index``: add files/folders; tqdm progress on stderr; per-file errors listed at the end."""
    missing = [str(p) for p in args.paths if not Path(p).exists()]
    config = replace(config, **{k: v for k, v in (("store", args.store), ("milvus_uri", args.milvus_uri), ("engine", args.engine),
                                                  ("ray_address", args.ray_address)) if v is not None})
    if missing and len(missing) == len(args.paths):
        raise UserError(f"No such file or folder: {', '.join(display(m) for m in missing)}")
    lib = open_library(config, args.collection, preset=args.preset, create=True, overrides=args.encoders)
    print(f"preset {lib.encoders.preset.name}: {lib.preset_reason}", file=sys.stderr)
    bar = tqdm(total=0, unit="file", desc=f"indexing into {display(args.collection)}", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(display(name[:30]), refresh=False)

    with closing(lib.collection), closing(bar):
        if config.engine == "ray":  # the same report; per-file problems as with the local engine
            report = index_paths_ray(lib.collection, lib.encoders, args.paths, config, on_progress=progress, overrides=args.encoders)
        else:
            report = index_paths(lib.collection, lib.encoders, args.paths, config, on_progress=progress)
    if args.json:
        print_json({"collection": args.collection, **report.to_json()})
        return 0
    print(
        f"added {len(report.added)} item(s) to {display(repr(args.collection))} in {report.seconds:.1f} s "
        f"({report.items_per_second:.1f} items/s); {len(report.unchanged) + len(report.duplicates)} already indexed; "
        f"{len(report.problems)} skipped."
    )
    if report.ignored:
        kinds = Counter(Path(p).suffix.lower() or Path(p).name for p in report.ignored)
        print(f"ignored {len(report.ignored)} file(s) of other types: " + ", ".join(f"{display(k)} ×{v}" for k, v in kinds.most_common()))
    for n in report.notes:
        print(f"  note: {display(n.path)}: {display(n.reason)}")
    if report.problems:
        print("skipped files:")
        for p in report.problems:
            print(f"  {display(p.path)}: {display(p.reason)}")
    return 0
