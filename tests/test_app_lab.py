"""The Fusion lab and Evaluate callbacks (AppService methods and ui_lab helpers), called directly as functions.

The collection is a small ``demo`` built from the shipped photos and notes only (no speech or sounds,
so it builds in seconds), which also lets the "Use the demo benchmark" path run for real: benchmark
lines about the missing speech and sound items come back as line-by-line problems.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from crossmodal_demo.app.service import DEMO_BENCHMARK, AppService
from crossmodal_demo.config import load_config
from crossmodal_demo.app.demo_collection import DEMO_DATA, ensure_demo_collection
from crossmodal_demo.errors import UserError
from crossmodal_demo.app.ui.lab_tab import (
    EVAL_HEADERS,
    contributions_frame,
    eval_figure,
    eval_frame,
    eval_summary,
    lab_frame,
    lab_map_figure,
    lab_summary,
    pairs_frame,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> AppService:
    """A started service on a complete 'demo' collection holding the shipped photos (captioned) and notes."""
    src = tmp_path_factory.mktemp("mini_demo")
    for folder in ("photos", "notes"):
        shutil.copytree(DEMO_DATA / folder, src / folder)
    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("lab-app-indexes"))
    ensure_demo_collection(cfg, None, source=src, preset="offline").collection.close()
    svc = AppService(cfg, preset="offline", collection="demo")
    assert svc.start() == "demo" and svc.build.state == "idle"  # complete: no background build
    yield svc
    svc.close()


def test_lab_sources_and_methods(service: AppService) -> None:
    assert service.lab_sources("image") == ["text/content", "text/caption"]
    assert service.lab_sources("text") == ["text/content"]  # notes have no captions
    assert {"rrf", "mean-zscore", "wsum-minmax", "combmnz"} <= set(service.lab_methods())
    with pytest.raises(UserError, match="Unknown target 'video'"):
        service.lab_sources("video")


def test_lab_side_by_side_with_movements_contributions_and_map(service: AppService) -> None:
    res = service.lab(text="a cat", target="image", methods=["rrf", "wsum-minmax"], k=5, weights="text/caption=2, clap/content=1")
    json.dumps(res)  # JSON-ready
    assert [c["name"] for c in res["columns"]] == ["text/content", "text/caption", "rrf", "wsum-minmax"]
    assert res["collection"] == "demo" and res["ignored_weights"] == ["clap/content"] and res["weights"] == {"text/caption": 2.0}
    content = res["columns"][0]
    assert content["hits"][0]["name"] == "cat.jpg"

    table = lab_frame(res)
    assert table.shape == (5, 5) and list(table["rank"]) == [1, 2, 3, 4, 5]
    headers = list(table.columns)
    assert f"{res['baseline']} ★ baseline" in headers and "rrf (fused)" in headers and "wsum-minmax (fused)" in headers
    assert re.fullmatch(r"cat\.jpg · [0-9.]+", table.iloc[0, 1])
    for cell in table["rrf (fused)"]:  # name · score, then ▲n / ▼n / = / new
        assert re.fullmatch(r"\S+ · [0-9.e-]+ (▲\d+|▼\d+|=|new)", cell), cell

    contrib = contributions_frame(res, "rrf")
    assert list(contrib.columns) == ["method", "rank", "item", "fused score", "vs baseline", "text/content", "text/caption"]
    assert len(contrib) == 5 and contrib.iloc[0]["item"] == res["columns"][2]["hits"][0]["name"]
    one = contributions_frame(res, "wsum-minmax", rank=2)
    assert len(one) == 1 and one.iloc[0]["rank"] == 2
    hit = res["columns"][3]["hits"][1]
    assert sum(hit["contributions"].values()) == pytest.approx(hit["score"], abs=1e-4)

    fig = lab_map_figure(res)
    ax = fig.axes[0]
    assert res["projection"]["method"] in ("pca", "umap") and "query and results" in ax.get_title()
    assert len(ax.collections) >= 2  # query star + result points
    assert "baseline (for ▲/▼)" in lab_summary(res) and "`text/caption` — captions of image items" in lab_summary(res)


def test_lab_query_arithmetic_and_unreachable_sources(service: AppService) -> None:
    photo = str(DEMO_DATA / "photos" / "rocket.jpg")
    plain = service.lab(image=photo, target="image", sources=["text/content"], methods=[], k=5)
    res = service.lab(image=photo, target="image", sources=["text/content", "clip/content"], methods=["rrf"], k=5,
                      extra_text="a cup of coffee", extra_weight=0.8)
    assert res["skipped_sources"] == ["clip/content"] and [c["name"] for c in res["columns"]] == ["text/content", "rrf"]
    assert res["query"]["modality"] == "image+text" and [t["weight"] for t in res["query"]["terms"]] == [1.0, 0.8]
    assert "+ 0.8 × “a cup of coffee”" in lab_summary(res)
    before = [h["name"] for h in plain["columns"][0]["hits"]]
    after = [h["name"] for h in res["columns"][0]["hits"]]
    assert "coffee.jpg" in after and (after.index("coffee.jpg") < before.index("coffee.jpg") if "coffee.jpg" in before else True)
    neg = service.lab(text="a rocket", target="image", methods=["rrf"], k=3, extra_text="night sky", extra_weight=-0.4)
    assert [t["weight"] for t in neg["query"]["terms"]] == [1.0, -0.4]
    assert contributions_frame(plain, None).empty  # no fusion method ticked: nothing to explain


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "Nothing to rank for"),
        ({"text": "cat", "image": str(DATA / "images" / "cat.jpg")}, "one query at a time"),
        ({"text": "cat", "sources": []}, "Tick at least one source"),
        ({"text": "cat", "sources": ["clap/content"]}, "None of the ticked sources"),
        ({"text": "cat", "methods": ["borda"]}, "Unknown fusion method 'borda'"),
        ({"text": "cat", "k": 0}, "k must be between 1 and 20"),
        ({"text": "cat", "weights": "text/caption"}, "is not SOURCE=NUMBER"),
        ({"text": "cat", "weights": "text/caption=lots"}, "must be a number"),
        ({"text": "cat", "target": "video"}, "Unknown target 'video'"),
        ({"text": "cat", "extra_text": "cat", "extra_weight": -1.0}, "cancel out"),
    ],
)
def test_lab_mistakes_are_specific_user_errors(service: AppService, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        service.lab(**kwargs)


def test_evaluate_uploaded_qrels_reports_bad_lines_and_exports(service: AppService, tmp_path: Path) -> None:
    qrels = tmp_path / "mine.jsonl"
    qrels.write_text(
        "\n".join(
            [
                '{"id": "cat", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
                '{"id": "rocket", "text": "a rocket launch", "target": "image", "relevant": {"rocket.jpg": 2}}',
                "{not json",
                '{"id": "pets", "text": "my pet diary", "target": "text", "relevant": ["pet_diary.txt"]}',
                '{"id": "nope", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}',
            ]
        )
        + "\n"
    )
    calls: list[tuple[int, int, str]] = []
    doc = service.evaluate(str(qrels), ["rrf", "mean-zscore"], progress=lambda d, t, s: calls.append((d, t, s)))
    json.dumps(doc)
    assert doc["benchmark"] == "uploaded" and doc["qrels_name"] == "mine.jsonl" and doc["queries"] == 3
    assert [r["name"] for r in doc["results"]] == ["text/content", "text/caption", "rrf", "mean-zscore"]
    assert [p["line"] for p in doc["problems"]] == [3, 5] and "not valid JSON" in doc["problems"][0]["message"]
    assert "unknown item 'lion.jpg'" in doc["problems"][1]["message"]
    assert calls[0][:2] == (0, 3) and calls[-1][:2] == (3, 3) and "fusing 2 method(s)" in calls[-1][2]

    table = eval_frame(doc)
    assert list(table.columns) == EVAL_HEADERS and len(table) == 4
    assert (table["p vs best single (nDCG@10)"] == "★ best single").sum() == 1
    assert "2 qrels line(s) skipped" in eval_summary(doc)
    assert set(pairs_frame(doc)["query → target"]) == {"text->image", "text->text"}
    assert len(eval_figure(doc).axes[0].patches) == 2 * 4  # nDCG@10 and R@1 bars per row

    files = service.export_evaluation(doc, tmp_path / "export")
    rows = list(csv.reader(Path(files["csv"]).read_text(encoding="utf-8").splitlines()))
    assert rows[0][:8] == ["name", "kind", "answered", "recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"] and len(rows) == 5
    assert json.loads(Path(files["json"]).read_text())["results"] == doc["results"]
    with pytest.raises(UserError, match="Run an evaluation first"):
        service.export_evaluation({})


def test_evaluate_csv_qrels_and_mistakes(service: AppService, tmp_path: Path) -> None:
    qrels = tmp_path / "mine.csv"
    qrels.write_text('id,text,target,relevant\nq1,a cup of coffee,image,coffee.jpg\nq2,a horse,image,"horse.jpg=2"\n')
    doc = service.evaluate(str(qrels), [])
    assert doc["queries"] == 2 and [r["kind"] for r in doc["results"]] == ["single", "single"] and doc["problems"] == []
    with pytest.raises(UserError, match=r"Qrels must be a \.jsonl or \.csv file"):
        service.evaluate(str(tmp_path / "notes.txt"))
    with pytest.raises(UserError, match="Unknown fusion method 'borda'"):
        service.evaluate(str(qrels), ["borda"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "a", "target": "image", "relevant": ["lion.jpg"]}\n')
    with pytest.raises(UserError, match="No usable query"):
        service.evaluate(str(bad))


def test_demo_benchmark_runs_on_the_demo_collection_only(service: AppService, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipped benchmark without its audio-query lines (Whisper would add ~12 s here; the CLI test in
    # test_evaluate.py runs all of it on the full demo). Written next to the mini demo's photos, so the
    # relative query paths resolve as they do next to the shipped file.
    lines = [ln for ln in DEMO_BENCHMARK.read_text().splitlines() if ln.strip() and not ln.startswith("#") and '"audio":' not in ln]
    subset = Path(str(service.config.indexes_dir)).parent / "benchmark-no-audio.jsonl"
    subset.write_text("\n".join(lines) + "\n")
    shutil.copytree(DEMO_DATA / "photos", subset.parent / "photos", dirs_exist_ok=True)
    monkeypatch.setattr("crossmodal_demo.app.service.DEMO_BENCHMARK", subset)
    doc = service.evaluate(None, ["rrf"])
    assert doc["benchmark"] == "demo" and doc["qrels"] == str(subset)
    assert doc["queries"] >= 10 and doc["best_single"] == "text/content"
    # speech and sounds are not in this small demo: their lines come back as problems, one by one
    assert doc["problems"] and all(p["line"] > 0 for p in doc["problems"])
    assert any("unknown item" in p["message"] for p in doc["problems"])
    service.create_collection("other")
    try:
        with pytest.raises(UserError, match="The demo benchmark labels items of the 'demo' collection.*'other'"):
            service.evaluate(None)
    finally:
        service.switch_collection("demo")


def test_concurrent_lab_runs_and_the_warm_up_take_turns(service: AppService) -> None:
    """ranx runs numba's workqueue layer, which aborts the process if two threads fuse at once: the service serialises."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                assert service.lab(text="a horse", target="image", methods=["rrf", "mean-minmax"], k=3)["columns"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
