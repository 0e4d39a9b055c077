"""Alignment bridges recover a known rotation of synthetic data, and fail when there is nothing to recover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.analysis.bridge import (
    bridge_quality,
    bridge_source,
    fit_bridge,
    fit_cca,
    fit_procrustes,
    offline_text_bridge,
)
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.library import Library


def rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))  # a proper random orthogonal matrix


@pytest.fixture(scope="module")
def rotated() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 12)) + 0.5  # off-centre on purpose: the bridge must centre
    R = rotation(12, 3)
    Y = X @ R + 2.0 + 0.01 * rng.normal(size=(300, 12))
    return X, Y, R


def test_procrustes_recovers_the_rotation(rotated) -> None:
    X, Y, R = rotated
    b = fit_procrustes(X, Y)
    assert np.abs(b.W - R).max() < 0.01
    assert np.abs(b.map_source(X[:5]) - Y[:5]).max() < 0.05


def test_procrustes_between_spaces_of_different_dims() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8))
    Q = rotation(12, 1)
    Y = np.hstack([X, np.zeros((200, 4))]) @ Q  # X lives in an 8-d subspace of the 12-d target
    b = fit_procrustes(X, Y)
    assert b.W.shape == (8, 12) and np.abs(b.W - Q[:8]).max() < 1e-6


def test_cca_recovers_the_rotation(rotated) -> None:
    X, Y, R = rotated
    b = fit_bridge(X, Y, method="cca", n_components=12)
    assert b.quality["recall@1"] == 1.0 and b.quality["mean_cosine"] > 0.99
    # CCA's own regression x → y reproduces the rotation on unseen points
    Xn = np.random.default_rng(11).normal(size=(50, 12)) + 0.5
    assert np.abs(b.cca.predict(Xn) - (Xn @ R + 2.0)).max() < 0.1
    xs, ys = b.cca.transform(X, Y)
    corr = [np.corrcoef(xs[:, j], ys[:, j])[0, 1] for j in range(12)]
    assert min(corr) > 0.999


@pytest.mark.parametrize("method", ["procrustes", "cca"])
def test_held_out_quality_is_measured_on_pairs_not_seen(rotated, method: str) -> None:
    X, Y, _ = rotated
    b = fit_bridge(X, Y, method=method, test_fraction=0.25, seed=1)
    assert (b.n_train, b.n_test) == (225, 75)
    assert b.quality["recall@1"] == 1.0 and b.quality["mrr"] == 1.0
    # unrelated pairs: the same code reports a bridge no better than chance
    rng = np.random.default_rng(5)
    noise = fit_bridge(rng.normal(size=(300, 12)), rng.normal(size=(300, 12)), method=method, seed=1)
    assert noise.quality["recall@1"] < 0.15 and noise.quality["mean_cosine"] < 0.5


def test_bad_pairs_are_user_errors() -> None:
    with pytest.raises(UserError, match="same n"):
        fit_procrustes(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(UserError, match="at least 3 pairs"):
        fit_cca(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(UserError, match="Unknown bridge method 'pls'"):
        fit_bridge(np.ones((10, 2)), np.ones((10, 2)), method="pls")
    b = fit_procrustes(np.random.default_rng(0).normal(size=(10, 3)), np.random.default_rng(1).normal(size=(10, 3)))
    with pytest.raises(UserError, match="dim 3"):
        bridge_quality(b, np.zeros((2, 4)), np.zeros((2, 3)))


def test_offline_bridge_from_lsa_into_the_text_space(indexed: Library) -> None:
    """Two spaces built offline: LSA (no model) → MiniLM; held-out class names find their pair well above chance."""
    from crossmodal_demo.analysis.lab import run_lab

    bridge, lsa = offline_text_bridge(indexed, "procrustes")
    q = bridge.describe()
    assert q["dims"] == [lsa.dim, 384] and q["n_test"] > 150
    chance = 1 / q["n_test"]
    assert q["quality"]["recall@1"] > 10 * chance and q["quality"]["recall@5"] > q["quality"]["recall@1"]
    src = bridge_source(indexed, bridge, lambda text: lsa.encode([text])[0])
    lab = run_lab(indexed, "a cup of coffee", "image", ["text/content", src.name], ["rrf"], 3, None, extra_sources=[src])
    col = next(c for c in lab["columns"] if c["name"] == src.name)
    assert col["quality"]["recall@1"] == pytest.approx(q["quality"]["recall@1"], abs=1e-4)
    assert len(col["hits"]) == 3 and all(h["modality"] == "image" for h in col["hits"])
    assert [c["name"] for c in lab["columns"]] == ["text/content", src.name, "rrf"]


# --------------------------------------------------------------------------- clip preset: CLAP → CLIP (tiny checkpoints)
from tests.test_hub_presets import empty_hf_cache, tiny_clap_dir, tiny_clip_file, tiny_config  # noqa: E402,F401  (fixtures)


class Rotated:
    """A text encoder whose vectors are another's times a known rotation (a second 'space' with a known answer)."""

    modality, name, space = "text", "rotated-text", "clip"

    def __init__(self, inner, R: np.ndarray) -> None:
        self.inner, self.R, self.dim, self.model_id = inner, R, R.shape[1], f"rotated:{inner.model_id}"

    def encode(self, batch):
        return (self.inner.encode(batch) @ self.R).astype(np.float32)


def test_text_bridge_recovers_a_known_rotation_of_clap_text(tiny_config) -> None:
    from crossmodal_demo.analysis.bridge import text_bridge
    from crossmodal_demo.encoders import presets
    from crossmodal_demo.encoders.base import EncoderSet
    from crossmodal_demo.encoders.vocabulary import tag_names

    clap = EncoderSet(presets.preset_for("clip", tiny_config), tiny_config).get("clap-text")
    R = rotation(16, 4)
    b = text_bridge(clap, Rotated(clap, R), tag_names()[:300], tiny_config.cache_dir)
    assert (b.source, b.target, b.n_test) == ("clap", "clip", 60)
    X = clap.encode(tag_names()[300:340])  # unseen texts land where the rotation puts them
    assert np.abs(b.map_source(X) - X @ R).max() < 1e-3 and b.quality["recall@1"] == 1.0


def bridged_clip_library(config, media: Path, wav: Path):
    """A clip-preset library (tiny checkpoints) on three colour pictures in ``media``, and a 200 Hz tone written
    to ``wav`` (indexed only when it lies in ``media``). Whisper is not under test: a fake transcript encoder."""
    import soundfile as sf

    from crossmodal_demo.index.pipeline import index_paths
    from crossmodal_demo.retrieval.library import open_library
    from tests.fakes import FakeAudio, colour_image, tone

    media.mkdir()
    for c in ("red", "green", "blue"):
        colour_image(c).save(media / f"{c}.png")
    sf.write(wav, tone(200.0), 16000)
    lib = open_library(config, "bridged", preset="clip", create=True, overrides={"whisper-transcript": FakeAudio()})
    index_paths(lib.collection, lib.encoders, [media], config)
    return lib


def test_sound_finds_pictures_through_the_bridge_in_search_and_lab(tiny_config, tmp_path) -> None:
    from crossmodal_demo.analysis.bridge import AUDIO_TO_IMAGE, attach_bridges
    from crossmodal_demo.analysis.lab import run_lab
    from crossmodal_demo.retrieval.query import Query

    media = tmp_path / "media"
    lib = bridged_clip_library(tiny_config, media, media / "low.wav")
    assert all(len(it.labels) == 5 for it in lib.collection.items())  # zero-shot CLIP / CLAP (sound) tags at index time
    (src,) = attach_bridges(lib)
    assert attach_bridges(lib) == [src] and len(lib.extra_sources) == 1  # attached once
    assert src.name == AUDIO_TO_IMAGE and set(src.quality) == {"recall@1", "recall@5", "mrr", "mean_cosine"}
    res = lib.search.search(Query(audio=media / "low.wav"), target="image", k=3)
    assert len(res.hits) == 3 and all(AUDIO_TO_IMAGE in h.sources for h in res.hits)
    assert lib.search.search(Query(text="red"), target="image", k=3).hits[0].sources.keys() == {"clip/content"}
    lab = run_lab(lib, Query(audio=media / "low.wav"), "image", None, ["mean-zscore"], 3, extra_sources=[src])
    col = next(c for c in lab["columns"] if c["name"] == AUDIO_TO_IMAGE)
    assert col["quality"] == src.quality and len(col["hits"]) == 3


def test_cli_search_fuses_the_bridge_in_for_a_clip_library(tiny_config, tmp_path, monkeypatch, capsys) -> None:
    """The product opener attaches the bridge: ``search --audio`` on a clip-preset collection ranks pictures
    through ``clap→clip/content`` with no extra call (the library layer cannot import analysis; the CLI does)."""
    import json

    from crossmodal_demo.analysis.bridge import AUDIO_TO_IMAGE
    from crossmodal_demo.cli.main import main
    from tests.fakes import FakeAudio

    bridged_clip_library(tiny_config, tmp_path / "media", tmp_path / "low.wav").collection.close()
    for var, value in {"CROSSMODAL_CLIP_MODEL": tiny_config.clip_model, "CROSSMODAL_CLIP_PRETRAINED": tiny_config.clip_pretrained,
                       "CROSSMODAL_CLAP_MODEL": tiny_config.clap_model, "CROSSMODAL_DEVICE": "cpu",
                       "CROSSMODAL_CACHE": str(tiny_config.cache_dir)}.items():
        monkeypatch.setenv(var, value)
    argv = ["search", "--indexes-dir", str(tiny_config.indexes_dir), "--collection", "bridged", "--audio", str(tmp_path / "low.wav"),
            "--target", "image", "-k", "3", "--json"]
    assert main(argv, encoders={"whisper-transcript": FakeAudio()}) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and all(AUDIO_TO_IMAGE in h["sources"] for h in hits)
