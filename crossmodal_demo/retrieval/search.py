"""SearchService: encode a query in every space its modality lives in, rank per source, fuse into hits.

How results are ranked: every *source* (space × channel × target modality, see :mod:`.sources`) ranks
the target items by cosine, ``max(k, DEFAULT_DEPTH)`` deep; the lists are fused with a calibrated
method (default :data:`~crossmodal_demo.retrieval.fusion.DEFAULT_FUSION`, ``mean-zscore``: each
list's scores become z-scores, an item's fused score is their mean over the lists that hold it), so
the raw cosines of different models are never compared. ``fusion="max"`` keeps the pre-fusion
behaviour (best raw cosine). Each hit says where it came from (``sources``), whether it is a real
match (``match``, :mod:`.calibration`) and, for images, what the model saw (``labels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.encoders.vocabulary import item_labels
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.media import Audio, AudioLimits, ImageLimits, load_audio, load_image
from crossmodal_demo.retrieval.calibration import WEAK, Calibrator
from crossmodal_demo.retrieval.fusion import RAW_MAX, RankedList, contributions, search_fusion
from crossmodal_demo.retrieval.query import CHANNELS, TARGETS, Query, check_k, check_target, check_text
from crossmodal_demo.retrieval.sources import DEFAULT_DEPTH, ExtraSource, list_sources, rank_sources

__all__ = ["CHANNELS", "TARGETS", "Hit", "Query", "SearchResult", "SearchService"]


@dataclass
class Hit:
    """One result.

    ``score``: the fused score (``max``: the raw cosine); ``space``/``channel``: the source that
    contributed most; ``sources``: ``{"space/channel": {"rank": r, "score": raw cosine}}`` for every
    source whose list holds the item; ``match``: ``"strong"`` | ``"weak"``; ``labels``: an image's (or,
    with CLAP, a sound's) top-5 zero-shot tags ``[[name, probability], ...]`` (None for texts or older collections).
    """

    id: int
    path: str
    modality: str
    score: float
    space: str
    channel: str
    caption: str | None
    transcript: str | None
    rank: int = 0
    sources: dict[str, dict[str, float]] = field(default_factory=dict)
    match: str = WEAK
    labels: list[Any] | None = None


@dataclass
class SearchResult:
    """The query as understood (incl. its transcript for audio, its labels for images) and the hits, best first."""

    query: dict[str, Any]
    hits: list[Hit] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``search --json`` document: ``{"query": {...}, "hits": [...]}``."""
        return {"query": self.query, "hits": [asdict(h) for h in self.hits]}


class SearchService:
    """Search one collection with one set of encoders (both passed in).

    ``extra_sources`` (e.g. an alignment bridge) join the fused ranking when they can rank a query's vectors.
    """

    def __init__(self, collection: Collection, encoders: EncoderSet, config: Config,
                 extra_sources: Sequence[ExtraSource] = ()) -> None:
        self.collection = collection
        self.encoders = encoders
        self.config = config
        self.extra_sources = list(extra_sources)

    def encode_query(self, query: Query) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Query → ({space: float32 (dim,)}, description); raises UserError for unusable queries."""
        modality = query.modality
        value: Any
        info: dict[str, Any] = {"modality": modality}
        if modality == "text":
            value = check_text(query.text, self.config)  # type: ignore[arg-type]
            info["text"] = value
        elif modality == "image":
            value = query.image
            if isinstance(value, (str, Path)):
                info["image"] = str(value)
                value = load_image(_existing(value), limits=ImageLimits.from_config(self.config))
        else:
            value = query.audio
            if isinstance(value, (str, Path)):
                info["audio"] = str(value)
                value = load_audio(
                    _existing(value),
                    target_sr=self.encoders.audio_sample_rate(),
                    limits=AudioLimits.query(self.config),  # names CROSSMODAL_MAX_QUERY_AUDIO_SECONDS
                )
            elif not isinstance(value, Audio):
                raise UserError("An audio query must be a file path or decoded audio.")
        specs = self.encoders.specs_for(modality)
        if not specs:
            raise UserError(f"Preset {self.encoders.preset.name!r} has no encoder for {modality} queries.")
        vectors: dict[str, np.ndarray] = {}
        for spec in specs:
            vec = self.encoders.get(spec.name).encode([value])[0]
            if np.any(vec):
                vectors[spec.space] = vec
        if modality == "audio":
            info["transcript"] = value.transcript
        if modality == "image":  # what the model saw in the query picture (right after encoding: no second pass)
            info["labels"] = item_labels(self.encoders, "image", value, {(s, "content"): v for s, v in vectors.items()})
        if not vectors:
            what = "no speech found in the audio query" if modality == "audio" else f"the {modality} query is empty"
            raise UserError(f"Nothing to search with: {what}. The {self.encoders.preset.name} preset needs speech for audio queries.")
        return vectors, info

    def search(self, query: Query, target: str = "any", k: int = 10, fusion: str | None = None) -> SearchResult:
        """Top-``k`` items of modality ``target`` ('image'|'text'|'audio'|'any'), best first.

        ``fusion``: a fusion method name (see :mod:`.fusion`), ``max`` for the best raw cosine, or None
        for ``config.fusion`` (CROSSMODAL_FUSION), itself None for the default (``mean-zscore``).
        """
        check_target(target)
        check_k(k)
        method = search_fusion(fusion if fusion is not None else self.config.fusion)  # a typo fails before any model loads
        query.check(self.config)  # before any file is decoded or model loaded
        vectors, info = self.encode_query(query)
        info.update(target=target, k=k, collection=self.collection.name, preset=self.encoders.preset.name, fusion=method)
        hits = self.search_vectors(vectors, target, k, fusion=method, modality=info["modality"])
        return SearchResult(query=info, hits=hits)

    def rank_lists(self, vectors: dict[str, np.ndarray], target: str, depth: int,
                   exclude: set[int] | None = None) -> dict[str, RankedList]:
        """One ranked list per source ``{"space/channel": {item id str: cosine}}`` (extra sources included), empty ones dropped."""
        sources = list_sources(self, list(vectors), target)
        lists = rank_sources(self, vectors, sources, target, depth, exclude)
        for extra in self.extra_sources:
            if extra.rank_vectors is not None:
                ranked = extra.rank_vectors(vectors, target, depth)
                if ranked:
                    lists[extra.name] = {d: s for d, s in ranked.items() if not exclude or int(d) not in exclude}
        return {name: lst for name, lst in lists.items() if lst}

    def search_vectors(self, vectors: dict[str, np.ndarray], target: str, k: int, fusion: str | None = None,
                       exclude: set[int] | None = None, modality: str | None = None) -> list[Hit]:
        """Rank items of ``target`` for pre-encoded query vectors ({space: (dim,)}) → the top-``k`` hits.

        ``fusion`` as in :meth:`search`; ``exclude``: item ids left out (e.g. the query's own file);
        ``modality``: what the vectors were made from (``info["modality"]`` of :meth:`encode_query`;
        None = text), which decides how ``match`` is calibrated (:mod:`.calibration`).
        """
        check_k(k)
        method = search_fusion(fusion if fusion is not None else self.config.fusion)
        lists = self.rank_lists(vectors, target, max(k, DEFAULT_DEPTH), exclude)
        if method == RAW_MAX:
            best: dict[str, tuple[float, str]] = {}
            for name, lst in lists.items():
                for d, s in lst.items():
                    if d not in best or s > best[d][0]:
                        best[d] = (s, name)
            ranked = sorted(((d, s, name) for d, (s, name) in best.items()), key=lambda t: (-t[1], int(t[0])))
        else:
            parts = contributions(lists, method)
            fused = [(d, sum(t.values()), max(t, key=lambda s: t[s])) for d, t in parts.items()]
            ranked = sorted(fused, key=lambda t: (-t[1], t[0]))  # ties by doc id string, as fusion._sorted
        ranked = ranked[:k]
        items = self.collection.get_many([int(d) for d, _, _ in ranked])
        calib = Calibrator(self.collection, self.encoders)
        z = calib.strengths(lists, [int(d) for d, _, _ in ranked], modality)
        ranks = {name: {d: r for r, d in enumerate(lst, start=1)} for name, lst in lists.items()}
        hits = []
        for d, score, top in ranked:
            it = items.get(int(d))
            if it is None:  # removed between the index search and this read
                continue
            space, _, channel = top.rpartition("/")
            src = {name: {"rank": ranks[name][d], "score": round(lst[d], 6)} for name, lst in lists.items() if d in lst}
            hits.append(Hit(it.id, it.path, it.modality, round(float(score), 6), space, channel, it.caption, it.transcript,
                            sources=src, match=calib.label(z.get(it.id)),
                            labels=[list(p) for p in it.labels] if it.labels else None))
        for r, h in enumerate(hits, start=1):
            h.rank = r
        return hits


def _existing(p: str | Path) -> Path:
    path = Path(p).expanduser()
    if not path.is_file():
        raise UserError(f"Query file not found: {path}")
    return path
