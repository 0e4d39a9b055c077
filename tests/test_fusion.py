"""Fusion functions against hand-worked lists (values worked out on paper, not read back from ranx)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.fusion import (
    DEFAULT_METHODS,
    break_ties,
    combine_query_vectors,
    contributions,
    fuse,
    fuse_fast,
    fuse_runs,
    method_names,
    normalise,
    parse_method,
    parse_weights,
    search_fusion,
    warm_up,
)

# Two sources ranking four docs. min-max: A → d1 1, d2 .5, d3 0; B → d2 1, d3 .5, d4 0.
# rank norm (1 - (r-1)/n): A → d1 1, d2 2/3, d3 1/3; B → d2 1, d3 2/3, d4 1/3.
# z-score: A mean .5, std .4·√(2/3) → d1 +√1.5, d2 0, d3 -√1.5; B likewise d2 +√1.5, d3 0, d4 -√1.5.
A = {"d1": 0.9, "d2": 0.5, "d3": 0.1}
B = {"d2": 3.0, "d3": 2.0, "d4": 1.0}
Z = math.sqrt(1.5)

EXPECTED = {
    "mean-minmax": {"d1": 1.0, "d2": 0.75, "d3": 0.25, "d4": 0.0},
    "max-minmax": {"d1": 1.0, "d2": 1.0, "d3": 0.5, "d4": 0.0},
    "combsum": {"d2": 5 / 3, "d1": 1.0, "d3": 1.0, "d4": 1 / 3},
    "combmnz": {"d2": 10 / 3, "d3": 2.0, "d1": 1.0, "d4": 1 / 3},
    "rrf": {"d2": 1 / 62 + 1 / 61, "d3": 1 / 63 + 1 / 62, "d1": 1 / 61, "d4": 1 / 63},
    "mean-zscore": {"d1": Z, "d2": Z / 2, "d3": -Z / 2, "d4": -Z},
    "max-zscore": {"d1": Z, "d2": Z, "d3": 0.0, "d4": -Z},
    "combsum-minmax": {"d2": 1.5, "d1": 1.0, "d3": 0.5, "d4": 0.0},
}
ORDER = {
    "mean-minmax": ["d1", "d2", "d3", "d4"],
    "max-minmax": ["d1", "d2", "d3", "d4"],  # d1/d2 tie at 1.0: broken by doc id
    "combsum": ["d2", "d1", "d3", "d4"],
    "combmnz": ["d2", "d3", "d1", "d4"],
    "rrf": ["d2", "d3", "d1", "d4"],
    "mean-zscore": ["d1", "d2", "d3", "d4"],
    "max-zscore": ["d1", "d2", "d3", "d4"],
    "combsum-minmax": ["d2", "d1", "d3", "d4"],
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_fusion_matches_hand_worked_scores(method: str) -> None:
    got = fuse({"A": A, "B": B}, method)
    assert list(got) == ORDER[method]
    for doc, want in EXPECTED[method].items():
        assert got[doc] == pytest.approx(want, abs=1e-9), (method, doc)


def test_weighted_sum_uses_the_user_weights() -> None:
    # .3·minmax(A) + .7·minmax(B): d1 .3, d2 .15 + .7, d3 0 + .35, d4 0
    got = fuse({"A": A, "B": B}, "wsum-minmax", {"A": 0.3, "B": 0.7})
    assert list(got) == ["d2", "d3", "d1", "d4"]
    assert got == pytest.approx({"d2": 0.85, "d3": 0.35, "d1": 0.3, "d4": 0.0}, abs=1e-9)
    # weights flip the winner
    flipped = fuse({"A": A, "B": B}, "wsum", {"A": 1.0, "B": 0.1})
    assert next(iter(flipped)) == "d1"
    with pytest.raises(UserError, match="unknown source.*C"):
        fuse({"A": A, "B": B}, "wsum", {"C": 1.0})


@pytest.mark.parametrize("method", [*DEFAULT_METHODS, "combsum-zscore", "max-rank"])
def test_contributions_add_up_to_the_fused_score(method: str) -> None:
    weights = {"A": 0.25, "B": 2.0}
    fused = fuse({"A": A, "B": B}, method, weights)
    parts = contributions({"A": A, "B": B}, method, weights)
    assert set(parts) == set(fused)
    for doc, score in fused.items():
        assert sum(parts[doc].values()) == pytest.approx(score, abs=1e-9), (method, doc, parts[doc])
    assert parts["d4"]["A"] == 0.0 and parts["d1"]["B"] == 0.0  # a source that lacks a doc gives it nothing


def test_single_source_keeps_its_order_and_missing_queries_get_nothing() -> None:
    assert fuse({"A": A}, "rrf") == pytest.approx({"d1": 1 / 61, "d2": 1 / 62, "d3": 1 / 63})
    assert fuse({"A": A}, "mean-minmax") == pytest.approx({"d1": 1.0, "d2": 0.5, "d3": 0.0})
    runs = fuse_runs({"A": {"q1": A, "q2": {}}, "B": {"q2": B}}, "combmnz")
    assert list(runs["q1"]) == ["d1", "d2", "d3"] and list(runs["q2"]) == ["d2", "d3", "d4"]
    assert runs["q2"]["d2"] == pytest.approx(1.0)  # rank norm of the only list: 1, 2/3, 1/3
    assert fuse({"A": {}, "B": {}}, "rrf") == {}


def test_method_names_parse_and_fail_helpfully() -> None:
    assert parse_method("combmnz").norm == "rank" and parse_method("mean").norm == "minmax"
    assert parse_method("MEAN-ZSCORE").name == "mean-zscore" and parse_method("rrf").norm is None
    assert all(parse_method(m).name for m in method_names())
    for bad in ("borda", "rrf-minmax", "mean-l2", ""):
        with pytest.raises(UserError, match="Unknown fusion method.*rrf, combsum"):
            parse_method(bad)


def test_normalise_and_tie_breaking() -> None:
    assert normalise({"a": 2.0, "b": 4.0}, "minmax") == {"b": 1.0, "a": 0.0}
    assert normalise({"a": 1.0, "b": 3.0}, "zscore") == pytest.approx({"b": 1.0, "a": -1.0})
    assert normalise({"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.0}, "rank") == {"b": 1.0, "c": 0.75, "a": 0.5, "d": 0.25}
    tied = break_ties({"b": 1.0, "a": 1.0, "c": 0.5})
    assert list(tied) == ["a", "b", "c"] and tied["a"] > tied["b"] > tied["c"] and tied["b"] == pytest.approx(1.0)


def test_query_vector_arithmetic() -> None:
    # [1,0] + 0.5·[0,1] (the second term's length 2 is normalised away) → [1, .5]/√1.25
    v = combine_query_vectors([(np.array([1.0, 0.0]), 1.0), (np.array([0.0, 2.0]), 0.5)])
    assert v == pytest.approx(np.array([1.0, 0.5]) / math.sqrt(1.25), abs=1e-6)
    assert v.dtype == np.float32
    # a negative term subtracts: (1,1)/√2 - 0.5·(0,1) → (0.7071, 0.2071) normalised
    w = combine_query_vectors([(np.array([1.0, 1.0]), 1.0), (np.array([0.0, 1.0]), -0.5)])
    raw = np.array([1 / math.sqrt(2), 1 / math.sqrt(2) - 0.5])
    assert w == pytest.approx(raw / np.linalg.norm(raw), abs=1e-6)
    with pytest.raises(UserError, match="cancel out"):
        combine_query_vectors([(np.array([1.0, 0.0]), 1.0), (np.array([2.0, 0.0]), -1.0)])
    with pytest.raises(UserError, match="different spaces"):
        combine_query_vectors([(np.zeros(3) + 1, 1.0), (np.ones(4), 1.0)])


def test_warm_up_compiles_every_method() -> None:
    assert warm_up() == method_names()  # every accepted name fused both lists completely


def test_weights_are_parsed_once_for_every_caller() -> None:
    assert parse_weights("text/caption=2, text/content=0.5;clip/content=1\n") == {
        "text/caption": 2.0, "text/content": 0.5, "clip/content": 1.0}
    assert parse_weights({"a": "3"}) == {"a": 3.0} and parse_weights(None) == {} and parse_weights("") == {}
    for bad, msg in (("text/caption", "is not SOURCE=NUMBER"), ("a=x", "must be a number"), ("a=inf", "finite")):
        with pytest.raises(UserError, match=msg):
            parse_weights(bad)


@pytest.mark.parametrize("method", [*method_names()])
def test_fast_fusion_equals_ranx(method: str) -> None:
    """The main search fuses without ranx (no JIT on the first search); it must give ranx's scores and order."""
    rng = np.random.default_rng(5)
    lists = {
        "A": {f"d{i}": float(s) for i, s in enumerate(rng.normal(size=30))},
        "B": {f"d{i}": float(s) for i, s in enumerate(rng.normal(size=40) * 3 + 1) if i % 3},
        "C": {"d1": 0.5, "d7": 0.5, "d40": 0.2},  # a tie, and a doc only C holds
    }
    weights = {"A": 0.5, "B": 2.0, "C": 1.0}
    want = fuse(lists, method, weights)
    got = fuse_fast(lists, method, weights)
    assert list(got) == list(want)
    assert got == pytest.approx(want, abs=1e-9)


def test_search_fusion_names() -> None:
    assert search_fusion(None) == "mean-zscore" and search_fusion(" ") == "mean-zscore"
    assert search_fusion("MAX") == "max" and search_fusion("max-minmax") == "max-minmax" and search_fusion("rrf") == "rrf"
    with pytest.raises(UserError, match="Unknown fusion method 'borda'.*Search also takes 'max'"):
        search_fusion("borda")
