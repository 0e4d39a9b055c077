"""Search in every direction with the real offline weights (tests/data; see DATA.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import Library
from crossmodal_demo.retrieval.search import Query

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


def test_query_errors_are_user_errors(indexed: Library) -> None:
    with pytest.raises(UserError, match="Give exactly one query"):
        indexed.search.search(Query(), target="image")
    with pytest.raises(UserError, match="Unknown target 'video'"):
        indexed.search.search(Query(text="x"), target="video")
    with pytest.raises(UserError, match="Query file not found"):
        indexed.search.search(Query(image=DATA / "nope.jpg"))
    with pytest.raises(UserError, match="no speech found"):
        indexed.search.search(Query(audio=DATA / "sounds" / "silence.wav"))


def test_query_is_encoded_in_every_space_of_its_modality(indexed: Library) -> None:
    vecs, info = indexed.search.encode_query(Query(text="a cat"))
    assert set(vecs) == set(indexed.encoders.spaces()) == {"text"}
    assert vecs["text"].dtype == np.float32 and abs(np.linalg.norm(vecs["text"]) - 1) < 1e-5


def test_text_query_never_loads_the_audio_model(tmp_path: Path, shared_cache: Path) -> None:
    from crossmodal_demo.config import load_config
    from crossmodal_demo.index.pipeline import index_paths
    from crossmodal_demo.retrieval.library import open_library

    cfg = load_config(indexes_dir=tmp_path)
    lib = open_library(cfg, "lazy", create=True)
    assert lib.encoders.loaded() == []  # nothing loads at open
    index_paths(lib.collection, lib.encoders, [DATA / "texts"], cfg)
    lib.search.search(Query(text="guitar"), target="text")
    assert "whisper-tiny-en-transcript" not in lib.encoders.loaded()
    assert "conse-effnet-lite0" not in lib.encoders.loaded()
