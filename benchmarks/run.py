"""Benchmarks as ratios within one run (absolute times are noisy on shared 2-core machines).

    python benchmarks/run.py [--quick] [--json]

Measures, for the offline preset:
- p1_index_efficiency: indexing items/s ÷ the raw encoder forward items/s at the same batch size
  (images: ConSE over EfficientNet-Lite0; the raw pass gets already-decoded images).
- flat search latency (ms/query, exact inner product) at 1k / 10k / 100k vectors of 384 dims.
- p2_query_overhead: a text→image search through SearchService at 100k items ÷ (query encode + raw
  FAISS search on the same index).
Writes a readable report to benchmarks/RESULTS.md; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index.pipeline import index_paths  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402
from crossmodal_demo.ingest.media import load_image  # noqa: E402
from crossmodal_demo.retrieval.query import Query  # noqa: E402
from crossmodal_demo.index.store import NewItem  # noqa: E402
from benchmarks.reindex import bench_reindex  # noqa: E402
from benchmarks.concurrency import bench_concurrency  # noqa: E402
from benchmarks.startup import bench_startup, free_port, start_app  # noqa: E402
from benchmarks.scale import bench_scale  # noqa: E402


def make_photos(folder: Path, n: int, side: int = 1600) -> list[Path]:
    """``n`` distinct JPEG photos of about ``side`` px (upscaled test photos, each slightly altered)."""
    from PIL import Image

    sources = sorted((ROOT / "tests" / "data" / "images").glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        im = im.resize((side, int(side * im.height / im.width)), Image.BICUBIC)
        im.putpixel((i % im.width, 0), (i % 256, 0, 0))  # distinct content hash
        p = folder / f"photo{i:04d}.jpg"
        im.save(p, quality=90)
        out.append(p)
    return out


def bench_index_efficiency(tmp: Path, n: int, batch: int) -> dict:
    """Indexing items/s vs raw encoder forward items/s (same images, same batch size)."""
    photos = make_photos(tmp / "photos", n)
    cfg = load_config(indexes_dir=tmp / "ix", batch_size=batch)
    lib = open_library(cfg, "bench", preset="offline", create=True)
    enc = lib.encoders.get("conse-effnet-lite0")
    decoded = [load_image(p) for p in photos[:batch]]
    enc.encode(decoded)  # warm-up: loads weights and class-name vectors
    t0 = time.perf_counter()
    done = 0
    while done < n:
        enc.encode(decoded)
        done += batch
    raw_ips = done / (time.perf_counter() - t0)
    report = index_paths(lib.collection, lib.encoders, [tmp / "photos"], cfg)
    index_ips = len(report.added) / report.seconds
    lib.collection.close()
    return {
        "p1_index_efficiency": round(index_ips / raw_ips, 3),
        "index_items_per_s": round(index_ips, 2),
        "raw_encoder_items_per_s": round(raw_ips, 2),
        "p1_images": n,
        "p1_batch": batch,
        "p1_photo_px": "1600 wide JPEG",
    }


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 (n, d) random unit vectors."""
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_flat_latency(sizes: list[int], d: int = 384, queries: int = 200) -> dict:
    """Median ms per single query, exact inner-product search (IndexIDMap2 over IndexFlatIP)."""
    import faiss

    out = {}
    q = random_unit(queries, d, seed=1)
    for n in sizes:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(random_unit(n, d), np.arange(n, dtype=np.int64))
        times = []
        for i in range(queries):
            t0 = time.perf_counter()
            index.search(q[i : i + 1], 10)
            times.append(time.perf_counter() - t0)
        out[f"flat_ms_per_query_{n // 1000}k"] = round(statistics.median(times) * 1e3, 3)
    return out


def bench_query_overhead(tmp: Path, n: int, queries: int = 30) -> dict:
    """Service text→image search at ``n`` items ÷ (query encode + raw FAISS search)."""
    cfg = load_config(indexes_dir=tmp / "ix")
    lib = open_library(cfg, "overhead", preset="offline", create=True)
    vecs = random_unit(n, 384, seed=2)
    batch = 5000
    for s in range(0, n, batch):
        lib.collection.add(
            [
                NewItem(f"/synthetic/{i}.jpg", "/synthetic", "image", f"{i:064x}", 1, vectors={("text", "content"): vecs[i]})
                for i in range(s, min(n, s + batch))
            ]
        )
    lib.collection.flush()
    text = lib.encoders.get("minilm-text")
    words = ["a cat on a sofa", "a rocket launch", "cup of coffee", "a red flower", "mountain lake"]
    text.encode(words)  # warm-up
    svc = lib.search
    key = ("text", "content", "image")
    raw, full = [], []
    for i in range(queries):
        w = words[i % len(words)] + f" {i}"
        t0 = time.perf_counter()
        v = text.encode([w])
        lib.collection.search(key, v, 10)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        svc.search(Query(text=w + " "), target="image", k=10)
        full.append(time.perf_counter() - t0)
    lib.collection.close()
    return {
        "p2_query_overhead": round(statistics.median(full) / statistics.median(raw), 3),
        "p2_items": n,
        "p2_service_ms": round(statistics.median(full) * 1e3, 2),
        "p2_raw_ms": round(statistics.median(raw) * 1e3, 2),
    }


def clustered(n: int, d: int, clusters: int, seed: int = 3) -> np.ndarray:
    """float32 (n, d) unit vectors drawn around ``clusters`` random centres (like real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        out[s : s + m] = centres[rng.integers(0, clusters, m)] + 1.0 * rng.standard_normal((m, d)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def memory_bandwidth_gbs(mb: int = 1024) -> float:
    """Read bandwidth in GB/s: best of 5 sums over a ``mb`` MB float32 array (larger than any cache)."""
    x = np.ones(mb * 1024 * 1024 // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.nbytes / best / 1e9


def bench_ann(n: int, d: int = 512, queries: int = 100) -> dict:
    """The automatically chosen ANN index vs exact search at ``n``×``d`` clustered vectors."""
    import faiss

    from crossmodal_demo.index import faiss_index as ann

    vecs = clustered(n, d, clusters=max(64, n // 1000))
    ids = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(5)
    q = vecs[rng.choice(n, queries, replace=False)] + 0.2 * rng.standard_normal((queries, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    policy = ann.IndexPolicy()
    exact = ann.build(vecs, ids, d, ann.IndexPolicy(kind="flat"))
    t0 = time.perf_counter()
    approx = ann.build(vecs, ids, d, policy)
    build_s = time.perf_counter() - t0
    del vecs

    def per_query(index: object) -> tuple[float, np.ndarray]:
        times, found = [], []
        for i in range(queries):
            t = time.perf_counter()
            _, got = index.search(q[i : i + 1], 10)
            times.append(time.perf_counter() - t)
            found.append(got[0])
        return statistics.median(times), np.array(found)

    t_exact, truth = per_query(exact)
    t_ann, got = per_query(approx)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))
    bw = memory_bandwidth_gbs()
    scanned_gbs = n * d * 4 / t_exact / 1e9
    return {
        "p3_items": n,
        "p3_dim": d,
        "p3_index_kind": ann.kind_of(approx) + f"(nlist={getattr(approx, 'nlist', 0)}, nprobe={getattr(approx, 'nprobe', 0)})",
        "p3_ann_recall_at_10": round(recall, 4),
        "p3_ann_speedup": round(t_exact / t_ann, 2),
        "p3_exact_ms_per_query": round(t_exact * 1e3, 2),
        "p3_ann_ms_per_query": round(t_ann * 1e3, 3),
        "p3_ann_build_s": round(build_s, 1),
        "p3_bandwidth_fraction": round(scanned_gbs / bw, 3),
        "p3_exact_scan_gb_per_s": round(scanned_gbs, 2),
        "memory_bandwidth_gb_per_s": round(bw, 2),
        "p3_bytes_per_vector": ann.bytes_per_vector(approx, d),
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def bench_app(tmp: Path, quick: bool) -> dict:
    """/search latency with 8 concurrent clients while another client indexes (p4 start-up: benchmarks/startup.py)."""
    import threading

    from gradio_client import Client, handle_file

    out: dict = {}
    port = free_port()
    proc, serve_s = start_app(tmp / "ix", port)
    # p4 start-up keys: benchmarks/startup.py
    try:
        url = f"http://127.0.0.1:{port}/"
        # wait for the demo collection (built in the background) so searches have something to rank
        status = Client(url, verbose=False)
        deadline = time.time() + 600
        while time.time() < deadline:
            st = json.loads(status.predict(api_name="/status"))
            if st.get("demo_build", {}).get("state") in ("done", "idle", "failed") and st.get("counts", {}).get("total", 0) > 0:
                break
            time.sleep(2)
        photos = make_photos(tmp / "upload", 16 if quick else 48, side=800)
        per_client = 10 if quick else 25
        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        queries = ["a cat", "coffee", "a rocket at night", "a horse", "galaxies in space", "a doorbell", "dentist appointment"]

        def searcher(n: int) -> None:
            c = Client(url, verbose=False)
            for i in range(per_client):
                t0 = time.perf_counter()
                try:
                    json.loads(c.predict(text=queries[(n + i) % len(queries)], image=None, audio=None,
                                         target="any", k=10, api_name="/search"))
                    with lock:
                        lat.append(time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(repr(exc))

        def indexer() -> None:
            c = Client(url, verbose=False)
            c.predict(files=[handle_file(str(p)) for p in photos], api_name="/index_uploads")

        threads = [threading.Thread(target=searcher, args=(n,)) for n in range(8)]
        writer = threading.Thread(target=indexer)
        t0 = time.perf_counter()
        writer.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        writer.join()
        lat.sort()
        out.update(
            concurrent_search_p50_ms=round(1e3 * lat[len(lat) // 2], 1) if lat else None,
            concurrent_search_p95_ms=round(1e3 * lat[int(len(lat) * 0.95) - 1], 1) if lat else None,
            concurrent_search_qps=round(len(lat) / wall, 2),
            concurrent_search_errors=len(errors),
            concurrent_clients=8,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def write_report(res: dict, path: Path) -> None:
    """Human-readable RESULTS.md."""
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (--quick)' if res.get('quick') else ''}.",
        "Ratios are measured within this one run; absolute numbers are indicative only.",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in res.items()]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    """Run every benchmark and print/write the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (every key still measured)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    res: dict = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.setdefault("CROSSMODAL_CACHE", str(tmp / "cache"))
        benches = [
            ("p1", lambda: bench_index_efficiency(tmp / "p1", n=48 if args.quick else 128, batch=16)),
            ("flat", lambda: bench_flat_latency([1_000, 10_000, 100_000])),
            ("p2", lambda: bench_query_overhead(tmp / "p2", n=100_000)),
            ("p3", lambda: bench_ann(200_000 if args.quick else 1_000_000)),
            ("app", lambda: bench_app(tmp / "app", args.quick)),
            ("reindex", lambda: bench_reindex(tmp / "reindex", args.quick)),
            ("p6", lambda: bench_concurrency(tmp / "concurrency", args.quick)),
            ("p4", lambda: bench_startup(tmp / "startup", args.quick)),
            ("p5", lambda: bench_scale(tmp / "scale", args.quick)),
        ]
        for name, bench in benches:
            try:
                res.update(bench())
            except Exception as exc:  # one failing benchmark (e.g. Ray cannot start) must not lose the others
                res[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"benchmark {name} failed: {exc}", file=sys.stderr)
    write_report(res, ROOT / "benchmarks" / "RESULTS.md")
    if args.json:
        print(json.dumps(res))
    else:
        print((ROOT / "benchmarks" / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
