"""The fusion lab callback as a plain function, on a small captioned collection (two sources)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import combine_query_vectors, contributions, fuse
from crossmodal_demo.analysis.lab import lab_table, run_lab
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.retrieval.search import Query
from crossmodal_demo.retrieval.sources import list_sources

DATA = Path(__file__).parent / "data"
# Captions deliberately disagree with the pictures for two photos, so the two sources rank differently.
CAPTIONS = {
    "cat.jpg": "A tabby cat looking at the camera.",
    "coffee.jpg": "A racing car on a track.",
    "rocket.jpg": "A rocket on the launch pad at dusk.",
    "china.jpg": "A cup of hot coffee on a table.",
    "flower.jpg": "An orange flower.",
}


@pytest.fixture(scope="module")
def lab_lib(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Library:
    from crossmodal_demo.config import load_config
    from crossmodal_demo.index.pipeline import index_paths

    media = tmp_path_factory.mktemp("lab_media")
    for name in CAPTIONS:
        shutil.copy(DATA / "images" / name, media / name)
    shutil.copy(DATA / "texts" / "cafe_note.txt", media / "cafe_note.txt")
    (media / "captions.csv").write_text("path,caption\n" + "".join(f'{n},"{c}"\n' for n, c in CAPTIONS.items()))
    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("lab_indexes"))
    lib = open_library(cfg, "lab", preset="offline", create=True)
    report = index_paths(lib.collection, lib.encoders, [media], cfg)
    assert len(report.added) == 6, report.problems
    return lib


def brute_force(lib: Library, vec: np.ndarray, channel: str) -> list[int]:
    """Image ids ranked by exact cosine on their stored ``channel`` vectors."""
    scored = []
    for it in lib.collection.items("image"):
        v = lib.collection.vectors_of(it.id).get(("text", channel))
        if v is not None:
            scored.append((-float(v @ vec), it.id))
    return [i for _, i in sorted(scored)]


def test_lab_columns_movements_and_contributions(lab_lib: Library) -> None:
    res = run_lab(lab_lib, "a cup of coffee", "image", None, ["rrf", "wsum-minmax", "max-zscore"], 5, {"text/caption": 2.0})
    names = [c["name"] for c in res["columns"]]
    assert names == ["text/content", "text/caption", "rrf", "wsum-minmax", "max-zscore"]
    assert [c["kind"] for c in res["columns"]] == ["single", "single", "fused", "fused", "fused"]
    vec = lab_lib.search.encode_query(Query(text="a cup of coffee"))[0]["text"]
    by_name = {c["name"]: c for c in res["columns"]}
    # single sources are exact top-k over their channel
    assert [h["id"] for h in by_name["text/content"]["hits"]] == brute_force(lab_lib, vec, "content")[:5]
    assert [h["id"] for h in by_name["text/caption"]["hits"]] == brute_force(lab_lib, vec, "caption")[:5]
    assert by_name["text/content"]["hits"][0]["name"] == "coffee.jpg"  # the picture
    assert by_name["text/caption"]["hits"][0]["name"] == "china.jpg"  # the (wrong) caption
    # baseline: the source most confident in its top hit
    tops = {n: by_name[n]["hits"][0]["score"] for n in ("text/content", "text/caption")}
    assert res["baseline"] == max(tops, key=tops.get)
    base = {h["id"]: h["rank"] for h in by_name[res["baseline"]]["hits"]}
    lists = {n: {str(h["id"]): h["score"] for h in by_name[n]["hits"]} for n in ("text/content", "text/caption")}
    for method in ("rrf", "wsum-minmax", "max-zscore"):
        col = by_name[method]
        w = {"text/caption": 2.0} if method.startswith("wsum") else None
        want = fuse(lists, method, w)  # all 5 images are in both top-5 lists, so the top-5 lists are complete
        assert [h["id"] for h in col["hits"]] == [int(d) for d in want]
        parts = contributions(lists, method, w)
        for h in col["hits"]:
            assert h["score"] == pytest.approx(want[str(h["id"])], abs=1e-4)  # hits carry 6-decimal scores
            assert sum(h["contributions"].values()) == pytest.approx(h["score"], abs=1e-5)
            assert h["contributions"] == pytest.approx(parts[str(h["id"])], abs=1e-4)
            assert h["movement"] == base[h["id"]] - h["rank"]
    # weighting the caption source twice pulls its favourite to the top
    assert by_name["wsum-minmax"]["hits"][0]["name"] == "china.jpg"
    table = lab_table(res)
    assert len(table) == 5 and len(table[0]) == 1 + len(names)


def test_lab_projection_and_json_shape(lab_lib: Library) -> None:
    res = run_lab(lab_lib, "a rocket", "image", ["text/content"], ["rrf"], 3, None)
    assert [s["name"] for s in res["sources"]] == ["text/content"]
    proj = res["projection"]
    assert proj["method"] in ("pca", "umap") and proj["space"] == "text"
    kinds = [p["kind"] for p in proj["points"]]
    assert kinds[0] == "query" and kinds.count("query") == 1
    # every shown result has its content point, captioned ones a caption point too
    ids = {h["id"] for c in res["columns"] for h in c["hits"]}
    assert {p["id"] for p in proj["points"] if p["kind"] == "result"} == ids
    assert all(np.isfinite([p["x"], p["y"]]).all() for p in proj["points"])
    assert len({(p["x"], p["y"]) for p in proj["points"]}) == len(proj["points"])


def test_multimodal_query_with_a_negative_term(lab_lib: Library) -> None:
    photo = DATA / "images" / "rocket.jpg"
    terms = [(Query(image=photo), 1.0), ("a cup of coffee", 0.7), ("a rocket", -0.5)]
    res = run_lab(lab_lib, terms, "image", None, ["rrf"], 5, None)
    assert res["query"]["modality"] == "image+text" and [t["weight"] for t in res["query"]["terms"]] == [1.0, 0.7, -0.5]
    enc = lab_lib.search.encode_query
    combined = combine_query_vectors(
        [(enc(Query(image=photo))[0]["text"], 1.0), (enc(Query(text="a cup of coffee"))[0]["text"], 0.7), (enc(Query(text="a rocket"))[0]["text"], -0.5)]
    )
    content = next(c for c in res["columns"] if c["name"] == "text/content")
    assert [h["id"] for h in content["hits"]] == brute_force(lab_lib, combined, "content")[:5]
    plain = run_lab(lab_lib, Query(image=photo), "image", ["text/content"], [], 5, None)
    plain_names = [h["name"] for h in plain["columns"][0]["hits"]]
    names = [h["name"] for h in content["hits"]]
    assert plain_names[0] == "rocket.jpg"
    # the arithmetic pulls the query towards coffee: the coffee photo climbs
    assert names.index("coffee.jpg") < plain_names.index("coffee.jpg")


def test_lab_errors_are_user_errors(lab_lib: Library) -> None:
    with pytest.raises(UserError, match="Unknown source.*Available: text/content, text/caption"):
        run_lab(lab_lib, "x", "image", ["clip/content"], ["rrf"], 5, None)
    with pytest.raises(UserError, match="Unknown fusion method 'borda'"):
        run_lab(lab_lib, "x", "image", None, ["borda"], 5, None)
    with pytest.raises(UserError, match="k must be at least 1"):
        run_lab(lab_lib, "x", "image", None, ["rrf"], 0, None)
    with pytest.raises(UserError, match="positive weight"):
        run_lab(lab_lib, [("x", -1.0)], "image", None, ["rrf"], 5, None)
    with pytest.raises(UserError, match="Unknown target 'video'"):
        run_lab(lab_lib, "x", "video", None, ["rrf"], 5, None)
    # text items have no captions: one source only, and fusion of one list keeps its order
    assert [s.name for s in list_sources(lab_lib, ["text"], "text")] == ["text/content"]
    res = run_lab(lab_lib, "coffee", "text", None, ["combmnz"], 3, None)
    assert [h["id"] for h in res["columns"][0]["hits"]] == [h["id"] for h in res["columns"][1]["hits"]]
