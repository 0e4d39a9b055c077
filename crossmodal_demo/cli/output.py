"""The CLI's printers and exit codes (all printing lives in the cli package).

Names come from the file system and from users (file names, captions, transcripts, collection names),
so they may hold terminal escape sequences or bidirectional overrides that rewrite what the terminal
shows. :func:`display` escapes them for text output; :func:`print_json` keeps the true value, with
the same characters as JSON ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

EXIT_OK = 0
EXIT_FATAL = 1  # the run cannot go on (disk full, read-only store, weights missing): one line
EXIT_USAGE = 2  # a user mistake or a bad argument: one "error:" line on stderr, no traceback
EXIT_INTERNAL = 70  # an unexpected exception (a bug): one line + a log file (sysexits EX_SOFTWARE)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

# C0 and C1 controls (ESC starts terminal sequences), DEL, line/paragraph separators, bidirectional
# marks/embeddings/overrides/isolates, and lone surrogates (undecodable bytes in file names, which
# would also make a strict UTF-8 stdout raise).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# The subset JSON does not escape itself (json.dumps always escapes C0 controls, '"' and '\\').
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def display(value: object) -> str:
    """``str(value)`` safe to print on a terminal: control and bidi characters shown as ``\\x1b`` / ``\\u202e``."""
    return _UNSAFE.sub(_escape, str(value))


def print_json(doc: Any) -> None:
    """``doc`` as indented UTF-8 JSON on stdout, one trailing newline; terminal-unsafe characters inside
    strings are ``\\uXXXX``-escaped (same value once parsed)."""
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
