"""The fusion lab callback as a plain function, on a small captioned collection (two sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.analysis.lab import lab_table, movement_tag, run_lab
from crossmodal_demo.config import load_config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.fusion import combine_query_vectors, contributions, fuse
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.retrieval.query import Query
from crossmodal_demo.retrieval.sources import list_sources
from tests.fakes import colour_image, fake_overrides

# Fake encoders (tests/fakes.py): a picture's vector is its colour's name; a caption's, its words.
# Captions deliberately disagree with two pictures, so the two sources rank differently for "red".
CAPTIONS = {
    "red.png": "a photo",
    "blue.png": "red red car",
    "green.png": "a green field",
    "yellow.png": "a yellow sun",
    "black.png": "night sky",
}


@pytest.fixture(scope="module")
def lab_lib(tmp_path_factory: pytest.TempPathFactory) -> Library:
    media = tmp_path_factory.mktemp("lab_media")
    for name in CAPTIONS:
        colour_image(name.split(".")[0]).save(media / name)
    (media / "cafe_note.txt").write_text("red wine and coffee at the cafe")
    (media / "captions.csv").write_text("path,caption\n" + "".join(f'{n},"{c}"\n' for n, c in CAPTIONS.items()))
    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("lab_indexes"))
    lib = open_library(cfg, "lab", preset="offline", create=True, overrides=fake_overrides())
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
    res = run_lab(lab_lib, "red", "image", None, ["rrf", "wsum-minmax", "max-zscore"], 5, {"text/caption": 2.0})
    names = [c["name"] for c in res["columns"]]
    assert names == ["text/content", "text/caption", "rrf", "wsum-minmax", "max-zscore"]
    assert [c["kind"] for c in res["columns"]] == ["single", "single", "fused", "fused", "fused"]
    vec = lab_lib.search.encode_query(Query(text="red"))[0]["text"]
    by_name = {c["name"]: c for c in res["columns"]}
    # single sources are exact top-k over their channel
    assert [h["id"] for h in by_name["text/content"]["hits"]] == brute_force(lab_lib, vec, "content")[:5]
    assert [h["id"] for h in by_name["text/caption"]["hits"]] == brute_force(lab_lib, vec, "caption")[:5]
    assert by_name["text/content"]["hits"][0]["name"] == "red.png"  # the picture
    assert by_name["text/caption"]["hits"][0]["name"] == "blue.png"  # the (wrong) caption
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
    assert by_name["wsum-minmax"]["hits"][0]["name"] == "blue.png"
    table = lab_table(res)
    assert len(table) == 5 and len(table[0]) == 1 + len(names)
    top = by_name["wsum-minmax"]["hits"][0]
    assert table[0][4] == f"blue.png · {top['score']:.4g} {movement_tag(top)}" and movement_tag(top) == f"▲{top['movement']}"
    assert movement_tag({"movement": None}) == "new" and movement_tag({"movement": 0}) == "=" and movement_tag({"movement": -2}) == "▼2"


def test_lab_projection_and_json_shape(lab_lib: Library) -> None:
    res = run_lab(lab_lib, "red sun", "image", ["text/content"], ["rrf"], 1, None)  # red.png: 3 distinct points
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
    photo = Path(next(it.path for it in lab_lib.collection.items("image") if it.path.endswith("red.png")))
    terms = [(Query(image=photo), 1.0), ("green", 0.7), ("red", -0.5)]
    res = run_lab(lab_lib, terms, "image", None, ["rrf"], 5, None)
    assert res["query"]["modality"] == "image+text" and [t["weight"] for t in res["query"]["terms"]] == [1.0, 0.7, -0.5]
    enc = lab_lib.search.encode_query
    combined = combine_query_vectors(
        [(enc(Query(image=photo))[0]["text"], 1.0), (enc(Query(text="green"))[0]["text"], 0.7), (enc(Query(text="red"))[0]["text"], -0.5)]
    )
    content = next(c for c in res["columns"] if c["name"] == "text/content")
    assert [h["id"] for h in content["hits"]] == brute_force(lab_lib, combined, "content")[:5]
    plain = run_lab(lab_lib, Query(image=photo), "image", ["text/content"], [], 5, None)
    plain_names = [h["name"] for h in plain["columns"][0]["hits"]]
    names = [h["name"] for h in content["hits"]]
    assert plain_names[0] == "red.png"
    # the arithmetic pulls the query towards green: the green picture climbs to the top
    assert names[0] == "green.png" and plain_names.index("green.png") > 0


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
    res = run_lab(lab_lib, "red wine", "text", None, ["combmnz"], 3, None)
    assert [h["id"] for h in res["columns"][0]["hits"]] == [h["id"] for h in res["columns"][1]["hits"]]
