"""Fusion as pure functions: combine ranked lists (score- and rank-level) or query vectors (vector-level).

A *ranked list* is ``{doc_id: score}`` for one query from one source, doc ids are strings, higher is
better. A *run* is ``{query_id: ranked list}``. Methods are named ``<fusion>[-<norm>]``:

============  =========================================================  ======================
fusion        fused score of a doc (n_i = its normalised score in list i)   default norm
============  =========================================================  ======================
``mean``      mean of n_i over the lists that hold the doc (CombANZ)     ``minmax``
``wsum``      Σ w_i · n_i, user weights w_i, absent docs count 0         ``minmax``
``max``       max_i n_i (CombMAX)                                        ``minmax``
``combsum``   Σ n_i                                                      ``rank``
``combmnz``   Σ n_i × (number of lists holding the doc)                  ``rank``
``rrf``       Σ 1 / (60 + rank_i)   (reciprocal rank fusion)             none (ranks only)
============  =========================================================  ======================

Norms: ``minmax`` (s - min) / (max - min); ``zscore`` (s - mean) / std; ``rank`` 1 - (rank - 1) / n,
with n the list length. The scores come from ``ranx.fuse`` (norms and fusions as ranx implements
them); :func:`contributions` splits each fused score into one term per source, and the terms add up
to the ranx score.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crossmodal_demo.errors import UserError

# ranx forces numba's "workqueue" threading layer, which aborts the whole process when two threads
# run its kernels at once (seen in the app: two lab runs, or a run during the warm-up). Every ranx call
# in this package holds this lock; re-entrant so callers may hold it around a series of calls.
RANX_LOCK = threading.RLock()

RankedList = dict[str, float]
Runs = dict[str, dict[str, RankedList]]  # source name → query id → ranked list

FUSIONS = ("rrf", "combsum", "combmnz", "mean", "wsum", "max")
NORMS = ("minmax", "zscore", "rank")
DEFAULT_NORM = {"mean": "minmax", "wsum": "minmax", "max": "minmax", "combsum": "rank", "combmnz": "rank", "rrf": None}
# The methods the evaluate command runs when none are named (every family, both score norms).
DEFAULT_METHODS = (
    "rrf",
    "combsum",
    "combmnz",
    "mean-minmax",
    "mean-zscore",
    "wsum-minmax",
    "wsum-zscore",
    "max-minmax",
    "max-zscore",
)
RRF_K = 60  # Cormack et al. 2009; also ranx's default
# The main search's default, chosen on the demo benchmark (README "How results are ranked"): z-scores
# make each source's scores comparable (invariant to a source's offset and scale) and averaging them
# over the sources that hold an item beat rrf, rank and min-max norms and every single source.
DEFAULT_FUSION = "mean-zscore"
RAW_MAX = "max"  # in the main search: each item's best *raw* cosine over sources (the pre-fusion behaviour)
_PAD = "\x00pad"  # placeholder doc id (see fuse_runs)

_RANX_NORM = {"minmax": "min-max", "zscore": "zmuv", "rank": "rank", None: None}
_RANX_METHOD = {"rrf": "rrf", "combsum": "sum", "combmnz": "mnz", "mean": "anz", "wsum": "wsum", "max": "max"}


@dataclass(frozen=True)
class Method:
    """A parsed method name: ``fusion`` in :data:`FUSIONS`, ``norm`` in :data:`NORMS` or None (rrf)."""

    fusion: str
    norm: str | None

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``mean-minmax``; ``rrf``, ``combsum`` and ``combmnz`` keep their short name."""
        if self.norm == DEFAULT_NORM[self.fusion] and self.fusion in ("rrf", "combsum", "combmnz"):
            return self.fusion
        return f"{self.fusion}-{self.norm}" if self.norm else self.fusion


def method_names() -> list[str]:
    """Every accepted method name (for help texts and error messages)."""
    out = ["rrf"]
    for f in FUSIONS[1:]:
        out += [f] + [f"{f}-{n}" for n in NORMS]
    return out


def parse_method(name: str) -> Method:
    """``'mean-zscore'`` → Method('mean', 'zscore'); a bare fusion name takes its default norm."""
    fusion, _, norm = (name or "").strip().lower().partition("-")
    if fusion not in FUSIONS or (norm and (norm not in NORMS or fusion == "rrf")):
        raise UserError(
            f"Unknown fusion method {name!r}. Use <fusion>[-<norm>] with fusion one of {', '.join(FUSIONS)} "
            f"and norm one of {', '.join(NORMS)} (rrf takes no norm), e.g. rrf, combmnz, mean-zscore, wsum-minmax."
        )
    return Method(fusion, norm or DEFAULT_NORM[fusion])


def _sorted(scores: Mapping[str, float]) -> RankedList:
    """Best first; ties broken by doc id so every caller sees the same order."""
    return dict(sorted(((d, float(s)) for d, s in scores.items()), key=lambda kv: (-kv[1], kv[0])))


def break_ties(scores: Mapping[str, float]) -> RankedList:
    """Best first with strictly decreasing scores: a tie is ordered by doc id and the later doc's score
    lowered by one float64 ulp, so ranx, trec_eval and the UI all read the same order."""
    out: RankedList = {}
    prev = math.inf
    for d, s in _sorted(scores).items():
        if s >= prev:
            s = float(np.nextafter(prev, -np.inf))
        out[d] = s
        prev = s
    return out


def parse_weights(weights: str | Mapping[str, float] | None) -> dict[str, float]:
    """``"text/caption=2, text/content=0.5"`` (separated by ``,`` ``;`` or newlines), or a mapping →
    {source: weight}; a malformed part or a non-finite number is a UserError. None/'' → {}."""
    if not weights:
        return {}
    if isinstance(weights, Mapping):
        items = list(weights.items())
    else:
        items = []
        for part in (p.strip() for p in re.split(r"[,;\n]", str(weights))):
            if not part:
                continue
            name, eq, value = part.rpartition("=")
            if not eq or not name.strip():
                raise UserError(f"Weight {part!r} is not SOURCE=NUMBER, e.g. text/caption=2, text/content=0.5.")
            items.append((name.strip(), value))
    out: dict[str, float] = {}
    for name, value in items:
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise UserError(f"The weight of {name!r} must be a number (got {value!r}).") from None
        if not math.isfinite(out[str(name)]):
            raise UserError(f"The weight of {name!r} must be a finite number (got {value!r}).")
    return out


def _weights_for(sources: Sequence[str], weights: Mapping[str, float] | None) -> list[float]:
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(sources))
    if unknown:
        raise UserError(
            f"Weights given for unknown source(s) {', '.join(unknown)}. Sources here: {', '.join(sources)}."
        )
    out = [float(weights.get(s, 1.0)) for s in sources]
    if not all(math.isfinite(w) for w in out):
        raise UserError(f"Weights must be finite numbers (got {dict(zip(sources, out))}).")
    return out


def fuse_runs(runs: Runs, method: str | Method, weights: Mapping[str, float] | None = None) -> dict[str, RankedList]:
    """Fuse per-source runs ``{source: {qid: {doc: score}}}`` into one run ``{qid: {doc: score}}`` (best first).

    A query missing from a source simply gets nothing from it. ``weights`` ({source: w}, default 1)
    are used by ``wsum`` only. One source alone is returned normalised (its order is unchanged).
    """
    import ranx  # lazy: ranx compiles numba kernels at import (seconds)

    m = method if isinstance(method, Method) else parse_method(method)
    names = list(runs)
    if not names:
        return {}
    qids = sorted({q for r in runs.values() for q in r})
    # ranx wants the same query ids in every run and cannot hold an empty list, so a source with
    # nothing for a query holds one placeholder doc instead. It gets no other doc's score in any
    # method (it is in no other list) and is dropped from the output.
    ranx_runs = [_to_ranx({q: runs[s].get(q) or {_PAD: 0.0} for q in qids}, s) for s in names]
    if len(ranx_runs) == 1:
        # ranx.fuse needs two runs; a partner holding only the placeholder changes no fused score.
        ranx_runs.append(_to_ranx({q: {_PAD: 0.0} for q in qids}, _PAD))
    params: dict = {}
    if m.fusion == "wsum":
        params["weights"] = _weights_for(names, weights) + [0.0] * (len(ranx_runs) - len(names))
    elif m.fusion == "rrf":
        params["k"] = RRF_K
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "unsafe cast uint64→int64" warning is noise here
        with RANX_LOCK:
            fused = ranx.fuse(ranx_runs, norm=_RANX_NORM[m.norm], method=_RANX_METHOD[m.fusion], params=params)
    out = fused.to_dict()
    return {q: _sorted({d: v for d, v in out.get(q, {}).items() if d != _PAD}) for q in qids}


def search_fusion(name: str | None) -> str:
    """A main-search fusion name: None → :data:`DEFAULT_FUSION`; ``max`` (raw best score) or any lab method."""
    if name is None or not str(name).strip():
        return DEFAULT_FUSION
    if str(name).strip().lower() == RAW_MAX:
        return RAW_MAX
    try:
        return parse_method(str(name)).name
    except UserError as exc:
        raise UserError(f"{exc} Search also takes '{RAW_MAX}' (best raw cosine); CROSSMODAL_FUSION sets the default.") from None


def fuse_fast(lists: Mapping[str, Mapping[str, float]], method: str | Method, weights: Mapping[str, float] | None = None) -> RankedList:
    """Same result as :func:`fuse` (the ranx scores, best first, ties by doc id) in plain Python/numpy.

    The fused score is the sum of :func:`contributions`, so no numba kernel is compiled: the first
    search of a process does not wait ~10 s for ranx's JIT. Tests check equality with ``ranx.fuse``.
    """
    return _sorted({d: sum(t.values()) for d, t in contributions(lists, method, weights).items()})


def fuse(lists: Mapping[str, Mapping[str, float]], method: str | Method, weights: Mapping[str, float] | None = None) -> RankedList:
    """Fuse one query's ranked lists ``{source: {doc: score}}`` → ``{doc: fused score}``, best first."""
    return fuse_runs({s: {"q": dict(lst)} for s, lst in lists.items()}, method, weights).get("q", {})


def normalise(scores: Mapping[str, float], norm: str | None) -> RankedList:
    """One ranked list normalised as ranx does: ``minmax``, ``zscore``, ``rank`` or None (unchanged)."""
    ranked = _sorted(scores)
    if not ranked or norm is None:
        return ranked
    vals = np.array(list(ranked.values()), dtype=np.float64)
    if norm == "minmax":
        out = (vals - vals.min()) / max(vals.max() - vals.min(), 1e-9)
    elif norm == "zscore":
        out = (vals - vals.mean()) / max(vals.std(), 1e-9)
    elif norm == "rank":
        out = 1.0 - np.arange(len(vals)) / len(vals)
    else:
        raise UserError(f"Unknown norm {norm!r}. Choose one of: {', '.join(NORMS)}.")
    return dict(zip(ranked, out.tolist()))


def contributions(
    lists: Mapping[str, Mapping[str, float]], method: str | Method, weights: Mapping[str, float] | None = None
) -> dict[str, dict[str, float]]:
    """Per doc, each source's share of the fused score: ``{doc: {source: term}}``; terms sum to the fused score.

    For ``max`` the source holding the maximum gets the whole score and the others 0; a source that
    does not hold the doc contributes 0.
    """
    m = method if isinstance(method, Method) else parse_method(method)
    names = list(lists)
    w = dict(zip(names, _weights_for(names, weights)))
    normed = {s: normalise(break_ties(lists[s]), None if m.fusion == "rrf" else m.norm) for s in names}
    ranks = {s: {d: r for r, d in enumerate(normed[s], start=1)} for s in names}
    docs = sorted({d for s in names for d in normed[s]})
    out: dict[str, dict[str, float]] = {}
    for d in docs:
        holders = [s for s in names if d in normed[s]]
        terms = dict.fromkeys(names, 0.0)
        if m.fusion == "rrf":
            for s in holders:
                terms[s] = 1.0 / (RRF_K + ranks[s][d])
        elif m.fusion == "combsum":
            for s in holders:
                terms[s] = normed[s][d]
        elif m.fusion == "combmnz":
            for s in holders:
                terms[s] = normed[s][d] * len(holders)
        elif m.fusion == "mean":
            for s in holders:
                terms[s] = normed[s][d] / len(holders)
        elif m.fusion == "wsum":
            for s in holders:
                terms[s] = w[s] * normed[s][d]
        else:  # max: first source (in the given order) holding the maximum takes it
            best = max(holders, key=lambda s: normed[s][d])
            terms[best] = normed[best][d]
        out[d] = terms
    return out


def warm_up() -> list[str]:
    """Compile ranx's numba kernels for every method now (about 10 s once per process, then ms per call);
    returns the methods that fused correctly (every doc of the two lists, best first).

    Call it from a background thread at app start so the first fusion a user asks for is quick.
    """
    a, b = {"d1": 0.9, "d2": 0.5}, {"d2": 2.0, "d3": 1.0}
    done = []
    for name in method_names():
        if set(fuse({"a": a, "b": b}, name)) == {"d1", "d2", "d3"}:
            done.append(name)
    return done


def combine_query_vectors(terms: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """Vector-level fusion in one space: ``normalise(Σ w_i · v_i / ‖v_i‖)`` → float32 (dim,).

    Negative weights subtract a concept (query arithmetic: photo + "at night" - "daytime"). Raises
    UserError when the terms cancel out or have different dims.
    """
    if not terms:
        raise UserError("No query terms to combine: give at least one text, image or audio term.")
    dims = {np.asarray(v).shape for v, _ in terms}
    if len(dims) != 1:
        raise UserError(f"Query terms live in different spaces (vector shapes {sorted(dims)}); combine terms of one space only.")
    total = np.zeros(next(iter(dims)), dtype=np.float64)
    for v, w in terms:
        v = np.asarray(v, dtype=np.float64)
        n = np.linalg.norm(v)
        if n > 0:
            total += float(w) * v / n
    norm = np.linalg.norm(total)
    if norm < 1e-6:
        raise UserError("The query terms cancel out (their weighted sum is zero); change a weight or drop a negative term.")
    return (total / norm).astype(np.float32)


def _to_ranx(run: dict[str, Mapping[str, float]], name: str):  # -> ranx.Run
    import ranx  # lazy: heavy import (numba)

    r = ranx.Run(name=name)
    qids = [q for q in run]
    # Run.add_multi builds the numba dicts and sorts each list by score (rrf reads the order).
    ordered = [break_ties(run[q]) for q in qids]
    docs = [list(o.keys()) for o in ordered]
    scores = [list(o.values()) for o in ordered]
    r.add_multi(qids, docs, scores)
    return r
