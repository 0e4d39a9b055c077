"""The Milvus store (issue 14) on Milvus Lite: same interface and results as SQLite + FAISS.

Skipped when pymilvus / milvus-lite are not installed (``pip install -r requirements-scale.txt``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from crossmodal_demo.cli.main import main  # noqa: E402
from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index.milvus import MilvusCollection  # noqa: E402
from crossmodal_demo.index.protocol import collection_names, create_collection, open_collection  # noqa: E402
from crossmodal_demo.index.schema import NewItem  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402
from crossmodal_demo.retrieval.query import Query  # noqa: E402
from tests.fakes import fake_overrides, write_fake_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIM = 8
MANIFEST = {"preset": "synthetic", "encoders": {}, "spaces": {"s": DIM}}


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def new_items(vecs: np.ndarray, start: int = 0) -> list[NewItem]:
    return [NewItem(path=f"/m/{start + i}.x", root="/m", modality=("text", "image")[i % 2], sha256=f"{start + i:064x}",
                    size=i, caption=f"c{i}", labels=[("thing", 0.5)], vectors={("s", "content"): v}) for i, v in enumerate(vecs)]


def test_add_search_by_modality_remove_and_reopen(tmp_path: Path) -> None:
    config = load_config(indexes_dir=tmp_path / "ix", store="milvus", milvus_uri=str(tmp_path / "lite.db"))
    vecs = unit_vectors(12)
    coll = create_collection(config, "mv", MANIFEST)
    assert isinstance(coll, MilvusCollection)
    ids = coll.add(new_items(vecs))
    assert coll.add(new_items(vecs[:2])) == [-1, -1]  # same content: skipped
    assert coll.counts() == {"image": 6, "audio": 0, "text": 6, "total": 12}
    scores, got = coll.search(("s", "content", "image"), vecs[:2], 3)
    image_ids = {ids[i] for i in range(1, 12, 2)}
    assert set(got.ravel()) <= image_ids  # the modality filter holds
    exact = vecs[1::2] @ vecs[:2].T  # (6 images, 2 queries)
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=0)[:3].T, atol=1e-5)
    it = coll.get(ids[1])
    assert (it.caption, it.labels, it.size, it.modality) == ("c1", [["thing", 0.5]], 1, "image")
    np.testing.assert_allclose(coll.vectors_of(ids[1])[("s", "content")], vecs[1], atol=1e-6)
    assert coll.remove([ids[1], 999]) == [ids[1]]
    assert ids[1] not in coll.search(("s", "content", "image"), vecs[1:2], 6)[1] and coll.get(ids[1]) is None
    coll.close()
    again = open_collection(load_config(indexes_dir=tmp_path / "ix"), "mv")  # the store is remembered, not configured
    try:
        assert isinstance(again, MilvusCollection) and again.counts()["total"] == 11
        assert list(again.index_ids(("s", "content", "text"))) == sorted(ids[0::2])
    finally:
        again.close()


def test_the_fake_corpus_gives_the_same_results_as_faiss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = write_fake_corpus(tmp_path / "media")
    ix = tmp_path / "ix"
    for name, extra in (("faiss", []), ("milvus", ["--store", "milvus", "--milvus-uri", str(tmp_path / "m.db")])):
        code = main(["index", str(media), "--collection", name, "--indexes-dir", str(ix), "--preset", "offline", "--json", *extra],
                    encoders=fake_overrides())
        assert code == 0 and json.loads(capsys.readouterr().out)["added"] == 10
    assert json.loads((ix / "milvus" / "manifest.json").read_text())["store"] == "milvus"
    config = load_config(indexes_dir=ix)
    results = {}
    for name in ("faiss", "milvus"):
        lib = open_library(config, name, overrides=fake_overrides())
        try:
            results[name] = [[(Path(h.path).name, round(h.score, 5), h.channel) for h in lib.search.search(Query(text=t), target=g, k=5).hits]
                             for t in ("red", "low tone", "door notes") for g in ("any", "image", "audio", "text")]
        finally:
            lib.collection.close()
    def untied(hits: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
        return [h for h in hits if sum(o[1] == h[1] for o in hits) == 1]  # ties are ordered by id, and ids differ

    assert any(results["faiss"])
    for m, f in zip(results["milvus"], results["faiss"]):
        assert [h[1] for h in m] == [h[1] for h in f] and untied(m) == untied(f)
    assert main(["list", "--collection", "milvus", "--indexes-dir", str(ix), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADD_AND_COUNT = """
import sys, numpy as np
from crossmodal_demo.config import load_config
from crossmodal_demo.index.protocol import create_collection
from tests.test_milvus import MANIFEST, new_items, unit_vectors
coll = create_collection(load_config(indexes_dir=sys.argv[1], store="milvus", milvus_uri=sys.argv[2]), "shared", MANIFEST)
coll.add(new_items(unit_vectors(int(sys.argv[3]), seed=int(sys.argv[4])), start=int(sys.argv[4]) * 1000))
coll.flush()
print(coll.counts()["total"])
"""


@pytest.mark.slow  # ~16 s: a server and three Python processes
def test_two_processes_on_one_server_uri_see_the_same_items(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite.cmdline", "server", "--data-dir", str(tmp_path / "data"),
                               "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert server.poll() is None and time.monotonic() < deadline, "milvus-lite server did not start"
            time.sleep(0.2)

        def run(ixdir: str, n: int, seed: int) -> int:
            out = subprocess.run([sys.executable, "-c", ADD_AND_COUNT, ixdir, uri, str(n), str(seed)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-2000:]
            return int(out.stdout.strip().splitlines()[-1])

        # Two processes, each with its own indexes folder (two app replicas), one Milvus.
        assert run(str(tmp_path / "a"), 5, 1) == 5
        assert run(str(tmp_path / "b"), 3, 2) == 8
        assert run(str(tmp_path / "a"), 0, 3) == 8
        # A replica whose indexes folder is empty finds the collection on the server (its registry) and reads it.
        out = subprocess.run([sys.executable, "-m", "crossmodal_demo", "list", "--collection", "shared", "--indexes-dir",
                              str(tmp_path / "c"), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, CROSSMODAL_MILVUS_URI=uri))
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["counts"]["total"] == 8
        assert collection_names(load_config(indexes_dir=tmp_path / "d", milvus_uri=uri)) == ["shared"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_closing_frees_the_lite_file_for_the_next_process(tmp_path: Path) -> None:
    config = load_config(indexes_dir=tmp_path / "ix", store="milvus", milvus_uri=str(tmp_path / "lite.db"))
    coll = create_collection(config, "freed", MANIFEST)
    coll.add(new_items(unit_vectors(4)))
    coll.close()  # the in-process Lite server holds the file until its last collection closes
    out = subprocess.run([sys.executable, "-m", "crossmodal_demo", "list", "--collection", "freed", "--indexes-dir",
                          str(tmp_path / "ix"), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(json.loads(out.stdout)["items"]) == 4
