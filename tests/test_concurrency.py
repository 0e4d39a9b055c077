"""Concurrency: shared models are used under one lock per model; store searches run while other threads add
and remove items, without waiting for them, and afterwards nothing is lost or ghosted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crossmodal_demo.config import load_config
from crossmodal_demo.encoders.offline import MINILM
from crossmodal_demo.encoders.sbert import make_minilm
from crossmodal_demo.index.store import Collection, NewItem

DIM = 16


def soak(tmp_path: Path, seconds: float, searchers: int = 4, writers: int = 2) -> None:
    coll = Collection.create(tmp_path, "soak", {"preset": "synthetic", "encoders": {}, "spaces": {"s": DIM}})
    errors: list[BaseException] = []
    alive: dict[int, str] = {}  # id -> sha, maintained by writers under their own lock
    book = threading.Lock()
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))
    rng_lock = threading.Lock()

    def vec(i: int) -> np.ndarray:
        v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while time.monotonic() < stop:
                with rng_lock:
                    nums = [next(counter) for _ in range(int(rng.integers(1, 6)))]
                items = [
                    NewItem(f"/m/{n}.txt", "/m", "text", f"{n:064x}", 1, vectors={("s", "content"): vec(n)}) for n in nums
                ]
                ids = coll.add(items)
                with book:
                    alive.update({i: it.sha256 for i, it in zip(ids, items)})
                    victims = [i for i in list(alive)[:: max(1, len(alive) // 3)]][:2] if rng.random() < 0.5 else []
                    for v in victims:
                        alive.pop(v, None)
                if victims:
                    coll.remove(victims)
        except BaseException as exc:  # noqa: BLE001 - collected and reported by the test
            errors.append(exc)

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(100 + seed)
        try:
            while time.monotonic() < stop:
                q = rng.standard_normal((1, DIM)).astype(np.float32)
                _, ids = coll.search(("s", "content", "text"), q, 10)
                found = coll.get_many(int(i) for i in ids[0] if i >= 0)
                # a hit may vanish between search and read (removed meanwhile), but never be half-added
                for it in found.values():
                    assert it.modality == "text" and it.path.startswith("/m/")
                coll.counts()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(writers)]
    threads += [threading.Thread(target=searcher, args=(s,)) for s in range(searchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    assert not errors, errors[:3]
    coll.flush()
    in_db = sorted(it.id for it in coll.items())
    assert in_db == sorted(alive), "lost or ghost items in SQLite"
    assert coll.index_ids(("s", "content", "text")).tolist() == in_db, "FAISS disagrees with SQLite"
    coll.close()
    again = Collection.open(tmp_path, "soak")
    assert again.rebuilt == [] and again.index_ids(("s", "content", "text")).tolist() == in_db
    assert len(in_db) > 10


def test_concurrency_soak_short(tmp_path: Path) -> None:
    soak(tmp_path, seconds=4)


@pytest.mark.slow
def test_concurrency_soak_long(tmp_path: Path) -> None:
    soak(tmp_path, seconds=60, searchers=8, writers=3)


def hammer(workers: list, seconds: float) -> tuple[int, list[BaseException]]:
    """Run each ``worker()`` in a loop on its own thread for ``seconds``; returns (calls made, errors raised)."""
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []
    calls = [0]

    def loop(fn) -> None:
        while time.monotonic() < stop:
            try:
                fn()
                calls[0] += 1
            except BaseException as exc:  # noqa: BLE001 - collected and asserted by the test
                errors.append(exc)

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return calls[0], errors


class EntryProbe:
    """Wraps a tokenizer method: a second thread entering while one is inside raises, as HF tokenizers may
    ("Unable to create tensor", "Already borrowed"); a short sleep inside widens the window so a missing
    lock shows up within seconds instead of once in thousands of calls."""

    def __init__(self, fn) -> None:
        self.fn, self.active, self.guard = fn, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.guard:
            self.active += 1
            clash = self.active > 1
        try:
            if clash:
                raise RuntimeError("tokenizer entered by two threads at once")
            time.sleep(0.001)
            return self.fn(*args, **kwargs)
        finally:
            with self.guard:
                self.active -= 1


def test_one_lock_per_model_covers_encode_and_the_tokenizer() -> None:
    """Two encoder objects over the same MiniLM (e.g. two collections' encoder sets) share the model and its
    tokenizer, which is not thread-safe: encoding on some threads while counting tokens on others must
    never use the tokenizer from two threads at once."""
    cfg = load_config(environ={})
    a, b = make_minilm(MINILM, cfg), make_minilm(MINILM, cfg)
    assert a.model is b.model  # one model per process: so the lock must be per model, not per object
    texts = [f"a dog barking {i} " * (1 + i % 40) for i in range(8)]
    a.encode(texts)  # warm up: the first forward pass is slow
    tok = a.model.tokenizer
    tok._encode_plus = EntryProbe(tok._encode_plus)  # the path of both encode() and count_tokens()
    try:
        calls, errors = hammer(
            [lambda: a.encode(texts), lambda: b.encode(texts[::-1]), lambda: a.count_tokens(texts[5]),
             lambda: b.count_tokens(texts[7]), lambda: b.count_tokens(texts[3])],
            seconds=3,
        )
    finally:
        del tok._encode_plus
    assert not errors, f"{len(errors)} of {calls + len(errors)} calls failed, e.g. {errors[0]!r}"
    assert calls > 10
