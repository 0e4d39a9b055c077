"""Search throughput under concurrency: 8 concurrent clients ÷ one client, on one collection.

    python benchmarks/concurrency.py [--quick]      (or python -m benchmarks.concurrency)

``p6_concurrency_scaling`` (issue 11; goal ≥ 1.5 on 2 cores): queries/s of 8 client threads searching
at once ÷ queries/s of one client. Searches run on lock-free FAISS snapshots and pooled SQLite readers,
so they proceed in parallel (FAISS and BLAS release the GIL); with a lock around the search the ratio
stays at ~1. The collection holds ~100k (quick: 20k) synthetic items, random unit vectors in the offline
preset's ``text`` space (384-d); queries are pre-encoded random unit vectors sent through
``SearchService.search_vectors`` (target ``any``: every partition of the space, then the items read from
SQLite), so the ratio measures the store and the search service, not the text encoder (whose model
runs one call at a time under its lock).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index.store import NewItem  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402

DIM = 384  # the offline preset's text space


def unit(n: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors, float32 (n, DIM)."""
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def throughput(search, clients: int, seconds: float) -> float:
    """Queries/s of ``clients`` threads each calling ``search(i)`` in a loop for ``seconds``."""
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(c: int) -> None:
        start.wait()
        i = c * 1_000_003
        while time.perf_counter() < stop_at[0]:
            search(i)
            counts[c] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def bench_concurrency(tmp: Path, quick: bool) -> dict[str, float | int | str]:
    """8-client ÷ 1-client search throughput through SearchService on one ~100k-item collection (quick: 20k)."""
    n = 20_000 if quick else 100_000
    seconds = 3.0 if quick else 6.0
    cfg = load_config(indexes_dir=tmp / "ix")
    lib = open_library(cfg, "concurrency", preset="offline", create=True)
    vecs = unit(n, seed=5)
    modalities = ("image", "text", "audio")
    for s in range(0, n, 2000):  # a mixed collection: every target partition holds vectors
        lib.collection.add([
            NewItem(f"/synthetic/{i}", "/synthetic", modalities[i % 3], f"{i:064x}", 1, vectors={("text", "content"): vecs[i]})
            for i in range(s, min(n, s + 2000))
        ])
    lib.collection.flush()
    svc = lib.search
    queries = unit(512, seed=6)

    def search(i: int) -> None:
        hits = svc.search_vectors({"text": queries[i % len(queries)]}, "any", 10)
        assert len(hits) == 10

    def store_search(i: int) -> None:  # the store alone: one FAISS partition search per query
        lib.collection.search(("text", "content", "image"), queries[i % len(queries)][None, :], 10)

    throughput(search, 1, 0.5)  # warm-up (the first search also loads what calibration needs)
    one = throughput(search, 1, seconds)
    eight = throughput(search, 8, seconds)
    store_one = throughput(store_search, 1, seconds / 2)
    store_eight = throughput(store_search, 8, seconds / 2)
    lib.collection.close()
    return {
        "p6_concurrency_scaling": round(eight / one, 3),
        "p6_items": n,
        "p6_qps_1_client": round(one, 1),
        "p6_qps_8_clients": round(eight, 1),
        "p6_store_scaling": round(store_eight / store_one, 3),
        "p6_store_qps_1_client": round(store_one, 1),
        "p6_cores": os.cpu_count() or 0,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k items and 3 s per measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(bench_concurrency(Path(d), args.quick)))
