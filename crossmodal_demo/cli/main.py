"""Command line: ``python -m crossmodal_demo index|search|list|remove|models|download|evaluate``.

One module per subcommand (each exposes ``add_subcommands(sub, common)``); all printing lives in
this package. User mistakes (unknown collection, missing file, no query) print one ``error:`` line
to stderr and exit 2, with no traceback. An indexing run that finished exits 0 even when some files
were skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from crossmodal_demo.encoders.base import Encoder

from crossmodal_demo.cli import evaluate, index, list as list_cmd, models, remove, search
from crossmodal_demo.cli.output import EXIT_USAGE
from crossmodal_demo.config import load_config
from crossmodal_demo.errors import UserError

SUBCOMMANDS = (index, search, list_cmd, remove, models, evaluate)


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
    for module in SUBCOMMANDS:
        module.add_subcommands(sub, common)
    return p


def main(argv: Sequence[str] | None = None, *, encoders: dict[str, Encoder] | None = None) -> int:
    """Run the CLI on ``argv`` (default: sys.argv[1:]); returns the process exit code.

    ``encoders`` maps encoder names to ready encoders used instead of building them (dependency
    injection for tests and embedding; see ``EncoderSet(overrides=...)``).
    """
    args = _parser().parse_args(argv)
    args.encoders = encoders
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
