"""The app on a Milvus collection (issue 14): upload, search, browse and delete work unchanged.

Skipped when pymilvus / milvus-lite are not installed (``pip install -r requirements-scale.txt``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from crossmodal_demo.app import library_actions, search_actions  # noqa: E402
from crossmodal_demo.app.visitors import Visitor  # noqa: E402
from crossmodal_demo.index.milvus import MilvusCollection  # noqa: E402
from tests.test_app_service import make_service, pictures  # noqa: E402


def test_the_app_uploads_searches_and_deletes_on_a_milvus_collection(tmp_path: Path) -> None:
    svc = make_service(tmp_path, store="milvus", milvus_uri=str(tmp_path / "app-milvus.db"))
    v = Visitor(session="m")
    svc.create_collection(v, "mil")
    rep = library_actions.index_uploads(svc, v, pictures(tmp_path / "up", "red", "blue", "green"))
    assert rep["added"] == 3 and not rep["errors"]
    with svc.library(svc.shared("mil")) as lib:
        assert isinstance(lib.collection, MilvusCollection)  # the store chosen at creation, remembered
    hits = search_actions.search(svc, v, text="red", target="image", k=3)["hits"]
    assert Path(hits[0]["path"]).name.startswith("red")
    items = library_actions.list_items(svc, v)["items"]
    red = next(it["id"] for it in items if Path(it["path"]).name.startswith("red"))
    library_actions.delete(svc, v, [red])
    hits = search_actions.search(svc, v, text="red", target="image", k=3)["hits"]
    assert all(h["id"] != red for h in hits) and len(hits) == 2
    svc.close()
