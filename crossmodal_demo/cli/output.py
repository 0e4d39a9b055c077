"""The CLI's one JSON printer and its exit codes (all printing lives in the cli package)."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_USAGE = 2  # a user mistake: one "error:" line on stderr, no traceback


def print_json(doc: Any) -> None:
    """``doc`` as indented UTF-8 JSON on stdout, one trailing newline."""
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
