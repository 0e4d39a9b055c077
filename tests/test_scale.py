"""Compressed indexes (issue 14): IVF-SQ8 re-ranked exactly from SQLite, checked against exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.config import load_config
from crossmodal_demo.index import faiss_index as ann
from crossmodal_demo.index.store import Collection, NewItem

DIM = 64


def clustered(n: int, d: int = DIM, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """L2-normalised points around ``clusters`` random centres (float32 (n, d))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def queries_near(vecs: np.ndarray, q: int = 50, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = vecs[rng.choice(len(vecs), q, replace=False)] + 0.3 * rng.standard_normal((q, vecs.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_10(got: np.ndarray, vecs: np.ndarray, q: np.ndarray, ids: np.ndarray) -> float:
    truth = ids[np.argsort(-(q @ vecs.T), axis=1)[:, :10]]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))


def test_auto_switches_to_the_compressed_kind_at_the_configured_size() -> None:
    policy = ann.policy_for(load_config({"CROSSMODAL_COMPRESS_MIN_ITEMS": "5000", "CROSSMODAL_IVF_MIN_ITEMS": "2000"}))
    assert [policy.choose(n) for n in (1999, 2000, 4999, 5000)] == ["flat", "ivf", "ivf", "ivfsq8"]
    assert ann.IndexPolicy(kind="ivfsq8").choose(999) == "flat"  # too few vectors to train on


def test_ivfsq8_reranked_matches_exact_search_with_a_quarter_of_the_memory() -> None:
    vecs = clustered(6000)
    ids = np.arange(100, 6100, dtype=np.int64)  # ids ≠ row numbers: the fetch must go by id
    q = queries_near(vecs)
    policy = ann.IndexPolicy(kind="ivfsq8")
    index = ann.build(vecs, ids, DIM, policy)
    assert ann.kind_of(index) == "ivfsq8"
    fetch = lambda sel: vecs[sel - 100]  # noqa: E731
    scores, got = ann.search(index, q, 10, policy, fetch)
    assert recall_at_10(got, vecs, q, ids) >= 0.95
    # Re-ranked scores are the exact inner products of the returned ids, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, vecs[got - 100]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    flat = ann.build(vecs, ids, DIM, ann.IndexPolicy(kind="ivf"))
    assert ann.bytes_per_vector(index, DIM) < 0.4 * ann.bytes_per_vector(flat, DIM)


def test_collection_reranks_its_compressed_partition_from_sqlite_and_reopens_it(tmp_path: Path) -> None:
    vecs = clustered(3000, seed=3)
    manifest = {"preset": "synthetic", "encoders": {}, "spaces": {"s": DIM}}
    policy = ann.IndexPolicy(kind="ivfsq8")
    coll = Collection.create(tmp_path, "big", manifest, policy)
    items = [NewItem(path=f"/x/{i}.txt", root="/x", modality="text", sha256=f"{i:064x}", size=1, vectors={("s", "content"): v})
             for i, v in enumerate(vecs)]
    ids = np.array(coll.add(items), dtype=np.int64)
    coll.close()
    coll = Collection.open(tmp_path, "big", policy)
    try:
        assert coll.index_kinds() == {"s.content.text": "ivfsq8"} and not coll.rebuilt
        q = queries_near(vecs, 20)
        scores, got = coll.search(("s", "content", "text"), q, 10)
        assert recall_at_10(got, vecs, q, ids) >= 0.95
        row = {int(i): j for j, i in enumerate(ids)}
        exact = np.einsum("qd,qkd->qk", q, vecs[[[row[int(i)] for i in r] for r in got]])
        np.testing.assert_allclose(scores, exact, atol=1e-5)
    finally:
        coll.close()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_other_kinds_are_searched_as_they_are(kind: str) -> None:
    vecs = clustered(2000, seed=4)
    ids = np.arange(2000, dtype=np.int64)
    index = ann.build(vecs, ids, DIM, ann.IndexPolicy(kind=kind))
    q = queries_near(vecs, 5)
    calls: list[int] = []
    s1, i1 = ann.search(index, q, 10, ann.IndexPolicy(kind=kind), lambda sel: calls.append(len(sel)) or vecs[sel])
    s2, i2 = index.search(q, 10)
    assert not calls and np.array_equal(i1, i2)
