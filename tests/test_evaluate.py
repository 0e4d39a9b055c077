"""Evaluation: hand-worked metrics, qrels problems line by line, the query-file policy for uploads,
budgets, TREC files that re-score identically (fake encoders: mechanics), and the evaluate CLI on the
shipped demo benchmark with real models (slow: quality is its subject)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from crossmodal_demo.analysis.evaluate import METRICS, compute_metrics, evaluate_qrels
from crossmodal_demo.analysis.qrels import QrelsQuery, parse_qrels, resolve_qrels
from crossmodal_demo.cli.main import main
from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.retrieval.query import Query
from tests.fakes import fake_overrides

DATA = Path(__file__).parent / "data"
DEMO_DATA = Path(__file__).parent.parent / "crossmodal_demo" / "demo_data"
BENCHMARK = DEMO_DATA / "benchmark.jsonl"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fake_lib(config: Config, fake_corpus: Path) -> Library:
    """Collection 'fake' (tests/fakes.py corpus: red/green/blue.png, tones, three notes) with fake encoders."""
    lib = open_library(config, "fake", preset="offline", create=True, overrides=fake_overrides())
    index_paths(lib.collection, lib.encoders, [fake_corpus], config)
    return lib


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
    assert "Unknown target 'video'. Choose one of: image, text, audio, any" in msgs[5]
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


def test_qrels_budgets_name_their_settings(tmp_path: Path) -> None:
    path = write(tmp_path / "q.jsonl", [f'{{"id": "q{i}", "text": "x", "target": "text", "relevant": ["a.txt"]}}' for i in range(3)])
    assert len(parse_qrels(path, max_queries=3)[0]) == 3
    with pytest.raises(UserError, match=r"holds 3 queries; the limit is 2 \(CROSSMODAL_MAX_QRELS_QUERIES\)"):
        parse_qrels(path, max_queries=2)
    with pytest.raises(UserError, match=r"CROSSMODAL_MAX_MANIFEST_BYTES"):
        parse_qrels(path, max_bytes=100)


def test_uploaded_qrels_read_query_files_only_inside_the_upload_or_from_the_collection(fake_lib: Library, tmp_path: Path) -> None:
    root = tmp_path / "upload"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "q.png").write_bytes((tmp_path / "fake_media" / "red.png").read_bytes())
    (tmp_path / "outside.png").write_bytes(b"not for you")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    red = next(it for it in fake_lib.collection.items() if it.path.endswith("red.png"))
    lines = [
        '{"id": "inside", "image": "sub/q.png", "target": "image", "relevant": ["green.png"]}',
        '{"id": "item", "image": "red.png", "target": "image", "relevant": ["green.png"]}',
        '{"id": "up", "image": "../outside.png", "target": "image", "relevant": ["green.png"]}',
        f'{{"id": "abs", "image": "{tmp_path / "outside.png"}", "target": "image", "relevant": ["green.png"]}}',
        '{"id": "link", "image": "link.png", "target": "image", "relevant": ["green.png"]}',
        '{"id": "missing", "audio": "nope.wav", "target": "audio", "relevant": ["low.wav"]}',
    ]
    path = write(root / "qrels.jsonl", lines)
    queries, problems = parse_qrels(path, query_root=root, collection=fake_lib.collection)
    assert {q.id: q.query.image for q in queries} == {"inside": (root / "sub" / "q.png").resolve(), "item": Path(red.path)}
    assert [p.line for p in problems] == [3, 4, 5, 6]
    assert all("must be inside the uploaded zip or name an item of the collection 'fake'" in p.message for p in problems)
    # a bare uploaded qrels file (no zip): only items of the collection
    queries, problems = parse_qrels(path, allow_files=False, collection=fake_lib.collection)
    assert [q.id for q in queries] == ["item"] and len(problems) == 5
    assert "query files must name an item of the collection 'fake'" in problems[0].message
    # the command line keeps resolving against the qrels file's folder
    queries, problems = parse_qrels(path)
    assert {q.id for q in queries} == {"inside", "up", "abs", "link"}


def test_names_resolve_by_path_relative_path_or_file_name(fake_lib: Library, tmp_path: Path) -> None:
    red = next(it for it in fake_lib.collection.items("image") if it.path.endswith("red.png"))
    path = write(
        tmp_path / "q.jsonl",
        [
            json.dumps({"id": "full", "text": "red", "target": "image", "relevant": [red.path]}),
            '{"id": "name", "text": "red", "target": "image", "relevant": ["red.png"]}',
            '{"id": "rel", "text": "red", "target": "image", "relevant": ["red.png", "blue.png"]}',
            '{"id": "unknown", "text": "a lion", "target": "image", "relevant": ["lion.jpg", "red.png"]}',
            '{"id": "typo", "text": "red", "target": "image", "relevant": ["red.pgn"]}',
            '{"id": "wrongmod", "text": "a cat", "target": "image", "relevant": ["cats.txt"]}',
        ],
    )
    queries, problems = resolve_qrels(fake_lib.collection, parse_qrels(path)[0])
    assert [q.id for q in queries] == ["full", "name", "rel"]
    assert queries[0].items == queries[1].items == {red.id: 1}
    msgs = {p.line: p.message for p in problems}
    assert "unknown item 'lion.jpg'" in msgs[4] and "file name" in msgs[4]
    assert "Did you mean red.png" in msgs[5]
    assert "is text, but the target is image" in msgs[6]


def test_evaluate_function_with_one_source_and_trec_files(fake_lib: Library, tmp_path: Path) -> None:
    """The fake corpus has no captions: one source, so every fused row must equal it; TREC files re-score the same."""
    import ranx

    media = tmp_path / "fake_media"
    shutil.copy(media / "red.png", tmp_path / "query_red.png")
    path = write(
        tmp_path / "q.jsonl",
        [
            '{"id": "t1", "text": "red", "target": "image", "relevant": ["red.png"]}',
            '{"id": "t2", "text": "a cat sleeps", "target": "text", "relevant": {"cats.txt": 2}}',
            '{"id": "t3", "text": "high tone", "target": "audio", "relevant": ["high.wav", "middle.wav"]}',
            '{"id": "i1", "image": "query_red.png", "target": "image", "relevant": ["green.png"]}',
            f'{{"id": "s1", "audio": "{media / "quiet.wav"}", "target": "text", "relevant": ["dogs.txt"]}}',
        ],
    )
    doc = evaluate_qrels(fake_lib, path, ["rrf", "mean-zscore"], depth=20, runs_out=tmp_path / "runs")
    assert doc["queries"] == 4 and doc["excluded_query_items"] == 1  # the query photo is red.png itself
    assert [p["line"] for p in doc["problems"]] == [5] and "no speech found" in doc["problems"][0]["message"]
    rows = {r["name"]: r for r in doc["results"]}
    assert list(rows) == ["text/content", "rrf", "mean-zscore"] and doc["best_single"] == "text/content"
    assert rows["rrf"]["kind"] == "fused" and set(rows["rrf"]["metrics"]) == set(METRICS)
    assert rows["text/content"]["metrics"]["recall@1"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)  # t3: 1 of 2 at rank 1
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
    assert len(i1) == 2 and "red.png" not in {x[2] for x in i1}  # 3 images minus the query itself


# --------------------------------------------------------------------------- the demo benchmark via the CLI
@pytest.fixture(scope="module")
def demo_indexes(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """The built-in demo collection, built once for this module (~30 s with the offline preset)."""
    from crossmodal_demo.app.demo_collection import ensure_demo_collection  # the demo's builder lives in the app
    from crossmodal_demo.config import load_config

    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("demo_indexes"))
    lib = ensure_demo_collection(cfg, preset="offline")
    lib.collection.close()
    return cfg.indexes_dir


def test_benchmark_covers_every_modality_pair() -> None:
    rows = [json.loads(x) for x in BENCHMARK.read_text().splitlines() if x.strip() and not x.startswith("#")]
    pairs = {(next(f for f in ("text", "image", "audio") if f in r), r["target"]) for r in rows if not r.get("negative")}
    assert len(rows) >= 30 and len(pairs) == 9
    negatives = [r for r in rows if r.get("negative")]
    assert len(negatives) >= 10 and all("relevant" not in r for r in negatives)


def test_negative_queries_measure_match_strength_not_ranking(fake_lib: Library, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(
        tmp_path / "q.jsonl",
        [
            '{"id": "pos", "text": "red", "target": "image", "relevant": ["red.png"]}',
            '{"id": "neg1", "text": "violin concerto", "target": "image", "negative": true}',
            '{"id": "neg2", "text": "a sailing boat", "target": "any", "negative": true, "note": "absent"}',
            '{"id": "bad1", "text": "x", "target": "any", "negative": true, "relevant": ["red.png"]}',
            '{"id": "bad2", "text": "x", "target": "any", "negative": "maybe"}',
        ],
    )
    doc = evaluate_qrels(fake_lib, path, ["rrf"], depth=20)
    assert doc["queries"] == 1  # negatives are left out of the ranking metrics
    assert [p["line"] for p in doc["problems"]] == [4, 5]
    assert "lists no \"relevant\"" in doc["problems"][0]["message"] and "true or false" in doc["problems"][1]["message"]
    ms = doc["match_strength"]
    assert (ms["negatives"], ms["negatives_weak"], ms["positives_answered"], ms["positives_strong"]) == (2, 1.0, 1, 1.0)
    assert {q["id"]: q["top_match"] for q in ms["queries"]} == {"pos": "strong", "neg1": "weak", "neg2": "weak"}
    args = ["evaluate", "--indexes-dir", str(fake_lib.config.indexes_dir), "--collection", "fake", "--qrels", str(path), "--methods", "rrf"]
    assert main(args, encoders=fake_overrides()) == 0
    assert "negative queries whose top hit is weak 1.00 (n=2)" in capsys.readouterr().out


@pytest.mark.slow
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


def test_evaluate_cli_reports_bad_lines_and_runs_the_rest(fake_lib: Library, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(
        tmp_path / "q.jsonl",
        [
            '{"id": "ok", "text": "red", "target": "image", "relevant": ["red.png"]}',
            '{"id": "bad", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}',
        ],
    )
    args = ["evaluate", "--indexes-dir", str(fake_lib.config.indexes_dir), "--collection", "fake", "--qrels", str(path)]
    assert main(args + ["--methods", "rrf"], encoders=fake_overrides()) == 0
    captured = capsys.readouterr()
    assert "line 2: unknown item 'lion.jpg'" in captured.err
    assert "text/content" in captured.out and "rrf" in captured.out and "1 qrels line(s) skipped" in captured.out
    assert main(args + ["--methods", "rrf,combsum", "--weights", "text/content=2", "--json"], encoders=fake_overrides()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["results"]] == ["text/content", "rrf", "combsum"] and doc["by_pair"][0]["pair"] == "text->image"
    assert main(args + ["--methods", "borda"]) == 2
    assert "Unknown fusion method 'borda'" in capsys.readouterr().err
    assert main(args + ["--weights", "text/content"]) == 2
    assert "is not SOURCE=NUMBER" in capsys.readouterr().err
    write(path, [""])
    assert main(args, encoders=fake_overrides()) == 2
    assert "is empty" in capsys.readouterr().err
