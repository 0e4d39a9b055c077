"""Immutable FAISS partition snapshots: searched without any lock, replaced (never changed) by writers.

A :class:`Partition` is what one (space, channel, modality) index holds at one moment: a ``base``
FAISS index (flat / IVF / compressed, as the policy picks) plus a small ``delta`` of recent additions
kept as plain arrays. Once published, neither is ever mutated, so a search can grab the current
snapshot and run FAISS (which releases the GIL) with no lock while a writer builds the next one:

- adding copies only the delta (bounded by :func:`delta_limit`), and folds it into a copy of the base
  once it outgrows that limit, so adding n items costs O(n) amortised copies, never a base copy per batch;
- removing copies the base only when it holds one of the removed ids;
- writing to disk (``merged``) folds the delta into one index.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossmodal_demo.index import faiss_index as ann

DELTA_MIN, DELTA_MAX = 1024, 32768  # delta rows: at most ~64 MB at 512-d, copied per add() call
FEW_QUERIES = 20  # below this many queries per call FAISS scans without BLAS, one query per OpenMP thread


@contextmanager
def _one_omp_thread(nq: int) -> Iterator[None]:
    """Search a few queries on this thread only: concurrency comes from the callers' threads, and an OpenMP
    team per call on a busy machine waits at its barrier for descheduled threads (measured: 1-query flat
    search of 20k×384 took 50-60 ms with 2 OpenMP threads under load, 3 ms with one). The setting is
    per thread (OpenMP ICV), so indexing on other threads keeps every core; it is restored after."""
    import faiss  # lazy: heavy native library

    if nq >= FEW_QUERIES:
        yield
        return
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


def delta_limit(base_n: int) -> int:
    """Largest delta (rows) kept beside a base of ``base_n`` vectors before it is folded in (~1/8 of the base)."""
    return int(min(DELTA_MAX, max(DELTA_MIN, base_n // 8)))


@dataclass(frozen=True)
class Partition:
    """One partition's vectors: ``base`` (a FAISS index or None) + ``delta_vecs`` float32 (m, dim) under
    ``delta_ids`` int64 (m,). Treat as read-only: writers make a new Partition instead."""

    dim: int
    base: Any = None
    delta_vecs: np.ndarray | None = None
    delta_ids: np.ndarray | None = None

    @property
    def base_n(self) -> int:
        """Vectors in the base index."""
        return int(self.base.ntotal) if self.base is not None else 0

    @property
    def delta_n(self) -> int:
        """Vectors in the delta."""
        return 0 if self.delta_ids is None else len(self.delta_ids)

    @property
    def ntotal(self) -> int:
        """Vectors held in all."""
        return self.base_n + self.delta_n

    @property
    def kind(self) -> str:
        """'flat' | 'ivf' | 'ivfsq8': the base's kind (a delta alone is exact, 'flat')."""
        return ann.kind_of(self.base) if self.base is not None else "flat"

    def ids(self) -> np.ndarray:
        """Sorted int64 ids held (base and delta)."""
        parts = [ann.ids_of(self.base)] if self.base is not None else []
        if self.delta_n:
            parts.append(self.delta_ids)  # type: ignore[arg-type]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int, policy: ann.IndexPolicy, fetch: ann.FetchFn | None = None,
               base: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products: (scores float32 (q, k'), ids int64 (q, k')), k' = min(k, ntotal), -1 where fewer.

        ``base`` replaces the base index for this search (a GPU copy of it); ``fetch`` re-ranks compressed kinds.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        kk = min(int(k), self.ntotal)
        scores, ids = np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self.base_n and kk:
            with _one_omp_thread(len(q)):
                scores, ids = ann.search(base if base is not None else self.base, q, min(kk, self.base_n), policy, fetch)
        if self.delta_n and kk:
            ds = q @ self.delta_vecs.T  # type: ignore[union-attr]  # exact; BLAS releases the GIL
            top = np.argsort(-ds, axis=1, kind="stable")[:, :kk]
            scores = np.concatenate([scores, np.take_along_axis(ds, top, axis=1)], axis=1)
            ids = np.concatenate([ids, self.delta_ids[top]], axis=1)  # type: ignore[index]
            order = np.argsort(-np.where(ids >= 0, scores, -np.inf), axis=1, kind="stable")[:, :kk]
            scores, ids = np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def added(self, vecs: np.ndarray, ids: np.ndarray) -> "Partition":
        """A new snapshot with float32 ``vecs`` (n, dim) under int64 ``ids`` (n,) added."""
        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.delta_n:
            vecs = np.concatenate([self.delta_vecs, vecs])  # type: ignore[list-item]
            ids = np.concatenate([self.delta_ids, ids])  # type: ignore[list-item]
        nxt = Partition(self.dim, self.base, vecs, ids)
        return nxt.merged() if nxt.delta_n >= delta_limit(nxt.base_n) else nxt

    def removed(self, ids: np.ndarray) -> "Partition":
        """A new snapshot without int64 ``ids``; the base is copied only when it holds one of them."""
        import faiss  # lazy: heavy native library

        ids = np.asarray(ids, dtype=np.int64)
        dvecs, dids = self.delta_vecs, self.delta_ids
        in_delta = np.zeros(len(ids), bool)
        if self.delta_n:
            keep = ~np.isin(dids, ids)  # type: ignore[arg-type]
            in_delta = np.isin(ids, dids)  # type: ignore[arg-type]
            dvecs, dids = dvecs[keep], dids[keep]  # type: ignore[index]
        base, rest = self.base, ids[~in_delta]
        if self.base_n and len(rest) and np.isin(rest, ann.ids_of(base)).any():
            base = faiss.clone_index(self.base)
            base.remove_ids(faiss.IDSelectorBatch(len(rest), faiss.swig_ptr(np.ascontiguousarray(rest))))
            _copy_nprobe(self.base, base)
        return Partition(self.dim, base, dvecs, dids)

    def merged(self) -> "Partition":
        """One index holding everything (the delta folded into a copy of the base, or built when there is no base)."""
        import faiss  # lazy: heavy native library

        if not self.delta_n:
            return self
        # Exact until the next flush, which rebuilds from SQLite a partition that outgrew its kind (as before).
        base = ann.new_flat(self.dim) if self.base is None else _copy_nprobe(self.base, faiss.clone_index(self.base))
        base.add_with_ids(self.delta_vecs, self.delta_ids)
        return Partition(self.dim, base)


def _copy_nprobe(src: Any, dst: Any) -> Any:
    """Carry the search-time ``nprobe`` (not kept by clone_index for every kind) from ``src`` to ``dst``."""
    if hasattr(src, "nprobe") and hasattr(dst, "nprobe"):
        dst.nprobe = src.nprobe
    return dst
