"""Evaluation: hand-worked metrics, qrels problems line by line, TREC files that re-score identically, and
the evaluate CLI on the shipped demo benchmark."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from crossmodal_demo.cli.main import main
from crossmodal_demo.errors import UserError
from crossmodal_demo.analysis.evaluate import (
    METRICS,
    QrelsQuery,
    compute_metrics,
    evaluate_qrels,
    parse_qrels,
    resolve_qrels,
)
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.search import Query

DATA = Path(__file__).parent / "data"
DEMO_DATA = Path(__file__).parent.parent / "crossmodal_demo" / "demo_data"
BENCHMARK = DEMO_DATA / "benchmark.jsonl"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_match_hand_computed_values() -> None:
    q1 = QrelsQuery(1, "q1", Query(text="x"), "text", "text", {}, items={2: 1})
    q2 = QrelsQuery(2, "q2", Query(text="y"), "text", "text", {}, items={1: 2, 3: 1})
    q3 = QrelsQuery(3, "q3", Query(text="z"), "text", "text", {}, items={9: 1})  # nothing ranked → all 0
    run = {"q1": {"1": 0.9, "2": 0.8, "3": 0.7}, "q2": {"1": 0.9, "2": 0.8, "3": 0.7}, "q3": {}}
    # q1: relevant at rank 2 → R@1 0, R@5 1, RR 1/2, nDCG = (1/log2 3) / 1
    # q2: grades 2 at rank 1 and 1 at rank 3 → R@1 1/2, RR 1, DCG = 2 + 1/log2 4 = 2.5, IDCG = 2 + 1/log2 3
    ndcg1 = 1 / math.log2(3)
    ndcg2 = 2.5 / (2 + 1 / math.log2(3))
    got = compute_metrics([q1, q2, q3], run)
    assert got == pytest.approx(
        {"recall@1": 0.5 / 3, "recall@5": 2 / 3, "recall@10": 2 / 3, "mrr": 1.5 / 3, "ndcg@10": (ndcg1 + ndcg2) / 3}, abs=1e-9
    )


def test_qrels_problems_are_reported_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "q.jpg").write_bytes((DATA / "images" / "cat.jpg").read_bytes())
    path = write(
        tmp_path / "qrels.jsonl",
        [
            '{"id": "ok1", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
            "{not json",
            '{"id": "two", "text": "a", "image": "q.jpg", "target": "image", "relevant": ["cat.jpg"]}',
            '{"id": "typo", "txt": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
            '{"id": "tgt", "text": "a cat", "target": "video", "relevant": ["cat.jpg"]}',
            '{"id": "rel", "text": "a cat", "target": "image", "relevant": []}',
            '{"id": "grade", "text": "a cat", "target": "image", "relevant": {"cat.jpg": 0}}',
            '{"id": "nofile", "image": "missing.jpg", "target": "text", "relevant": ["pet_note.txt"]}',
            '{"id": "ok1", "text": "again", "target": "image", "relevant": ["cat.jpg"]}',
            "",
            "# a comment",
            '{"id": "ok2", "image": "q.jpg", "target": "text", "relevant": {"pet_note.txt": 2}}',
        ],
    )
    queries, problems = parse_qrels(path)
    assert [q.id for q in queries] == ["ok1", "ok2"]
    assert queries[1].query.image == tmp_path / "q.jpg"  # relative to the qrels file's folder
    msgs = {p.line: p.message for p in problems}
    assert sorted(msgs) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in msgs[2] and '"target" (image|text|audio|any)' in msgs[2]
    assert "exactly one of" in msgs[3] and "got text, image" in msgs[3]
    assert "unknown field(s) 'txt'" in msgs[4]
    assert "'video'; expected one of image, text, audio, any" in msgs[5]
    assert "non-empty list" in msgs[6]
    assert "whole numbers ≥ 1" in msgs[7]
    assert "not found" in msgs[8] and str(tmp_path / "missing.jpg") in msgs[8]
    assert "duplicate id 'ok1' (first used on line 1)" in msgs[9]


def test_empty_and_malformed_files_fail_with_the_expected_format(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is empty. Expected one JSON object per line"):
        parse_qrels(write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(UserError, match="unknown: query; missing: relevant"):
        parse_qrels(write(tmp_path / "bad.csv", ["id,query,target", "q1,a cat,image"]))
    with pytest.raises(UserError, match="Qrels file not found"):
        parse_qrels(tmp_path / "nope.jsonl")
    qs, problems = parse_qrels(
        write(tmp_path / "ok.csv", ["id,text,target,relevant", "q1,a cat,image,cat.jpg;china.jpg=2", 'q2,tea,text,"[""cafe_note.txt""]"'])
    )
    assert not problems and qs[0].relevant == {"cat.jpg": 1, "china.jpg": 2} and qs[1].relevant == {"cafe_note.txt": 1}


def test_names_resolve_by_path_relative_path_or_file_name(indexed: Library, tmp_path: Path) -> None:
    cat = next(it for it in indexed.collection.items("image") if it.path.endswith("cat.jpg"))
    path = write(
        tmp_path / "q.jsonl",
        [
            json.dumps({"id": "full", "text": "a cat", "target": "image", "relevant": [cat.path]}),
            '{"id": "name", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
            '{"id": "rel", "text": "a cat", "target": "image", "relevant": ["cat.jpg", "china.jpg"]}',
            '{"id": "unknown", "text": "a lion", "target": "image", "relevant": ["lion.jpg", "cat.jpg"]}',
            '{"id": "typo", "text": "a cat", "target": "image", "relevant": ["cat.jpeg"]}',
            '{"id": "wrongmod", "text": "a cat", "target": "image", "relevant": ["pet_note.txt"]}',
        ],
    )
    queries, problems = resolve_qrels(indexed.collection, parse_qrels(path)[0])
    assert [q.id for q in queries] == ["full", "name", "rel"]
    assert queries[0].items == queries[1].items == {cat.id: 1}
    msgs = {p.line: p.message for p in problems}
    assert "unknown item 'lion.jpg'" in msgs[4] and "file name" in msgs[4]
    assert "Did you mean cat.jpg" in msgs[5]
    assert "is text, but the target is image" in msgs[6]


def test_evaluate_function_with_one_source_and_trec_files(indexed: Library, tmp_path: Path) -> None:
    """tests/data has no captions: one source, so every fused row must equal it; TREC files re-score the same."""
    import ranx

    shutil.copy(DATA / "images" / "cat.jpg", tmp_path / "query_cat.jpg")
    path = write(
        tmp_path / "q.jsonl",
        [
            '{"id": "t1", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
            '{"id": "t2", "text": "pasta with tomato sauce", "target": "text", "relevant": {"recipe_note.txt": 2}}',
            '{"id": "t3", "text": "a rocket launch", "target": "image", "relevant": ["rocket.jpg", "astronaut.jpg"]}',
            '{"id": "i1", "image": "query_cat.jpg", "target": "image", "relevant": ["coffee.jpg"]}',
            f'{{"id": "s1", "audio": "{DATA / "sounds" / "silence.wav"}", "target": "text", "relevant": ["forecast_note.txt"]}}',
        ],
    )
    doc = evaluate_qrels(indexed, path, ["rrf", "mean-zscore"], depth=20, runs_out=tmp_path / "runs")
    assert doc["queries"] == 4 and doc["excluded_query_items"] == 1  # the query photo is cat.jpg itself
    assert [p["line"] for p in doc["problems"]] == [5] and "no speech found" in doc["problems"][0]["message"]
    rows = {r["name"]: r for r in doc["results"]}
    assert list(rows) == ["text/content", "rrf", "mean-zscore"] and doc["best_single"] == "text/content"
    assert rows["rrf"]["kind"] == "fused" and set(rows["rrf"]["metrics"]) == set(METRICS)
    for name in ("rrf", "mean-zscore"):
        assert rows[name]["metrics"] == pytest.approx(rows["text/content"]["metrics"])
        assert rows[name]["vs_best_single"]["mrr"] == {"p_value": None, "significant": False}  # identical: no test
    # The files the command wrote give the same numbers in ranx (doc ids are paths, not item ids).
    qrels = ranx.Qrels.from_file(str(tmp_path / "runs" / "qrels.trec"), kind="trec")
    for name, file in doc["runs_out"].items():
        run = ranx.Run.from_file(file, kind="trec")
        again = ranx.evaluate(qrels, run, list(METRICS), make_comparable=True)
        assert again == pytest.approx(rows[name]["metrics"], abs=1e-9), name
    i1 = [x.split() for x in (tmp_path / "runs" / "text_content.run").read_text().splitlines() if x.startswith("i1 ")]
    assert len(i1) == 6 and "cat.jpg" not in {x[2] for x in i1}  # 7 images minus the query itself


# --------------------------------------------------------------------------- the demo benchmark via the CLI
@pytest.fixture(scope="module")
def demo_indexes(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """The built-in demo collection, built once for this module (~30 s with the offline preset)."""
    from crossmodal_demo.config import load_config
    from crossmodal_demo.app.demo_collection import ensure_demo_collection

    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("demo_indexes"))
    lib = ensure_demo_collection(cfg, preset="offline")
    lib.collection.close()
    return cfg.indexes_dir


def test_benchmark_covers_every_modality_pair() -> None:
    rows = [json.loads(x) for x in BENCHMARK.read_text().splitlines() if x.strip() and not x.startswith("#")]
    pairs = {(next(f for f in ("text", "image", "audio") if f in r), r["target"]) for r in rows}
    assert len(rows) >= 30 and len(pairs) == 9


def test_evaluate_cli_on_the_demo_benchmark(demo_indexes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ranx

    out = tmp_path / "runs"
    code = main(["evaluate", "--indexes-dir", str(demo_indexes), "--collection", "demo", "--qrels", str(BENCHMARK), "--json", "--runs-out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["problems"] == [] and doc["queries"] >= 30
    rows = {r["name"]: r for r in doc["results"]}
    assert {"text/content", "text/caption"} <= set(rows) and set(DEFAULT_METHODS) <= set(rows)
    assert {r["kind"] for r in doc["results"]} == {"single", "fused"}
    assert all(set(r["metrics"]) == set(METRICS) for r in doc["results"])
    assert doc["best_single"] == "text/content"
    assert all("p_value" in r["vs_best_single"]["ndcg@10"] for r in doc["results"] if r["name"] != "text/content")
    pairs = {p["pair"]: p for p in doc["by_pair"]}
    assert len(pairs) == 9
    # text→audio needs both channels (sounds only have captions, speech only transcripts): fusion wins there
    t2a = {r["name"]: r["metrics"]["ndcg@10"] for r in pairs["text->audio"]["results"]}
    assert pairs["text->audio"]["winner_kind"] == "fused"
    # text items have no captions: that source is not listed for text targets, and it answered fewer queries
    assert [r["name"] for r in pairs["text->text"]["results"] if r["kind"] == "single"] == ["text/content"]
    assert rows["text/caption"]["answered"] < rows["text/content"]["answered"] == doc["queries"]
    assert max(t2a[m] for m in DEFAULT_METHODS) > max(t2a["text/content"], t2a["text/caption"]) + 0.2
    # every row's TREC run re-scores to the same metrics in ranx
    qrels = ranx.Qrels.from_file(str(out / "qrels.trec"), kind="trec")
    assert sorted(p.name for p in out.iterdir()) == sorted(["qrels.trec"] + [Path(f).name for f in doc["runs_out"].values()])
    for name, file in doc["runs_out"].items():
        again = ranx.evaluate(qrels, ranx.Run.from_file(file, kind="trec"), list(METRICS), make_comparable=True)
        assert again == pytest.approx(rows[name]["metrics"], abs=1e-9), name


def test_evaluate_cli_reports_bad_lines_and_runs_the_rest(indexed: Library, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(
        tmp_path / "q.jsonl",
        [
            '{"id": "ok", "text": "a cat", "target": "image", "relevant": ["cat.jpg"]}',
            '{"id": "bad", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}',
        ],
    )
    args = ["evaluate", "--indexes-dir", str(indexed.config.indexes_dir), "--collection", "corpus", "--qrels", str(path)]
    assert main(args + ["--methods", "rrf"]) == 0
    captured = capsys.readouterr()
    assert "line 2: unknown item 'lion.jpg'" in captured.err
    assert "text/content" in captured.out and "rrf" in captured.out and "1 qrels line(s) skipped" in captured.out
    assert main(args + ["--methods", "borda"]) == 2
    assert "Unknown fusion method 'borda'" in capsys.readouterr().err
    write(path, [""])
    assert main(args) == 2
    assert "is empty" in capsys.readouterr().err
