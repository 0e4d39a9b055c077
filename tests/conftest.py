"""Shared fixtures: real offline weights, small committed media (tests/data, see DATA.md), temp collections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nothing here may reach a model hub; the offline preset loads from package folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from crossmodal_demo.config import Config, load_config  # noqa: E402
from crossmodal_demo.index.pipeline import index_paths  # noqa: E402
from crossmodal_demo.retrieval.library import Library, open_library  # noqa: E402
from tests.fakes import fake_overrides as _fake_overrides  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data (origins and licenses in tests/data/DATA.md)."""
    return DATA


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir per test session, so ConSE class-name embeddings are computed once."""
    d = tmp_path_factory.mktemp("cache")
    os.environ["CROSSMODAL_CACHE"] = str(d)
    return d


@pytest.fixture
def config(tmp_path: Path, shared_cache: Path) -> Config:
    """A Config writing collections under this test's tmp_path."""
    return load_config(indexes_dir=tmp_path / "indexes")


@pytest.fixture(scope="session")
def indexed(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Library:
    """Read-only collection 'corpus': tests/data images, speech, texts and sounds (offline preset).

    Session-scoped because indexing costs ~15 s; tests that modify a collection build their own.
    """
    cfg = load_config(indexes_dir=tmp_path_factory.mktemp("indexes"))
    lib = open_library(cfg, "corpus", preset="offline", create=True)
    report = index_paths(
        lib.collection, lib.encoders, [DATA / "images", DATA / "speech", DATA / "texts", DATA / "sounds"], cfg
    )
    assert report.added, report.problems
    lib.report = report  # type: ignore[attr-defined]
    return lib


@pytest.fixture
def fake_overrides() -> dict:
    """Fresh fake encoders (tests/fakes.py) keyed by the offline preset's encoder names:
    ``open_library(config, name, preset="offline", create=True, overrides=fake_overrides)``."""
    return _fake_overrides()


@pytest.fixture
def fake_corpus(tmp_path: Path) -> Path:
    """A small corpus the fakes understand (see tests/fakes.write_fake_corpus)."""
    from tests.fakes import write_fake_corpus

    return write_fake_corpus(tmp_path / "fake_media")
