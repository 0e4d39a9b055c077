"""Command line: ``python -m crossmodal_demo index|search|list|remove``. All printing lives here.

User mistakes (unknown collection, missing file, no query) print one ``error:`` line to stderr and
exit 2, with no traceback. An indexing run that finished exits 0 even when some files were skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from crossmodal_demo.config import load_config
from crossmodal_demo.errors import UserError

EXIT_USAGE = 2
EXTENSIONS: tuple[str, ...] = ("crossmodal_demo.cli.models", "crossmodal_demo.cli.evaluate")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--indexes-dir",
        type=Path,
        default=None,
        help="folder holding collections (default: $CROSSMODAL_INDEXES, else ./indexes)",
    )
    p = argparse.ArgumentParser(prog="python -m crossmodal_demo", description="Cross-modal search over your own media.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ix = sub.add_parser("index", parents=[common], help="add files or folders to a collection (created if new)")
    ix.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ix.add_argument("--collection", required=True)
    ix.add_argument("--preset", default=None, help="auto (default), clip or offline; auto picks clip when its weights can be had, else offline")
    ix.add_argument("--max-audio-seconds", type=float, default=None, help="longest audio accepted (default 600)")
    ix.add_argument("--batch-size", type=int, default=None)
    ix.add_argument("--json", action="store_true", help="print the report as JSON")

    se = sub.add_parser("search", parents=[common], help="search a collection by text, image or audio")
    se.add_argument("--collection", required=True)
    q = se.add_mutually_exclusive_group()
    q.add_argument("--text")
    q.add_argument("--image", type=Path)
    q.add_argument("--audio", type=Path)
    se.add_argument("--target", default="any", choices=["image", "text", "audio", "any"])
    se.add_argument("-k", type=int, default=10)
    se.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", parents=[common], help="list the items of a collection")
    ls.add_argument("--collection", required=True)
    ls.add_argument("--modality", choices=["image", "audio", "text"], default=None)
    ls.add_argument("--json", action="store_true")

    rm = sub.add_parser("remove", parents=[common], help="remove items by id or path")
    rm.add_argument("--collection", required=True)
    rm.add_argument("refs", nargs="+", metavar="ID_OR_PATH")
    rm.add_argument("--json", action="store_true")

    ix.set_defaults(func=cmd_index)
    se.set_defaults(func=cmd_search)
    ls.set_defaults(func=cmd_list)
    rm.set_defaults(func=cmd_remove)
    # Further subcommands live in their own modules: each exposes add_subcommands(sub, common).
    for module in EXTENSIONS:
        importlib.import_module(module).add_subcommands(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(
            indexes_dir=args.indexes_dir,
            max_audio_seconds=getattr(args, "max_audio_seconds", None),
            batch_size=getattr(args, "batch_size", None),
        )
        return int(args.func(args, config))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Output piped into `head` etc.: stop quietly, like other command-line tools.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; everything committed so far is kept.", file=sys.stderr)
        return 130


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def cmd_index(args: argparse.Namespace, config: Any) -> int:
    """``index``: add files/folders; tqdm progress on stderr; per-file errors listed at the end."""
    from tqdm import tqdm

    from crossmodal_demo.index.pipeline import index_paths
    from crossmodal_demo.retrieval.library import open_library

    missing = [str(p) for p in args.paths if not Path(p).exists()]
    if missing and len(missing) == len(args.paths):
        raise UserError(f"No such file or folder: {', '.join(missing)}")
    lib = open_library(config, args.collection, preset=args.preset, create=True)
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
        _print_json({"collection": args.collection, **report.to_json()})
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


def cmd_search(args: argparse.Namespace, config: Any) -> int:
    """``search``: one query → ranked hits (table or JSON)."""
    from crossmodal_demo.retrieval.library import open_library
    from crossmodal_demo.retrieval.search import Query

    query = Query(text=args.text, image=args.image, audio=args.audio)
    query.modality  # validates "exactly one query" before any model loads
    lib = open_library(config, args.collection)
    try:
        result = lib.search.search(query, target=args.target, k=args.k)
    finally:
        lib.collection.close()
    if args.json:
        _print_json(result.to_json())
        return 0
    if result.query.get("transcript") is not None:
        print(f"query transcript: {result.query['transcript']!r}")
    if not result.hits:
        print(f"no {args.target if args.target != 'any' else ''} items in {args.collection!r} to return.".replace("  ", " "))
    for h in result.hits:
        extra = h.caption or h.transcript or ""
        print(f"{h.rank:>3}  {h.score:6.3f}  {h.modality:<5}  {h.space}/{h.channel:<7}  {h.path}" + (f"  — {extra[:80]}" if extra else ""))
    return 0


def cmd_list(args: argparse.Namespace, config: Any) -> int:
    """``list``: items and counts (no model is loaded)."""
    from crossmodal_demo.index.store import Collection

    coll = Collection.open(config.indexes_dir, args.collection, config.index_policy)
    try:
        items = coll.items(args.modality)
        counts = coll.counts()
        if args.json:
            docs = []
            for it in items:
                d = it.to_json()
                d["spaces"] = coll.spaces_of(it.id)
                docs.append(d)
            _print_json({"collection": coll.name, "preset": coll.manifest.get("preset"), "items": docs, "counts": counts})
            return 0
        print(f"collection {coll.name!r} (preset {coll.manifest.get('preset')}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for it in items:
            extra = it.caption or it.transcript or it.note or ""
            print(f"{it.id:>6}  {it.modality:<5}  {it.path}" + (f"  — {extra[:80]}" if extra else ""))
    finally:
        coll.close()
    return 0


def cmd_remove(args: argparse.Namespace, config: Any) -> int:
    """``remove``: delete items by id or path from every space."""
    from crossmodal_demo.retrieval.library import resolve_refs
    from crossmodal_demo.index.store import Collection

    coll = Collection.open(config.indexes_dir, args.collection, config.index_policy)
    try:
        items, unknown = resolve_refs(coll, args.refs)
        removed = coll.remove([i.id for i in items])
    finally:
        coll.close()
    if args.json:
        _print_json({"removed": removed, "unknown": unknown})
    else:
        for it in items:
            print(f"removed {it.id}  {it.path}")
        for u in unknown:
            print(f"not found: {u}", file=sys.stderr)
    if unknown and not removed:
        return EXIT_USAGE
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
