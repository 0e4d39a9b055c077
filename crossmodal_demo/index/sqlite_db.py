"""SQLite connections of a collection: one writer, a small pool of readers, read-only opening, and the
translation of disk faults into one clear error.

WAL lets readers run beside the writer's transaction and see only committed data, so reads never wait
for a write and never see half an item. Each reader connection serves one thread at a time; the pool
is bounded (``READERS``) so many threads and many open collections cannot exhaust file descriptors.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crossmodal_demo.errors import FatalError, UserError

READERS = 4  # reader connections per collection (each holds ~3 file descriptors: db, -wal, -shm)
CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_RO_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


def folder_is_read_only(root: Path) -> bool:
    """True when ``root`` (or its database) cannot be written: a read-only filesystem or no write permission."""
    db = root / "items.sqlite"
    try:
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(root, os.W_OK) or (db.exists() and not os.access(db, os.W_OK))


# The writer's page cache. Every add inserts into the content-hash index at a random place; at 1M items that
# index is ~90 MB, and with SQLite's default 2 MB cache each insert re-read a leaf from the OS (from disk once
# the OS evicted it): 152 µs per item at 1M vs 116 µs with this cache. It grows only as pages are touched.
WRITER_CACHE_MB = 256


def connect_writer(db: Path) -> sqlite3.Connection:
    """The collection's one writing connection: WAL, synchronous=FULL, foreign keys, a 30 s busy timeout,
    a ``WRITER_CACHE_MB`` page cache."""
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_MB * 1024}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def connect_reader(db: Path, read_only: bool) -> sqlite3.Connection:
    """A connection for reads only (``mode=ro`` when the store is read-only, so nothing on disk changes).

    A WAL database in a read-only folder whose ``-shm`` file is gone cannot be opened ``mode=ro``;
    then it is opened ``immutable`` (nobody can be writing it: the folder is not writable).
    """
    if not read_only:
        conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    else:
        uri = db.resolve().as_uri()
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            conn.close()
            conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA query_only=ON")  # belt and braces: a reader never writes
    return conn


class ReaderPool:
    """At most ``size`` reader connections, each lent to one thread at a time (``with pool.reader() as db``)."""

    def __init__(self, db: Path, read_only: bool, size: int = READERS) -> None:
        self.db, self.read_only = db, read_only
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self.closed = False

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Lend a reader connection (opened on first need); waits only while ``size`` reads are in flight."""
        with self._slots:
            with self._guard:
                if self.closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed collection.")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = connect_reader(self.db, self.read_only)
                with self._guard:
                    self._all.append(conn)
            try:
                yield conn
            except sqlite3.DatabaseError as exc:
                if is_corrupt(exc):  # damage past what opening checked (large files: FULL_CHECK_MAX_BYTES)
                    raise damaged(self.db.parent.name, self.db.parent, str(exc)) from None
                raise
            finally:
                with self._guard:
                    if self.closed:
                        conn.close()
                    else:
                        self._idle.append(conn)

    def close(self) -> None:
        """Close idle connections now and lent ones when they come back."""
        with self._guard:
            self.closed = True
            for conn in self._idle:
                conn.close()
            self._idle.clear()


# PRAGMA quick_check reads every page: ~1 s per 100 MB when cached, minutes for a 1M-item (4 GB) file on a slow
# disk. Above this size opening only reads the schema (a file that is not a database fails there) and damage
# deeper in the file surfaces as the same "damaged" error when a read reaches it (``is_corrupt``).
FULL_CHECK_MAX_BYTES = 256 * 2**20


def quick_check(conn: sqlite3.Connection, size: int = 0) -> str | None:
    """None when the database of ``size`` bytes passes ``PRAGMA quick_check`` (up to ``FULL_CHECK_MAX_BYTES``;
    larger ones: a read of the schema), else what it (or SQLite, reading the file) reported."""
    if size > FULL_CHECK_MAX_BYTES:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return None
        except sqlite3.DatabaseError as exc:
            return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [line.strip() for r in rows for line in str(r[0]).splitlines() if line.strip() and not line.startswith("***")]
    return None if found == ["ok"] else "; ".join(found)


def damaged(name: str, root: Path, detail: str) -> UserError:
    """The error for a collection whose database fails the integrity check, with the way out."""
    detail = " ".join(detail.split())  # one line
    return UserError(
        f"Collection {name!r} is damaged: {root / 'items.sqlite'} fails SQLite's integrity check ({detail}). "
        f"Move it aside (mv {root} {root}.damaged) and index the files again into a new collection "
        "(the app's demo collection does this itself, keeping damaged copies under <indexes>/.damaged/)."
    )


def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """True for SQLite's 'malformed' / 'not a database' errors."""
    return getattr(exc, "sqlite_errorname", "") in CORRUPT or "malformed" in str(exc) or "not a database" in str(exc)


def read_only_error(name: str, root: Path) -> FatalError:
    """The error for a write to a collection opened read-only."""
    return FatalError(
        f"Collection {name!r} at {root} is read-only (the folder or its filesystem is not writable): listing and "
        "searching work, adding or removing does not. Make the folder writable (or copy it somewhere writable) and re-run."
    )


@contextmanager
def disk_faults(name: str, root: Path) -> Iterator[None]:
    """Turn a full disk, a read-only store, an I/O error or a damaged database met while writing into one
    :class:`FatalError` line (the transaction was rolled back: what was committed before is kept)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code.startswith("SQLITE_FULL") or "disk is full" in str(exc):
            why = f"the disk is full ({exc})"
        elif code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in str(exc):
            why = f"the store is read-only ({exc})"
        elif code.startswith("SQLITE_IOERR"):
            why = f"a disk I/O error ({exc})"
        elif is_corrupt(exc):
            raise damaged(name, root, str(exc)) from None
        else:
            raise
        raise FatalError(_cannot_write(name, root, why)) from None
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            why = f"the disk is full ({exc.strerror}: {exc.filename})"
        elif exc.errno in _RO_ERRNOS:
            why = f"the store is read-only ({exc.strerror}: {exc.filename})"
        elif exc.errno == errno.EIO:
            why = f"a disk I/O error ({exc.strerror}: {exc.filename})"
        else:
            raise
        raise FatalError(_cannot_write(name, root, why)) from None


def _cannot_write(name: str, root: Path, why: str) -> str:
    return (
        f"Cannot write collection {name!r} at {root}: {why}. The batch in progress was not committed; items "
        "committed before it are kept. Free space or make the folder writable, then re-run: indexing resumes where it stopped."
    )
