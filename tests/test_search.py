"""Search: retrieval quality in every direction with the real offline weights on the shared index
(tests/data; see DATA.md), and search mechanics with the fake encoders (tests/fakes.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.config import Config
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.library import Library, open_library
from crossmodal_demo.retrieval.query import Query, check_k, check_text, target_modalities

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
    assert res.hits[0].space == "text" and res.hits[0].channel == "content"
    assert res.hits[0].score > res.hits[1].score + margin  # a clear margin, not a tie-break


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
    assert names(res)[0] == "cat.jpg" and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
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
    assert fake_lib.encoders.get("minilm-text").calls == 1  # only the silent clip's transcript was embedded


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
                                      "collection": "fake", "preset": "offline"}


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
