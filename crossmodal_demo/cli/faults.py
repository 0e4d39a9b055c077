"""Any exception reaching the top of the CLI becomes one line on stderr and an exit code.

* :class:`UserError` → ``error: …`` (exit 2); :class:`FatalError` → ``error: …`` (exit 1).
* A full disk, a read-only store or a damaged database that reached the top as a raw ``OSError`` /
  ``sqlite3`` error (anywhere in the exception chain) → one ``error:`` line saying what happened and
  what to do (exit 1), never the chained tracebacks of every ``finally`` that failed after it.
* Anything else is a bug: ``unexpected error: <type>: <message> — full log: <path>`` (exit 70); the
  traceback goes to a log file (``<indexes>/.logs/cli-*.log``, or the temp dir when that is not
  writable) and to stderr only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from crossmodal_demo.cli.output import EXIT_FATAL, EXIT_INTERNAL, EXIT_USAGE, display
from crossmodal_demo.errors import FatalError, UserError

LOG_DIR = ".logs"  # under the indexes folder
KEEP_LOGS = 50  # older cli-*.log files are pruned so a crash loop cannot fill the disk
MAX_LINE = 2000  # characters of a message shown (a message may quote a huge input)

_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM)
# SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xff): FULL, READONLY, CANTOPEN, CORRUPT, NOTADB.
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_CORRUPT, _SQLITE_NOTADB = 13, 8, 14, 11, 26


class _Closable(Protocol):
    def close(self) -> None: ...


def one_line(text: object) -> str:
    """``text`` on one line (line breaks folded), terminal-safe (:func:`display`), at most MAX_LINE characters."""
    s = re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()
    s = display(s)
    return s if len(s) <= MAX_LINE else s[: MAX_LINE - 1] + "…"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it / was being handled when it was raised (each once)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _environment(exc: BaseException, where: str) -> str | None:
    """The one-line message for a disk-full / read-only / damaged-database error, else None."""
    detail = one_line(exc) or type(exc).__name__
    code = _sqlite_code(exc)
    low = str(exc).lower()
    if (isinstance(exc, OSError) and exc.errno in _FULL) or code == _SQLITE_FULL or "disk is full" in low:
        return (
            f"the disk is full ({detail}); nothing more could be written to {where}. Everything committed "
            "before this is kept: free some space and run the same command again to resume."
        )
    if isinstance(exc, OSError) and exc.errno in _DENIED:
        return f"permission denied ({detail}) while working on {where}: check the owner and permissions of that path."
    if (isinstance(exc, OSError) and exc.errno == errno.EROFS) or code in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or "readonly" in low:
        return (
            f"cannot write to {where}: it is read-only or not writable by this user ({detail}). Reading it "
            "(list, search) works; to change it, copy the collection folder somewhere writable (--indexes-dir) "
            "or make it writable."
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in low or "not a database" in low:
        return (
            f"the collection database in {where} is damaged ({detail}). Restore items.sqlite from a backup, "
            "or rebuild: delete the collection folder and index the files again."
        )
    return None


def classify(exc: BaseException, where: str) -> tuple[int, str] | None:
    """(exit code, one line) for an expected failure anywhere in ``exc``'s chain; None for a bug.

    ``where`` names what was being written (the collection folder) for the messages.
    """
    for e in _chain(exc):
        if isinstance(e, FatalError):
            return EXIT_FATAL, f"error: {one_line(e)}"
        if isinstance(e, UserError):
            return EXIT_USAGE, f"error: {one_line(e)}"
        if isinstance(e, (OSError, sqlite3.Error)) and (msg := _environment(e, where)):
            return EXIT_FATAL, f"error: {msg}"
    return None


def write_log(exc: BaseException, argv: Sequence[str], indexes_dir: Path | None) -> Path | None:
    """Write ``exc``'s full traceback (and the command line) to a new log file; its path, or None if no
    folder could take it. Tries ``<indexes_dir>/.logs`` (only when ``indexes_dir`` exists), then the temp dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    text = (
        f"crossmodal_demo CLI, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, pid {os.getpid()}, "
        f"Python {sys.version.split()[0]}\nargv: {list(argv)!r}\n\n" + "".join(traceback.format_exception(exc))
    )
    folders = [Path(indexes_dir) / LOG_DIR] if indexes_dir is not None and Path(indexes_dir).is_dir() else []
    folders.append(Path(tempfile.gettempdir()) / "crossmodal_demo-logs")
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"cli-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
                fh.write(text)
            _prune(folder)
            return Path(name)
        except OSError:
            continue  # read-only or full: try the next folder
    return None


def _prune(folder: Path) -> None:
    """Keep the newest KEEP_LOGS ``cli-*.log`` files in ``folder``."""
    with contextlib.suppress(OSError):
        logs = sorted(folder.glob("cli-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[KEEP_LOGS:]:
            old.unlink(missing_ok=True)


def report(exc: BaseException, argv: Sequence[str], indexes_dir: Path | None, where: str, debug: bool) -> int:
    """Print ``exc`` as one line on stderr (plus the traceback with ``debug``); returns the exit code."""
    known = classify(exc, where)
    if known is not None:
        code, line = known
        if debug and code != EXIT_USAGE:
            traceback.print_exception(exc, file=sys.stderr)
        print(line, file=sys.stderr)
        return code
    log = write_log(exc, argv, indexes_dir)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    where_log = f"full log: {display(log)}" if log else "no log could be written; run again with --debug for the traceback"
    print(f"unexpected error: {type(exc).__name__}: {one_line(exc)} — {where_log}", file=sys.stderr)
    return EXIT_INTERNAL


@contextlib.contextmanager
def closing(resource: _Closable) -> Iterator[None]:
    """Close ``resource`` on the way out. When the body already failed, a failure to close (e.g. the
    same full disk while flushing) is dropped: the first error is the one to report."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            resource.close()
        raise
    resource.close()
