"""Indexing: files → decoded media → vectors in every space → one committed transaction per batch.

Work is done only where it is needed, cheapest test first:

1. ``stat``: a file stored at the same path with the same size and mtime is ``unchanged`` — not opened.
2. hash (worker threads, a bounded window ahead): a hash already in the collection is a duplicate (or,
   at the same path, a touched file: ``unchanged``, its stored mtime kept, so later runs hash it again
   but never decode it); a header that breaks a per-file budget is refused.
3. decode (worker threads) only new or changed files, while the previous batch is encoded. Each file
   reserves its header estimate of decoded bytes first: at most ``max_decoded_in_flight_mb``
   (CROSSMODAL_MAX_DECODED_IN_FLIGHT_MB) is held across the decode pool and the batch being encoded; a
   larger single file is decoded alone.
4. encode, commit the batch in one transaction, then remove the older versions of its changed files in
   one call.

One bad file is reported and skipped. A fault of the run itself — a model that cannot load, a full disk,
a read-only store — stops it once with :class:`FatalError` (one line: what, how many items were committed,
re-running resumes); committed batches are kept and the indexes flushed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.errors import FatalError, MediaError
from crossmodal_demo.index.batch_encode import BatchEncoder, ModelFailed, Prepared
from crossmodal_demo.index.protocol import Store
from crossmodal_demo.index.schema import Item
from crossmodal_demo.ingest.audio import AudioLimits, load_audio
from crossmodal_demo.ingest.discover import Candidate, Problem, discover
from crossmodal_demo.ingest.estimate import estimate_decoded_bytes
from crossmodal_demo.ingest.files import check_size
from crossmodal_demo.ingest.hashing import file_sha256
from crossmodal_demo.ingest.media import ImageLimits, load_image, load_text

ProgressFn = Callable[[int, int, str], None]  # (done, total, what is being done now); the one progress type
MODALITY_ORDER = ("text", "image", "audio")  # text first: its model is shared by the other two
MB = 1024 * 1024
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class IndexReport:
    """Outcome of one indexing run. ``seconds`` is wall time; ``items_per_second`` counts added items.

    ``unchanged``: paths already indexed with these bytes (same size and mtime: not read; or touched but
    the same hash); ``duplicates``: files whose bytes are already indexed under another path.
    """

    added: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Added items per wall-clock second."""
        return len(self.added) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "added": len(self.added),
            "duplicates": len(self.duplicates),
            "unchanged": len(self.unchanged),
            "replaced": len(self.replaced),
            "errors": [{"path": p.path, "reason": p.reason} for p in self.problems],
            "notes": [{"path": p.path, "note": p.reason} for p in self.notes],
            "ignored": self.ignored,
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.items_per_second, 3),
        }


@dataclass
class _Probe:
    """A file after the hash stage: ``est`` decoded bytes (header estimate), ``refusal`` if its header broke a budget."""

    cand: Candidate
    sha256: str
    size: int
    mtime: float
    est: int
    refusal: str | None = None


def decode(cand: Candidate, config: Config, audio_sr: int = 16000) -> Any:
    """Decode one candidate's media within the configured budgets (raises MediaError); audio at ``audio_sr`` Hz."""
    if cand.modality == "image":
        return load_image(cand.path, limits=ImageLimits.from_config(config))
    if cand.modality == "audio":
        return load_audio(cand.path, target_sr=audio_sr, limits=AudioLimits.from_config(config))
    return load_text(cand.path, max_bytes=config.max_text_bytes)


def per_file(cand: Candidate, call: Callable[[], R]) -> R | Problem:
    """``call()``, or the Problem of this one file when it fails."""
    try:
        return call()
    except MediaError as exc:
        return Problem(str(cand.path), str(exc))
    except OSError as exc:
        return Problem(str(cand.path), f"cannot read the file ({exc.strerror or exc})")
    except MemoryError:
        return Problem(str(cand.path), "too large to decode in memory")
    except Exception as exc:  # a decoder bug on one file must not abort the whole run
        return Problem(str(cand.path), f"could not be decoded ({type(exc).__name__}: {exc})")


def _probe(cand: Candidate, mtime: float, config: Config, audio_sr: int) -> _Probe | Problem:
    def run() -> _Probe:
        size = check_size(cand.path, config.max_file_bytes)
        sha = file_sha256(cand.path)
        try:
            return _Probe(cand, sha, size, mtime, estimate_decoded_bytes(cand.path, cand.modality, config, audio_sr))
        except MediaError as exc:  # reported only if the file is not a duplicate (then it is never decoded)
            return _Probe(cand, sha, size, mtime, 0, str(exc))

    return per_file(cand, run)


def _prepare(p: _Probe, config: Config, audio_sr: int) -> Prepared | Problem:
    return per_file(p.cand, lambda: Prepared(p.cand, p.sha256, p.size, p.mtime, decode(p.cand, config, audio_sr)))


def _in_order(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``fn`` over ``items`` in ``pool``, results in order, at most ``window`` submitted ahead."""
    queue: deque[Future] = deque()
    try:
        for x in items:
            queue.append(pool.submit(fn, x))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for fut in queue:
            fut.cancel()


def _storage_failure(exc: BaseException, name: str) -> tuple[str, str] | None:
    """(what happened, what to do) when ``exc`` means the store cannot be written at all; None otherwise."""
    msg = " ".join(str(exc).split())
    full = (f"the disk holding collection {name!r} is full ({msg})", "free some space, then ")
    readonly = (f"collection {name!r} cannot be written ({msg})",
                "make its folder writable (or index into another one with --collection), then ")
    if isinstance(exc, sqlite3.OperationalError):
        low = msg.lower()
        if "disk is full" in low:
            return full
        if "readonly" in low or "read-only" in low:
            return readonly
        if "disk i/o error" in low:
            return (f"collection {name!r} could not be written to disk ({msg})", "check the disk, then ")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return full
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return readonly
    return None


def index_paths(
    collection: Store,
    encoders: EncoderSet,
    paths: Sequence[Path],
    config: Config,
    on_progress: ProgressFn | None = None,
) -> IndexReport:
    """Index files and folders into ``collection``; returns what was added, skipped and why.

    Raises :class:`FatalError` (one line) when the run itself cannot go on; the batches committed so
    far are kept and running the same call again resumes.
    """
    t0 = time.perf_counter()
    found = discover([Path(p) for p in paths], max_caption_chars=config.max_caption_chars,
                     max_manifest_bytes=config.max_manifest_bytes)
    report = IndexReport(problems=list(found.problems), ignored=[str(p) for p in found.ignored])
    cands = sorted(found.candidates, key=lambda c: MODALITY_ORDER.index(c.modality))  # stable
    run = _Run(collection, encoders, config, report, on_progress, len(cands))
    failure: BaseException | None = None
    try:
        run.go(cands)
    except BaseException as exc:  # re-raised below, after the pools stop and the indexes are flushed
        failure = exc
    try:
        collection.flush()
    except (OSError, sqlite3.Error, FatalError) as exc:
        # While already failing: FAISS files are a cache that the next open rebuilds from SQLite.
        failure = failure or exc
    if failure is not None:
        raise run.translate(failure)
    report.seconds = time.perf_counter() - t0
    return report


class _Run:
    """State of one :func:`index_paths` call (the stages are described in the module docstring)."""

    def __init__(self, collection: Store, encoders: EncoderSet, config: Config, report: IndexReport,
                 on_progress: ProgressFn | None, total: int) -> None:
        self.collection, self.encoders, self.config, self.report = collection, encoders, config, report
        self.on_progress, self.total, self.done = on_progress, total, 0
        self.audio_sr = encoders.audio_sample_rate()
        self.limit = max(1, int(config.max_decoded_in_flight_mb * MB))
        self.held = 0  # decoded bytes reserved by files submitted to the decode pool and not yet encoded
        self.known: dict[str, list[Item]] = {}  # path → stored versions, for new or changed files only
        self.seen: set[str] = set()
        self.stale: list[int] = []  # old versions of paths whose new bytes duplicate another item
        self.encoding = BatchEncoder(encoders, report.problems, report.notes)

    # ---------------------------------------------------------------- stages
    def go(self, cands: list[Candidate]) -> None:
        """Run every stage over ``cands``; stops the worker pools whatever happens."""
        todo = self.skip_unchanged(cands)
        workers = max(1, self.config.decode_workers)
        hashers = ThreadPoolExecutor(workers, thread_name_prefix="hash")
        decoders = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        probes = _in_order(hashers, lambda t: _probe(t[0], t[1], self.config, self.audio_sr), todo,
                           window=max(4 * self.config.batch_size, 32))
        batches = self.batches(self.accepted(probes))
        jobs: list[Future] = []
        try:
            cur = next(batches, None)
            jobs = self.submit(decoders, cur or [], force=True)
            nxt = next(batches, None) if cur else None
            while cur is not None:
                # Decode the next batch while this one is encoded, as far as the in-flight budget allows.
                ahead = self.submit(decoders, nxt or [], force=False)
                self.commit(cur, jobs)
                jobs = ahead + self.submit(decoders, (nxt or [])[len(ahead):], force=True)
                cur, nxt = nxt, (next(batches, None) if nxt else None)
            if self.stale:
                self.report.replaced.extend(self.collection.remove(self.stale))
        finally:
            for fut in jobs:
                fut.cancel()
            batches.close()
            probes.close()
            decoders.shutdown(wait=True, cancel_futures=True)
            hashers.shutdown(wait=True, cancel_futures=True)

    def skip_unchanged(self, cands: list[Candidate]) -> list[tuple[Candidate, float]]:
        """(candidate, mtime) of the files that are new or may have changed; the rest is ``unchanged``."""
        todo: list[tuple[Candidate, float]] = []
        for c in cands:
            path = str(c.path)
            try:
                st = os.stat(c.path)
            except OSError as exc:
                self.report.problems.append(Problem(path, f"cannot read the file ({exc.strerror or exc})"))
                continue
            # One indexed look-up per file (items_path), independent of the collection's size.
            known = self.collection.find_by_path(path)
            if any(it.size == st.st_size and it.mtime == st.st_mtime for it in known):
                self.report.unchanged.append(path)
                continue
            self.known[path] = known
            todo.append((c, st.st_mtime))
        self.progress(len(cands) - len(todo), "unchanged files skipped")
        return todo

    def accepted(self, probes: Iterator[_Probe | Problem]) -> Iterator[_Probe]:
        """Files to decode, in order; duplicates, touched files and refused headers are recorded instead."""
        for p in probes:
            if isinstance(p, Problem):
                self.report.problems.append(p)
            elif p.sha256 in self.seen:
                self.report.duplicates.append(str(p.cand.path))
            elif any(it.sha256 == p.sha256 for it in self.known.get(str(p.cand.path), [])):
                # Touched (new mtime, same bytes): nothing to do. Its stored mtime stays, so the next
                # run hashes it again (no decode); see README "Re-indexing".
                self.report.unchanged.append(str(p.cand.path))
            elif self.collection.find_by_hash(p.sha256) is not None:
                self.report.duplicates.append(str(p.cand.path))
                # The file now holds bytes indexed elsewhere: its old version here is stale.
                self.stale.extend(it.id for it in self.known.pop(str(p.cand.path), []))
            elif p.refusal:
                self.report.problems.append(Problem(str(p.cand.path), p.refusal))
            else:
                self.seen.add(p.sha256)
                yield p
                continue
            self.progress(1, p.cand.path.name if isinstance(p, _Probe) else Path(p.path).name)

    def batches(self, probes: Iterator[_Probe]) -> Iterator[list[_Probe]]:
        """Batches of one modality, ≤ ``batch_size`` files and ≤ the in-flight budget (or one larger file)."""
        batch: list[_Probe] = []
        size = 0
        for p in probes:
            if batch and (p.cand.modality != batch[0].cand.modality or len(batch) >= self.config.batch_size
                          or size + p.est > self.limit):
                yield batch
                batch, size = [], 0
            batch.append(p)
            size += p.est
        if batch:
            yield batch

    def submit(self, pool: ThreadPoolExecutor, probes: list[_Probe], force: bool) -> list[Future]:
        """Start decoding ``probes`` in order while their estimates fit the budget (all of them if ``force``:
        the caller knows they fit, or it is one larger file decoded alone)."""
        jobs: list[Future] = []
        for p in probes:
            if not force and self.held + p.est > self.limit:
                break
            self.held += p.est
            jobs.append(pool.submit(_prepare, p, self.config, self.audio_sr))
        return jobs

    def commit(self, batch: list[_Probe], jobs: list[Future]) -> None:
        """Wait for a batch's decodes, encode it, commit it, then drop its old versions in one remove."""
        ready: list[Prepared] = []
        for fut in jobs:
            res = fut.result()
            if isinstance(res, Problem):
                self.report.problems.append(res)
            else:
                ready.append(res)
        jobs.clear()  # finished futures hold the decoded media: let it go with the batch
        new_items = self.encoding.encode(ready)
        del ready
        ids = self.collection.add(new_items)
        stale, self.stale = self.stale, []
        for item, item_id in zip(new_items, ids):
            if item_id < 0:  # added by someone else meanwhile
                self.report.duplicates.append(item.path)
                continue
            self.report.added.append(item_id)
            stale.extend(it.id for it in self.known.pop(item.path, []))  # a changed file replaces its old version
        if stale:
            self.report.replaced.extend(self.collection.remove(stale))
        self.held -= sum(p.est for p in batch)
        self.progress(len(batch), batch[-1].cand.path.name)

    def progress(self, n: int, name: str) -> None:
        """``n`` more files are done (``name``: the last one); tells ``on_progress``."""
        self.done += n
        if self.on_progress and (n or not self.total):
            self.on_progress(self.done, self.total, name)
    # ---------------------------------------------------------------- faults
    def translate(self, failure: BaseException) -> BaseException:
        """The one-line :class:`FatalError` for a fault of the run; any other exception unchanged."""
        if isinstance(failure, ModelFailed):
            why = " ".join(f"{type(failure.cause).__name__}: {failure.cause}".split())
            what, fix, cause = f"encoder {failure.name!r} could not load its model ({why})", "", failure.cause
        elif (hit := _storage_failure(failure, self.collection.name)) is not None:
            (what, fix), cause = hit, failure
        elif isinstance(failure, FatalError):  # the store's own line (what failed and how to fix it)
            what, fix, cause = "", "", failure
        else:
            return failure
        n = len(self.report.added)
        kept = f"{n:,} item{'' if n == 1 else 's'} committed in this run {'is' if n == 1 else 'are'} kept"
        err = FatalError(
            f"Indexing stopped ({kept}): {failure}" if not what else
            f"Indexing stopped: {what}. {kept}; {fix}run the same command again to resume (files already indexed are skipped)."
        )
        err.__cause__ = cause
        err.report = self.report  # type: ignore[attr-defined]  # what was done before the stop, for the UI
        return err
