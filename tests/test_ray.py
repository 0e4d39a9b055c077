"""The Ray Data engine (issue 14): the same items, vectors and per-file problems as the local engine.

Skipped when Ray is not installed (``pip install -r requirements-scale.txt``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from crossmodal_demo.config import load_config  # noqa: E402
from crossmodal_demo.index.pipeline import index_paths  # noqa: E402
from crossmodal_demo.index.ray_engine import index_paths_ray  # noqa: E402
from crossmodal_demo.retrieval.library import open_library  # noqa: E402
from crossmodal_demo.retrieval.query import Query  # noqa: E402
from tests.fakes import fake_overrides, write_fake_corpus  # noqa: E402
from tests.test_collection import kill_trial  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    yield ray
    ray.shutdown()


@pytest.mark.slow  # Ray start-up and two actors: ~45 s on 2 cores
def test_ray_engine_gives_the_local_engines_items_vectors_and_problems(tmp_path: Path, ray_local) -> None:
    media = write_fake_corpus(tmp_path / "media")
    paths = [media, DATA / "bad" / "empty.png"]
    config = load_config(indexes_dir=tmp_path / "ix", batch_size=4)
    out = {}
    for name, engine in (("local", index_paths), ("ray", index_paths_ray)):
        overrides = fake_overrides()
        lib = open_library(config, name, preset="offline", create=True, overrides=overrides)
        kw = {"overrides": fake_overrides(), "actors": 2} if engine is index_paths_ray else {}
        report = engine(lib.collection, lib.encoders, paths, config, **kw)
        items = {it.path: it for it in lib.collection.items()}
        vectors = {p: lib.collection.vectors_of(it.id) for p, it in items.items()}
        hits = [[(Path(h.path).name, round(h.score, 5)) for h in lib.search.search(Query(text=t), target="any", k=4).hits]
                for t in ("red", "low", "door")]
        out[name] = (report, items, vectors, hits)
        lib.collection.close()
    (lr, li, lv, lh), (rr, ri, rv, rh) = out["local"], out["ray"]
    assert len(rr.added) == len(lr.added) == 10
    assert sorted((p.path, p.reason) for p in rr.problems) == sorted((p.path, p.reason) for p in lr.problems)
    assert sorted((n.path, n.reason) for n in rr.notes) == sorted((n.path, n.reason) for n in lr.notes)
    assert {p: (i.modality, i.sha256, i.caption, i.transcript) for p, i in ri.items()} == \
        {p: (i.modality, i.sha256, i.caption, i.transcript) for p, i in li.items()}
    for p, vecs in lv.items():
        assert vecs.keys() == rv[p].keys()
        for key, v in vecs.items():
            np.testing.assert_allclose(rv[p][key], v, atol=1e-5)
    for r, l in zip(rh, lh):  # the same ranking; ties are ordered by id, and the engines commit in different orders
        assert [h[1] for h in r] == [h[1] for h in l]
        assert [h for h in r if [o[1] for o in r].count(h[1]) == 1] == [h for h in l if [o[1] for o in l].count(h[1]) == 1]


@pytest.mark.slow  # Ray start-up in a subprocess: ~30 s on 2 cores
def test_kill_9_mid_ray_indexing_leaves_a_consistent_collection(tmp_path: Path) -> None:
    """The driver of ``index --engine ray`` killed after 40 commits: the collection is consistent and resumes."""
    kill_trial(tmp_path, 40, ("--engine", "ray"))
