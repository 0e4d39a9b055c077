"""Search: retrieval quality in every direction with the real offline weights on the shared index
(tests/data; see DATA.md), and search mechanics with the fake encoders (tests/fakes.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.calibration import outlier_margins
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.retrieval.query import Query, check_k, check_text, target_modalities
from crossmodal_demo.retrieval.search import SearchService
from tests.fakes import colour_image

DATA = Path(__file__).parent / "data"
SPEECH = json.loads((DATA / "speech" / "sentences.json").read_text())
PARAPHRASE = json.loads((DATA / "texts" / "paraphrases.json").read_text())


def names(result) -> list[str]:
    return [Path(h.path).name for h in result.hits]


def test_corpus_indexed_with_notes(indexed: Library) -> None:
    counts = indexed.collection.counts()
    assert counts == {"image": 7, "audio": 7, "text": 10, "total": 24}
    notes = {Path(n.path).name: n.reason for n in indexed.report.notes}
    assert notes["silence.wav"].startswith("no speech found")


@pytest.mark.parametrize(
    "query, expected, margin",
    [("a cat", "cat.jpg", 0.3), ("a cup of coffee", "coffee.jpg", 0.1), ("a temple", "china.jpg", 0.03)],
)
def test_text_to_image_ranks_the_matching_photo_first(indexed: Library, query: str, expected: str, margin: float) -> None:
    res = indexed.search.search(Query(text=query), target="image", k=7)
    assert names(res)[0] == expected
    assert all(h.modality == "image" for h in res.hits) and len(res.hits) == 7
    content = [h.sources["text/content"]["score"] for h in res.hits]  # the ConSE picture itself, not only its caption
    assert content[0] > max(content[1:]) + margin  # a clear margin, not a tie-break


def test_real_matches_are_strong_and_absent_concepts_weak(indexed: Library) -> None:
    top = indexed.search.search(Query(text="a cat"), target="image", k=3).hits[0]
    assert Path(top.path).name == "cat.jpg" and top.match == "strong"
    assert any("cat" in name for name, _ in top.labels[:3])  # what the classifier saw, stored at index time
    for absent in ("a bicycle", "a volcano erupting"):
        assert indexed.search.search(Query(text=absent), target="image", k=3).hits[0].match == "weak", absent


@pytest.mark.parametrize("clip", sorted(SPEECH))
def test_spoken_sentence_retrieves_its_paraphrase_first(indexed: Library, clip: str) -> None:
    res = indexed.search.search(Query(audio=DATA / "speech" / clip), target="text", k=3)
    assert names(res)[0] == PARAPHRASE[clip]
    assert res.query["transcript"]  # the query's transcript is reported
    assert all(h.modality == "text" for h in res.hits)


def test_text_retrieves_the_matching_speech_clip(indexed: Library) -> None:
    res = indexed.search.search(Query(text="heavy rain expected tomorrow morning"), target="audio", k=3)
    assert names(res)[0] == "weather.wav"
    assert "rain" in (res.hits[0].transcript or "").lower()


def test_text_target_returns_text_items_only_not_transcripts(indexed: Library) -> None:
    res = indexed.search.search(Query(text="tomato sauce pasta"), target="text", k=20)
    assert {h.modality for h in res.hits} == {"text"} and len(res.hits) == 10


def test_any_returns_every_modality(indexed: Library) -> None:
    res = indexed.search.search(Query(text="pasta with tomato sauce"), target="any", k=24)
    assert {h.modality for h in res.hits} == {"text", "audio", "image"}
    # silent/non-speech clips have no vector in the text space: never returned, never ghosts
    assert not {"silence.wav", "beep.wav", "noise.wav"} & set(names(res))
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True) and [h.rank for h in res.hits] == list(range(1, len(scores) + 1))


def test_image_to_image_and_image_to_text(indexed: Library) -> None:
    res = indexed.search.search(Query(image=DATA / "images" / "cat.jpg"), target="image", k=2)
    assert names(res)[0] == "cat.jpg" and res.hits[0].sources["text/content"]["score"] == pytest.approx(1.0, abs=1e-4)
    for photo, note in (("coffee.jpg", "cafe_note.txt"), ("cat.jpg", "pet_note.txt")):
        res = indexed.search.search(Query(image=DATA / "images" / photo), target="text", k=10)
        assert names(res)[0] == note, names(res)


def test_audio_to_audio(indexed: Library) -> None:
    res = indexed.search.search(Query(audio=DATA / "speech" / "train.wav"), target="audio", k=1)
    assert names(res) == ["train.wav"]


# ------------------------------------------------------------------ mechanics, with the fake encoders
@pytest.fixture
def fake_lib(config: Config, fake_corpus: Path, fake_overrides: dict) -> Library:
    lib = open_library(config, "fake", preset="offline", create=True, overrides=fake_overrides)
    index_paths(lib.collection, lib.encoders, [fake_corpus], config)
    return lib


def test_query_errors_are_user_errors(fake_lib: Library, fake_corpus: Path) -> None:
    text_calls = fake_lib.encoders.get("minilm-text").calls
    with pytest.raises(UserError, match="Give exactly one query"):
        fake_lib.search.search(Query(), target="image")
    with pytest.raises(UserError, match=r"\(got text, image\)"):
        fake_lib.search.search(Query(text="x", image=fake_corpus / "red.png"))
    with pytest.raises(UserError, match=r"Unknown target 'video'. Choose one of: image, text, audio, any."):
        fake_lib.search.search(Query(text="x"), target="video")
    with pytest.raises(UserError, match="k must be at least 1"):
        fake_lib.search.search(Query(text="x"), k=0)
    with pytest.raises(UserError, match="Query file not found"):
        fake_lib.search.search(Query(image=DATA / "nope.jpg"))
    with pytest.raises(UserError, match="no speech found"):
        fake_lib.search.search(Query(audio=fake_corpus / "quiet.wav"))
    assert fake_lib.encoders.get("minilm-text").calls == text_calls  # the failing queries embedded no text


def test_query_text_budget_names_its_setting_and_never_echoes(fake_lib: Library) -> None:
    tight = dataclasses.replace(fake_lib.config, max_query_chars=10)
    with pytest.raises(UserError) as err:
        check_text("secret words " * 3, tight)
    assert "CROSSMODAL_MAX_QUERY_CHARS" in str(err.value) and "secret" not in str(err.value)
    assert check_text("  ten chars ", dataclasses.replace(tight, max_query_chars=12)) == "ten chars"
    with pytest.raises(UserError, match="CROSSMODAL_MAX_QUERY_CHARS"):
        Query(text="x" * 11).check(tight)
    with pytest.raises(UserError, match="k must be between 1 and 5"):
        check_k(6, most=5)
    assert target_modalities("any") == ("image", "audio", "text") and target_modalities("text") == ("text",)


def test_hits_are_ranked_by_score_with_ties_by_id(fake_lib: Library) -> None:
    res = fake_lib.search.search(Query(text="red"), target="any", k=20)
    assert names(res)[:2] == ["red.png", "red_note.md"]
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True) and [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))
    assert "quiet.wav" not in names(res)  # no vector in the text space: never returned
    assert res.to_json()["query"] == {"modality": "text", "text": "red", "target": "any", "k": 20,
                                      "collection": "fake", "preset": "offline", "fusion": "mean-zscore"}


def test_query_is_encoded_in_every_space_of_its_modality(fake_lib: Library) -> None:
    vecs, info = fake_lib.search.encode_query(Query(text="a cat"))
    assert set(vecs) == set(fake_lib.encoders.spaces()) == {"text"} and info == {"modality": "text", "text": "a cat"}
    assert vecs["text"].dtype == np.float32 and abs(np.linalg.norm(vecs["text"]) - 1) < 1e-5


def test_a_text_query_uses_only_the_text_encoder(config: Config, fake_overrides: dict, fake_corpus: Path) -> None:
    lib = open_library(config, "lazy", preset="offline", create=True, overrides=fake_overrides)
    assert lib.encoders.loaded() == []  # nothing loads at open
    index_paths(lib.collection, lib.encoders, sorted(fake_corpus.glob("*.txt")), config)
    lib.search.search(Query(text="cat"), target="text")
    assert lib.encoders.loaded() == ["minilm-text"]


# ------------------------------------------------------------------ fused search (fake encoders)
CAPTIONS = "path,caption\nred.png,a ripe tomato\ngreen.png,a red apple on grass\nblue.png,the sea under a red sky\n"


@pytest.fixture
def captioned(config: Config, fake_corpus: Path, fake_overrides: dict) -> Library:
    """The fake corpus with captions on its pictures: text→image has two sources, text/content and text/caption."""
    (fake_corpus / "captions.csv").write_text(CAPTIONS)
    lib = open_library(config, "captioned", preset="offline", create=True, overrides=fake_overrides)
    index_paths(lib.collection, lib.encoders, [fake_corpus], config)
    return lib


def _shifted(lib: Library, monkeypatch: pytest.MonkeyPatch, channel: str, scale: float, shift: float) -> None:
    """Make one source report ``scale · cosine + shift`` (another model's score range)."""
    real = lib.collection.search

    def search(key, queries, k):
        scores, ids = real(key, queries, k)
        return (scores * scale + shift if key[1] == channel else scores), ids

    monkeypatch.setattr(lib.collection, "search", search)


@pytest.mark.parametrize("scale, shift", [(1.0, 5.0), (7.0, 0.0), (0.1, -3.0)])
def test_default_fused_order_ignores_a_sources_offset_and_scale(captioned: Library, monkeypatch: pytest.MonkeyPatch,
                                                               scale: float, shift: float) -> None:
    before = [h.id for h in captioned.search.search(Query(text="red sky tomato"), target="any", k=10).hits]
    assert len(before) >= 5
    _shifted(captioned, monkeypatch, "caption", scale, shift)
    after = captioned.search.search(Query(text="red sky tomato"), target="any", k=10)
    assert [h.id for h in after.hits] == before
    # the raw max would be dominated by the shifted source; fusion is not
    raw = [h.id for h in captioned.search.search(Query(text="red sky tomato"), target="any", k=10, fusion="max").hits]
    assert raw != before or shift <= 0


@pytest.mark.parametrize("method", ["mean-zscore", "rrf", "combmnz", "max-minmax"])
def test_fused_order_equals_ranx_fuse_on_the_same_runs(captioned: Library, method: str) -> None:
    from crossmodal_demo.retrieval.fusion import fuse  # ranx

    svc = captioned.search
    vectors, _ = svc.encode_query(Query(text="a red apple"))
    lists = svc.rank_lists(vectors, "image", 100)
    assert set(lists) == {"text/content", "text/caption"}
    want = fuse(lists, method)
    hits = svc.search_vectors(vectors, "image", 3, fusion=method)
    assert [str(h.id) for h in hits] == list(want)[:3]
    assert [h.score for h in hits] == pytest.approx([want[str(h.id)] for h in hits], abs=1e-6)


def test_hits_carry_their_sources_match_and_labels(captioned: Library) -> None:
    res = captioned.search.search(Query(text="a ripe tomato"), target="image", k=3)
    top = res.hits[0]
    assert names(res)[0] == "red.png" and top.match == "strong"
    assert set(top.sources) == {"text/content", "text/caption"}
    assert top.sources["text/caption"]["rank"] == 1 and set(top.sources["text/caption"]) == {"rank", "score"}
    assert (top.space, top.channel) == ("text", "caption")  # the source that contributed most
    doc = json.loads(json.dumps(res.to_json()))
    hit = doc["hits"][0]
    assert {"sources", "match", "labels", "score", "rank", "space", "channel"} <= set(hit)
    labels = hit["labels"]  # top-5 tags stored at index time, best first
    assert len(labels) == 5 and all(isinstance(n, str) and 0 <= p <= 1 for n, p in labels)
    assert [p for _, p in labels] == sorted((p for _, p in labels), reverse=True)
    text_hit = captioned.search.search(Query(text="a cat sleeps"), target="text", k=1).hits[0]
    assert text_hit.labels is None and text_hit.match == "strong"
    image_query = captioned.search.search(Query(image=captioned.collection.items("image")[0].path), target="image", k=1)
    assert len(image_query.query["labels"]) == 5


def test_a_concept_absent_from_the_collection_is_a_weak_match(captioned: Library) -> None:
    res = captioned.search.search(Query(text="violin concerto"), target="any", k=5)
    assert res.hits and all(h.match == "weak" for h in res.hits)
    assert captioned.search.search(Query(text="the dog runs"), target="text", k=1).hits[0].match == "strong"


def test_max_keeps_the_best_raw_score(captioned: Library) -> None:
    svc = captioned.search
    vectors, _ = svc.encode_query(Query(text="red"))
    lists = svc.rank_lists(vectors, "any", 100)
    best = {}
    for lst in lists.values():
        for d, s in lst.items():
            best[int(d)] = max(best.get(int(d), -9.0), s)
    hits = svc.search_vectors(vectors, "any", 4, fusion="max")
    assert [h.score for h in hits] == pytest.approx(sorted(best.values(), reverse=True)[:4], abs=1e-6)
    with pytest.raises(UserError, match="Unknown fusion method 'best'"):
        svc.search(Query(text="red"), fusion="best")


def test_config_fusion_sets_the_default(captioned: Library) -> None:
    cfg = dataclasses.replace(captioned.config, fusion="rrf")
    svc = SearchService(captioned.collection, captioned.encoders, cfg)
    assert svc.search(Query(text="red"), target="image").query["fusion"] == "rrf"
    assert svc.search(Query(text="red"), target="image", fusion="max").query["fusion"] == "max"


def test_search_needs_no_ranx(captioned: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default fusion is computed without ranx, so the first search never waits for numba's JIT (~12 s)."""
    import sys

    monkeypatch.setitem(sys.modules, "ranx", None)  # any `import ranx` now fails
    assert captioned.search.search(Query(text="red"), target="any", k=3).hits


def test_cli_search_fusion_option(captioned: Library, capsys: pytest.CaptureFixture) -> None:
    from crossmodal_demo.cli.main import main
    from tests.fakes import fake_overrides

    base = ["search", "--indexes-dir", str(captioned.config.indexes_dir), "--collection", "captioned", "--text", "red sky"]
    assert main(base + ["--fusion", "rrf", "--json"], encoders=fake_overrides()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["query"]["fusion"] == "rrf" and all(h["match"] in ("strong", "weak") and h["sources"] for h in doc["hits"])
    assert main(base + ["-k", "2"], encoders=fake_overrides()) == 0
    assert " strong " in capsys.readouterr().out  # the table shows each hit's match strength
    assert main(base + ["--fusion", "borda"]) == 2  # refused before any model loads
    assert "Unknown fusion method 'borda'" in capsys.readouterr().err


def test_example_queries_are_calibrated_against_the_collection(config: Config, fake_overrides: dict, tmp_path: Path) -> None:
    """Known geometry (bag-of-words fakes): a red picture's vector is the word "red". Every note starts with the
    prompt words of the concept background ("a photo of a red"), so against that background none stands out
    (text rule: weak), but among the notes — the same plus 12–30 filler words, cosine 1/√(7+n) ≈ 0.16–0.23 —
    ``hit.md``'s cosine 1/√7 ≈ 0.38 is an outlier (example rule: strong). Without it the best note is no outlier."""
    folder = tmp_path / "notes"
    folder.mkdir()
    colour_image("red").save(tmp_path / "red.png")
    (folder / "hit.md").write_text("a photo of a red")
    for n in range(12, 31, 2):
        (folder / f"filler{n}.txt").write_text("a photo of a red " + " ".join(f"w{n}x{j}" for j in range(n)))
    lib = open_library(config, "geometry", preset="offline", create=True, overrides=fake_overrides)
    index_paths(lib.collection, lib.encoders, [folder], config)
    svc = lib.search
    vectors, info = svc.encode_query(Query(image=tmp_path / "red.png"))
    top = svc.search_vectors(vectors, "text", 3, modality=info["modality"])[0]
    assert Path(top.path).name == "hit.md" and top.match == "strong"
    assert svc.search_vectors(vectors, "text", 3)[0].match == "weak"  # the same vector judged as a text query
    without = svc.search_vectors(vectors, "text", 3, modality="image", exclude={top.id})
    assert all(h.match == "weak" for h in without)
    # the margin is Grubbs' leave-one-out statistic minus its Bonferroni critical value
    scores = svc.rank_lists(vectors, "text", 100)["text/content"]
    x, rest = scores[str(top.id)], np.array([s for d, s in scores.items() if d != str(top.id)])
    m = rest.size
    T = (x - rest.mean()) / (rest.std(ddof=1) * np.sqrt(1 + 1 / m))
    assert outlier_margins(scores, [top.id])[top.id] == pytest.approx(T - student_t.ppf(1 - 0.05 / (m + 1), m - 1))
