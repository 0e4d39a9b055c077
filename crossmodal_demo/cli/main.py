"""Command line: ``python -m crossmodal_demo index|search|list|remove|models|download|evaluate``.

One module per subcommand (each exposes ``add_subcommands(sub, common)``); all printing lives in
this package. Every failure is one line on stderr, never a traceback (see :mod:`cli.faults`):

* exit 2 — a bad argument (checked at parse time) or a user mistake (unknown collection, missing
  file, no query): ``error: …``;
* exit 1 — the run cannot go on (disk full, read-only store, damaged database, weights missing);
* exit 70 — an unexpected error (a bug): one line naming the log file with the traceback; ``--debug``
  also prints the traceback;
* exit 130 — interrupted (Ctrl-C); what was committed is kept.

An indexing run that finished exits 0 even when some files were skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from crossmodal_demo.cli import evaluate, index, list as list_cmd, models, remove, search
from crossmodal_demo.cli.args import OneLineParser
from crossmodal_demo.cli.faults import report
from crossmodal_demo.cli.output import EXIT_INTERRUPTED, display
from crossmodal_demo.config import Config, load_config
from crossmodal_demo.encoders.base import Encoder

SUBCOMMANDS = (index, search, list_cmd, remove, models, evaluate)
DEBUG_HELP = "on an error, also print the full traceback (it is always written to <indexes>/.logs/)"


def _parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--indexes-dir",
        type=Path,
        default=None,
        help="folder holding collections (default: $CROSSMODAL_INDEXES, else ./indexes)",
    )
    # SUPPRESS: given after the subcommand it sets the flag, absent it leaves the top-level value alone.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    p = OneLineParser(prog="python -m crossmodal_demo", description="Cross-modal search over your own media.")
    p.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_subcommands(sub, common)
    return p


def main(argv: Sequence[str] | None = None, *, encoders: dict[str, Encoder] | None = None) -> int:
    """Run the CLI on ``argv`` (default: sys.argv[1:]); returns the process exit code.

    ``encoders`` maps encoder names to ready encoders used instead of building them (dependency
    injection for tests and embedding; see ``EncoderSet(overrides=...)``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already printed as one line)
        return exc.code if isinstance(exc.code, int) else 0
    args.encoders = encoders
    config: Config | None = None
    try:
        config = load_config(
            indexes_dir=args.indexes_dir,
            max_audio_seconds=getattr(args, "max_audio_seconds", None),
            batch_size=getattr(args, "batch_size", None),
        )
        return int(args.func(args, config))
    except BrokenPipeError:
        # Output piped into `head` etc.: stop quietly, like other command-line tools.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; everything committed so far is kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place every failure becomes one line (cli/faults.py)
        indexes = config.indexes_dir if config is not None else args.indexes_dir
        name = getattr(args, "collection", None)
        where = f"collection {name!r} in {indexes}" if name and indexes else str(indexes or "the indexes folder")
        return report(exc, argv, indexes, display(where), debug=args.debug)
