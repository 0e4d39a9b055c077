"""Re-indexing an unchanged folder: its time ÷ the first indexing of the same folder (offline preset).

    python benchmarks/reindex.py [--quick]      (or python -m benchmarks.reindex)

``reindex_unchanged_ratio`` (issue 11; goal ≤ 0.05): the second run finds every file stored at the same
path with the same size and mtime, so it neither hashes nor decodes anything. Models are loaded before
the first run is timed, so the ratio compares indexing work, not model loading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index.pipeline import index_paths  # noqa: E402
from crossmodal_demo.ingest.media import load_image  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402


def bench_reindex(tmp: Path, quick: bool) -> dict[str, float | int | str]:
    """Seconds of an unchanged re-index ÷ seconds of the first index, over ~100 (quick: 32) 1600-px JPEGs."""
    from benchmarks.run import make_photos  # here, not at the top: run.py imports this module

    n = 32 if quick else 100
    photos = make_photos(tmp / "photos", n)
    cfg = load_config(indexes_dir=tmp / "ix")
    lib = open_library(cfg, "reindex", preset="offline", create=True)
    lib.encoders.get("conse-effnet-lite0").encode([load_image(photos[0])])  # warm-up: weights, class vectors
    t0 = time.perf_counter()
    first = index_paths(lib.collection, lib.encoders, [tmp / "photos"], cfg)
    t1 = time.perf_counter()
    again = index_paths(lib.collection, lib.encoders, [tmp / "photos"], cfg)
    t2 = time.perf_counter()
    lib.collection.close()
    # (a JPEG may lose its one altered pixel and duplicate another photo: it stays a duplicate, re-hashed each run)
    if again.added or len(again.unchanged) + len(again.duplicates) != n or len(again.unchanged) != len(first.added):
        raise RuntimeError(f"unexpected reports: first {first.to_json()}, again {again.to_json()}")
    return {
        "reindex_unchanged_ratio": round((t2 - t1) / (t1 - t0), 4),
        "reindex_first_s": round(t1 - t0, 2),
        "reindex_unchanged_s": round(t2 - t1, 3),
        "reindex_files": n,
        "reindex_duplicates": len(first.duplicates),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 photos instead of 100")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("CROSSMODAL_CACHE", str(Path(d) / "cache"))
        print(json.dumps(bench_reindex(Path(d), args.quick)))
