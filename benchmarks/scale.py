"""Scale curve of a real collection (issue 14): synthetic 512-d vectors through ``Collection.add`` (no encoding).

    python benchmarks/scale.py [--quick] [--json]        (or python -m benchmarks.scale)

At each size (10k / 100k / 1M; quick: 10k / 100k / 200k) one growing collection reports:
- add items/s of the last ``PROBE`` items committed to reach that size (batches of ``BATCH`` items,
  one transaction each, like the pipeline), and the flush that ends an indexing run (index file write,
  kind switch);
- in a fresh process: open time, RSS added by opening (MB and bytes per vector), and median latency
  of ``SearchService.search_vectors`` (k=10, one 512-d query, target text).
``p5_growth_ratio`` = per-item add cost at the largest size ÷ at 10k (goal ≤ 1.5).
At the largest size the collection is then re-indexed as ``ivfsq8`` (compressed IVF re-ranked from
SQLite): ``p5_bytes_per_vector`` (RSS added by opening ÷ vectors), its formula value, its recall@10
against exact search and latency.
Milvus (needs requirements-scale.txt): the same first 100k rows in a Milvus Lite store — add items/s,
search latency and recall through the service, ``p5_milvus_search_ratio`` = its latency ÷ FAISS's.
Ray: indexing items/s on benchmarks/labelled_photos (offline preset), local engine vs ``--engine ray``
with 2 actors (``p5_ray_speed_ratio``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index import faiss_index as ann  # noqa: E402
from crossmodal_demo.index.milvus import MilvusCollection  # noqa: E402
from crossmodal_demo.index.pipeline import index_paths  # noqa: E402
from crossmodal_demo.index.protocol import open_collection  # noqa: E402
from crossmodal_demo.index.ray_engine import index_paths_ray, start_ray  # noqa: E402
from crossmodal_demo.index.store import Collection, NewItem  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402
from crossmodal_demo.retrieval.search import SearchService  # noqa: E402

DIM = 512
BATCH = 1000
PROBE = 5000
QUERIES = 50
MANIFEST = {"preset": "synthetic", "encoders": {}, "spaces": {"s": DIM}}


def clustered(n: int, start: int, d: int = DIM, clusters: int = 1000) -> np.ndarray:
    """Rows ``start .. start+n`` of a fixed clustered data set (float32, L2-normalised; same rows every call)."""
    centres = np.random.default_rng(0).standard_normal((clusters, d)).astype(np.float32)
    rng = np.random.default_rng(1 + start)
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class NoEncoders:
    """Stands in for an EncoderSet: synthetic vectors come pre-encoded, and no space has a text encoder
    (so match-strength calibration is skipped and the latency is the store's search + item reads)."""

    def specs_for(self, modality: str) -> list:
        """No encoder for any modality."""
        return []

    def text_encoder_for(self, space: str) -> None:
        """No text encoder in any space."""
        return None


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def add_range(coll: Collection, start: int, stop: int) -> float:
    """Add synthetic items ``start .. stop`` in committed batches; returns seconds spent in ``Collection.add``."""
    spent = 0.0
    for s in range(start, stop, BATCH):
        m = min(BATCH, stop - s)
        vecs = clustered(m, s)
        items = [
            NewItem(path=f"/synthetic/{s + j}.txt", root="/synthetic", modality="text", sha256=hashlib.sha256(str(s + j).encode()).hexdigest(),
                    size=1, vectors={("s", "content"): vecs[j]})
            for j in range(m)
        ]
        t0 = time.perf_counter()
        coll.add(items)
        spent += time.perf_counter() - t0
    return spent


def probe(indexes: Path, name: str, kind: str, queries: Path, truth: Path) -> dict[str, float | str]:
    """In this (fresh) process: open the collection (its store; index ``kind`` for SQLite + FAISS), then measure
    RSS and search latency, and recall@10 against the exact rows in ``truth``."""
    import faiss  # noqa: F401  # loaded before the baseline: the library itself is not per-vector memory

    config = load_config(indexes_dir=indexes, index_kind=kind)
    base = rss_bytes()
    t0 = time.perf_counter()
    coll = open_collection(config, name)
    open_s = time.perf_counter() - t0
    added = rss_bytes() - base
    n = coll.counts()["total"]
    service = SearchService(coll, NoEncoders(), config)  # type: ignore[arg-type]
    q = np.load(queries)
    times, got = [], []
    for row in q:
        t = time.perf_counter()
        hits = service.search_vectors({"s": row}, "text", 10)
        times.append(time.perf_counter() - t)
        got.append([int(Path(h.path).stem) for h in hits])  # rows of the data set: store-independent
    recall = float(np.mean([len(set(a) & set(b.tolist())) / 10 for a, b in zip(got, np.load(truth))]))
    key = ("s", "content", "text")
    part = getattr(coll, "_parts", {}).get(key)  # the in-memory FAISS snapshot, for its formula size
    ix = part.merged().base if part is not None else None
    out = {"open_s": round(open_s, 3), "rss_mb": round(added / 2**20, 1), "rss_bytes_per_vector": round(added / max(1, n), 1),
           "bytes_per_vector_formula": ann.bytes_per_vector(ix, DIM) if ix is not None else -1,
           "kind": coll.index_kinds().get(".".join(key), "?"), "rebuilt": len(coll.rebuilt),
           "search_ms": round(statistics.median(times) * 1e3, 3), "recall_at_10": round(recall, 4)}
    coll.close()
    return out


def _probe_in_subprocess(indexes: Path, name: str, kind: str, queries: Path, truth: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", str(indexes), name, kind, str(queries), str(truth)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def exact_top10(queries: np.ndarray, n: int) -> np.ndarray:
    """Rows of the exact top 10 among data-set rows 0..n (int64 (q, 10)), by brute force."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for s in range(0, n, BATCH):
        sc = queries @ clustered(min(BATCH, n - s), s).T
        best_s = np.concatenate([best_s, sc], axis=1)
        best_i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + sc.shape[1]), sc.shape)], axis=1)
        top = np.argsort(-best_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    return best_i


def bench_scale(tmp: Path, quick: bool, sizes: list[int] | None = None, with_ray: bool = True) -> dict[str, float | int | str]:
    """The scale curve, Milvus next to FAISS and Ray vs local (see the module docstring); flat ``p5_*`` keys.
    ``sizes`` overrides the sizes (trials)."""
    sizes = sizes or ([10_000, 100_000, 200_000] if quick else [10_000, 100_000, 1_000_000])
    tmp.mkdir(parents=True, exist_ok=True)
    indexes = tmp / "scale"
    config = load_config(indexes_dir=indexes)
    coll = Collection.create(indexes, "scale", MANIFEST, ann.policy_for(config))
    queries = clustered(QUERIES, 10**9)  # fresh draws from the same clusters
    qfile = tmp / "scale_queries.npy"
    np.save(qfile, queries)
    res: dict[str, float | int | str] = {"p5_sizes": "/".join(f"{s // 1000}k" for s in sizes)}
    per_item: dict[int, float] = {}
    truth: dict[int, Path] = {}
    have = 0
    for size in sizes:
        add_range(coll, have, size - PROBE)
        probe_s = add_range(coll, size - PROBE, size)
        have = size
        t0 = time.perf_counter()
        coll.flush()
        flush_s = time.perf_counter() - t0
        per_item[size] = probe_s / PROBE
        tag = f"{size // 1000}k"
        res[f"p5_add_items_per_s_{tag}"] = round(PROBE / probe_s, 1)
        res[f"p5_flush_s_{tag}"] = round(flush_s, 2)
        coll.close()
        truth[size] = tmp / f"scale_truth_{size}.npy"
        np.save(truth[size], exact_top10(queries, size))
        got = _probe_in_subprocess(indexes, "scale", config.index_kind, qfile, truth[size])
        for k in ("open_s", "rss_mb", "search_ms", "kind", "recall_at_10"):
            res[f"p5_{k}_{tag}"] = got[k]
        coll = Collection.open(indexes, "scale", ann.policy_for(config))
    coll.close()
    res["p5_growth_ratio"] = round(per_item[sizes[-1]] / per_item[sizes[0]], 3)
    t0 = time.perf_counter()
    _probe_in_subprocess(indexes, "scale", "ivfsq8", qfile, truth[sizes[-1]])  # converts the partition (rebuild from SQLite)
    res["p5_compress_rebuild_s"] = round(time.perf_counter() - t0, 1)
    sq = _probe_in_subprocess(indexes, "scale", "ivfsq8", qfile, truth[sizes[-1]])
    exact = _probe_in_subprocess(indexes, "scale", "flat", qfile, truth[sizes[-1]])  # rebuilds flat: recall 1 by construction
    res.update({
        "p5_compressed_kind": sq["kind"], "p5_compressed_items": sizes[-1],
        "p5_bytes_per_vector": sq["rss_bytes_per_vector"], "p5_bytes_per_vector_formula": sq["bytes_per_vector_formula"],
        "p5_compressed_recall_at_10": sq["recall_at_10"], "p5_compressed_search_ms": sq["search_ms"],
        "p5_compressed_open_s": sq["open_s"], "p5_exact_recall_check": exact["recall_at_10"],
        "p5_exact_search_ms": exact["search_ms"], "p5_exact_bytes_per_vector": exact["rss_bytes_per_vector"],
    })
    res.update(bench_milvus(tmp, indexes, qfile, truth, res))
    if with_ray:
        try:
            res.update(bench_ray(tmp, quick))
        except Exception as exc:  # Ray could not start here: report it, keep the curve and Milvus figures
            res["p5_ray_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return res


def bench_ray(tmp: Path, quick: bool, actors: int = 2) -> dict[str, float | int | str]:
    """Indexing items/s on the benchmark photos (offline preset): the local engine vs ``--engine ray`` with
    ``actors`` actors (Ray start-up reported apart; each engine loads its models inside the timing)."""
    try:
        import ray  # noqa: F401  # optional (requirements-scale.txt)
    except ImportError:
        return {"p5_ray": "ray not installed (pip install -r requirements-scale.txt)"}
    photos = sorted((ROOT / "benchmarks" / "labelled_photos").glob("*.jpg"))[: 48 if quick else None]
    config = load_config(indexes_dir=tmp / "ray_ix", preset="offline", cache_dir_override=tmp / "ray_cache")
    t0 = time.perf_counter()
    start_ray(config.ray_address)
    out: dict[str, float | int | str] = {"p5_ray_photos": len(photos), "p5_ray_actors": actors,
                                         "p5_ray_start_s": round(time.perf_counter() - t0, 1)}
    warm = open_library(config, "warm", preset="offline", create=True)  # fills the shared caches (ConSE class texts)
    index_paths(warm.collection, warm.encoders, photos[:2], config)
    warm.collection.close()
    for name in ("local", "ray"):
        lib = open_library(config, f"photos_{name}", preset="offline", create=True)
        if name == "ray":
            report = index_paths_ray(lib.collection, lib.encoders, photos, config, actors=actors)
        else:
            report = index_paths(lib.collection, lib.encoders, photos, config)
        lib.collection.close()
        out[f"p5_{name}_items_per_s"] = round(report.items_per_second, 2)
    out["p5_ray_speed_ratio"] = round(float(out["p5_ray_items_per_s"]) / max(1e-9, float(out["p5_local_items_per_s"])), 3)
    return out


def bench_milvus(tmp: Path, indexes: Path, qfile: Path, truth: dict[int, Path], curve: dict) -> dict[str, float | int | str]:
    """The same data (100k rows, or the largest size below) in a Milvus Lite store next to FAISS: add items/s,
    search latency and recall through the service, and the latency ratio Milvus ÷ FAISS at that size."""
    try:
        import pymilvus  # noqa: F401  # optional (requirements-scale.txt)
    except ImportError:
        return {"p5_milvus": "pymilvus not installed (pip install -r requirements-scale.txt)"}
    n = max(s for s in truth if s <= 100_000) if any(s <= 100_000 for s in truth) else min(truth)
    coll = MilvusCollection.create(indexes / "scale_milvus", "scale_milvus", MANIFEST, str(tmp / "scale_milvus.db"))
    spent = add_range(coll, 0, n)
    coll.close()
    got = _probe_in_subprocess(indexes, "scale_milvus", "auto", qfile, truth[n])
    tag = f"{n // 1000}k"
    return {"p5_milvus_items": n, "p5_milvus_add_items_per_s": round(n / spent, 1), "p5_milvus_search_ms": got["search_ms"],
            "p5_milvus_recall_at_10": got["recall_at_10"], "p5_milvus_open_s": got["open_s"],
            "p5_milvus_search_ratio": round(got["search_ms"] / curve[f"p5_search_ms_{tag}"], 2),
            "p5_milvus_recall_ratio": round(got["recall_at_10"] / max(1e-9, curve[f"p5_recall_at_10_{tag}"]), 3)}


def main() -> int:
    """CLI: run the curve (``--quick`` up to 200k) or, internally, one ``--probe``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--probe", nargs=5, metavar=("INDEXES", "NAME", "KIND", "QUERIES", "TRUTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        indexes, name, kind, queries, truth = args.probe
        print(json.dumps(probe(Path(indexes), name, kind, Path(queries), Path(truth))))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = bench_scale(Path(d), args.quick)
    print(json.dumps(res) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
