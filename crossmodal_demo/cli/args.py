"""Argument types checked at parse time, and a parser whose errors are one line.

A bad number (``--batch-size 0``, ``-k -5``, ``--max-audio-seconds nan``, an id beyond SQLite's
64-bit range) is refused by argparse before anything opens, with one line naming the argument and
what it accepts, exit 2 — never a traceback deep in the pipeline, never a limit silently lifted.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from crossmodal_demo.cli.output import EXIT_USAGE, display

MAX_ID = 2**63 - 1  # SQLite INTEGER (and item id) upper bound


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error as one ``error:`` line (plus a --help hint), exit 2.

    Subparsers inherit the class, so every subcommand behaves the same.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see --help)`` on stderr and exit 2."""
        print(f"{self.prog}: error: {display(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def positive_int(raw: str) -> int:
    """argparse type: a whole number ≥ 1 (``0``, ``-5``, ``1.5``, ``abc`` are refused)."""
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {raw!r}")
    return value


def positive_float(raw: str) -> float:
    """argparse type: a finite number > 0 (``0``, ``-1``, ``nan``, ``inf`` are refused: each would lift or break a limit)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {raw!r}")
    return value


def id_or_path(raw: str) -> str:
    """argparse type: an item id (ASCII digits up to 2**63-1) or a path; an id beyond SQLite's range is refused."""
    if raw.isascii() and raw.isdigit() and int(raw) > MAX_ID:
        raise argparse.ArgumentTypeError(
            f"item ids are whole numbers up to {MAX_ID}, got {raw!r} (to name a file, give its path, e.g. ./{raw})"
        )
    return raw

