"""Which FAISS index a partition gets, by size: exact (Flat), IVF, or compressed IVF (SQ8) re-ranked exactly.

Flat inner product is exact and, below ~100k vectors, fast enough (a few ms per query). Above that an
inverted-file index (IVF-Flat, inner product) scans only ``nprobe`` of its ``nlist`` clusters; it keeps
the full vectors (no quantisation loss), supports removal by id, and is rebuilt from SQLite like
every index here. From ``compress_min_items`` (default 1M) ``auto`` picks ``ivfsq8``: the same IVF with
each vector stored as 8-bit codes (dim bytes instead of 4·dim, ~530 B at 512-d). Its top ``k×rerank``
candidates are then re-scored exactly from the float vectors, fetched by id from the caller's truth
(SQLite) — not from a second float copy in RAM (faiss's IndexRefineFlat would keep one, undoing the
saving). ``CROSSMODAL_INDEX_KIND`` (auto|flat|ivf|ivfsq8) overrides the choice.

GPU search copies: with a faiss build that has GPU support and a visible GPU, searches may run on a
GPU clone of an index; the CPU index stays the truth written to disk. ``CROSSMODAL_DEVICE=cpu``
(``policy.gpu`` False) turns that off. Everything is guarded: a CPU-only machine takes the CPU path
silently.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from crossmodal_demo.config import Config

KINDS = ("auto", "flat", "ivf", "ivfsq8")
FetchFn = Callable[[np.ndarray], np.ndarray]  # int64 ids (m,) → float32 vectors (m, dim), zero rows for unknown ids
_gpu_lock = threading.Lock()
_gpu_resources: Any = None


@dataclass(frozen=True)
class IndexPolicy:
    """How to choose and tune indexes. ``ivf_min_items`` / ``compress_min_items``: partition size from
    which ``auto`` picks IVF / compressed IVF; ``rerank``: candidates re-scored exactly per wanted hit."""

    kind: str = "auto"
    ivf_min_items: int = 100_000
    compress_min_items: int = 1_000_000
    rerank: int = 10  # k×10 SQ8 candidates: recall@10 of the re-ranked list ≈ that of IVF-Flat (measured)
    nprobe: int = 0  # 0: auto, nlist/32 (at least 32) — measured recall@10 0.976 at 1M×512, ~55× faster than exact
    gpu: bool = True  # search on a GPU copy when faiss has GPU support (False: CROSSMODAL_DEVICE=cpu)

    def nprobe_for(self, nlist: int) -> int:
        """Clusters scanned per query for an index of ``nlist`` clusters."""
        return min(nlist, self.nprobe or max(32, nlist // 32))

    def choose(self, n: int) -> str:
        """'flat', 'ivf' or 'ivfsq8' for a partition of ``n`` vectors."""
        if self.kind in ("flat", "ivf", "ivfsq8"):
            return self.kind if (self.kind == "flat" or n >= 1000) else "flat"  # IVF needs data to train
        if n >= self.compress_min_items:
            return "ivfsq8"
        return "ivf" if n >= self.ivf_min_items else "flat"


def policy_for(config: "Config") -> IndexPolicy:
    """The index policy of the settings (``CROSSMODAL_INDEX_KIND``, ``_IVF_MIN_ITEMS``, ``_COMPRESS_MIN_ITEMS``,
    ``_IVF_NPROBE``, ``_DEVICE``)."""
    return IndexPolicy(kind=config.index_kind, ivf_min_items=config.ivf_min_items, nprobe=config.ivf_nprobe,
                       compress_min_items=config.compress_min_items, gpu=config.device != "cpu")


def new_flat(dim: int) -> Any:
    """Empty exact inner-product index with external int64 ids."""
    import faiss  # lazy: heavy native library

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def kind_of(index: Any) -> str:
    """'flat', 'ivf' or 'ivfsq8'."""
    import faiss  # lazy: heavy native library

    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivfsq8"
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def ivf_nlist(n: int) -> int:
    """Number of clusters for ``n`` vectors: ~4·√n, within [16, 65536]."""
    return int(min(65536, max(16, 4 * math.sqrt(n))))


def build(vectors: np.ndarray, ids: np.ndarray, dim: int, policy: IndexPolicy) -> Any:
    """An index holding float32 ``vectors`` (n, dim) under int64 ``ids`` (n,), of the kind the policy picks."""
    import faiss  # lazy: heavy native library

    n = len(ids)
    kind = policy.choose(n)
    if kind == "flat":
        index = new_flat(dim)
    else:
        nlist = ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivfsq8":  # residuals to the centroid, 8 bits per dimension
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # 64 points per centroid is plenty for k-means here and keeps training time bounded.
        rng = np.random.default_rng(0)
        sample = vectors if n <= 64 * nlist else vectors[rng.choice(n, 64 * nlist, replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = policy.nprobe_for(nlist)  # faiss's wrapper keeps `quantizer` alive with `index`
    if n:
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return index


def ids_of(index: Any) -> np.ndarray:
    """Sorted int64 ids held by a Flat (IDMap2) or IVF index."""
    import faiss  # lazy: heavy native library

    if isinstance(index, faiss.IndexIVF):
        inv = index.invlists
        parts = [
            faiss.rev_swig_ptr(inv.get_ids(lst), inv.list_size(lst)).copy()
            for lst in range(index.nlist)
            if inv.list_size(lst)
        ]
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)
    return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))


def tune_loaded(index: Any, policy: IndexPolicy) -> Any:
    """Apply search-time settings to an index read from disk (nprobe is not serialised)."""
    import faiss  # lazy: heavy native library

    if isinstance(index, faiss.IndexIVF):
        index.nprobe = policy.nprobe_for(index.nlist)
    return index


def needs_rebuild(index: Any, policy: IndexPolicy) -> bool:
    """True when the partition outgrew (or no longer fits) the kind it has."""
    return kind_of(index) != policy.choose(int(index.ntotal))


def bytes_per_vector(index: Any, dim: int) -> float:
    """Memory per stored vector in bytes: its code (4·dim for float kinds, dim for SQ8) + int64 id + the
    IVF centroids shared out over the vectors."""
    n = max(1, int(index.ntotal))
    code = float(getattr(index, "code_size", 4 * dim)) if kind_of(index) != "flat" else 4.0 * dim
    centroids = 4.0 * dim * getattr(index, "nlist", 0) / n
    return round(code + 8.0 + centroids, 1)


def search(index: Any, queries: np.ndarray, k: int, policy: IndexPolicy, fetch: FetchFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product search: (scores float32 (q, k), ids int64 (q, k); -1 where fewer).

    A compressed (ivfsq8) index gives its ``k×policy.rerank`` best candidates; ``fetch`` returns their
    float vectors and the candidates are re-scored exactly, so scores are true inner products. Without
    ``fetch`` the approximate SQ8 scores are returned. Other kinds are searched as they are.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if fetch is None or kind_of(index) != "ivfsq8":
        return index.search(q, k)
    wide = min(int(index.ntotal), k * max(1, policy.rerank))
    _, cand = index.search(q, wide)
    uniq = np.unique(cand[cand >= 0])
    vecs = fetch(uniq) if len(uniq) else np.zeros((0, q.shape[1]), np.float32)
    row = {int(i): j for j, i in enumerate(uniq)}
    scores = np.full((len(q), k), -np.inf, np.float32)
    ids = np.full((len(q), k), -1, np.int64)
    for r in range(len(q)):
        c = cand[r][cand[r] >= 0]
        if not len(c):
            continue
        exact = vecs[[row[int(i)] for i in c]] @ q[r]
        top = np.argsort(-exact, kind="stable")[:k]
        scores[r, : len(top)], ids[r, : len(top)] = exact[top], c[top]
    return scores, ids


def faiss_has_gpu(faiss: Any) -> bool:
    """True when this faiss build has GPU support and sees at least one GPU (faiss-gpu is optional)."""
    try:
        return hasattr(faiss, "StandardGpuResources") and int(faiss.get_num_gpus()) > 0
    except Exception:
        return False


def index_to_gpu(faiss: Any, index: Any) -> Any:
    """A GPU clone of ``index`` when faiss has GPU support, else ``index`` itself (the CPU copy stays the truth).

    Call it only for searching: the stored index is always the CPU one, so files on disk never depend
    on a GPU. Any failure (out of memory, unsupported index type) silently keeps the CPU index.
    """
    global _gpu_resources
    if not faiss_has_gpu(faiss):
        return index
    try:
        with _gpu_lock:
            if _gpu_resources is None:
                _gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)
    except Exception:
        return index


def sqlite_fetch(db: Any, space: str, channel: str, dim: int) -> FetchFn:
    """A :data:`FetchFn` reading float vectors of ``(space, channel)`` by item id from the collection's
    ``vectors`` table (the truth) on connection ``db``; the caller holds whatever lock guards ``db``."""

    def fetch(ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), dim), np.float32)
        pos = {int(i): j for j, i in enumerate(ids)}
        for s in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = [int(i) for i in ids[s : s + 500]]
            rows = db.execute(
                f"SELECT item_id, vec FROM vectors WHERE space=? AND channel=? AND item_id IN ({','.join('?' * len(chunk))})",
                (space, channel, *chunk),
            ).fetchall()
            for item_id, vec in rows:
                out[pos[int(item_id)]] = np.frombuffer(vec, dtype=np.float32)
        return out

    return fetch
