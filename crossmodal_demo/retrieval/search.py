"""SearchService: encode a query in every space its modality lives in, rank per space, merge into hits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import EncoderSet
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.store import Collection
from crossmodal_demo.ingest.media import Audio, load_audio, load_image
from crossmodal_demo.retrieval.query import CHANNELS, TARGETS, Query, check_k, check_target, check_text, target_modalities

__all__ = ["CHANNELS", "TARGETS", "Hit", "Query", "SearchResult", "SearchService"]

@dataclass
class Hit:
    """One result. ``score`` is the inner product (cosine) in ``space``; ``channel`` says what matched."""

    id: int
    path: str
    modality: str
    score: float
    space: str
    channel: str
    caption: str | None
    transcript: str | None
    rank: int = 0


@dataclass
class SearchResult:
    """The query as understood (incl. its transcript for audio) and the hits, best first."""

    query: dict[str, Any]
    hits: list[Hit] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``search --json`` document: ``{"query": {...}, "hits": [...]}``."""
        return {"query": self.query, "hits": [asdict(h) for h in self.hits]}


class SearchService:
    """Search one collection with one set of encoders (both passed in)."""

    def __init__(self, collection: Collection, encoders: EncoderSet, config: Config) -> None:
        self.collection = collection
        self.encoders = encoders
        self.config = config

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
                value = load_image(_existing(value), max_mpx=self.config.max_image_mpx)
        else:
            value = query.audio
            if isinstance(value, (str, Path)):
                info["audio"] = str(value)
                value = load_audio(
                    _existing(value),
                    target_sr=self.encoders.audio_sample_rate(),
                    max_seconds=self.config.max_query_audio_seconds,
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
        if not vectors:
            what = "no speech found in the audio query" if modality == "audio" else f"the {modality} query is empty"
            raise UserError(f"Nothing to search with: {what}. The {self.encoders.preset.name} preset needs speech for audio queries.")
        return vectors, info

    def search(self, query: Query, target: str = "any", k: int = 10) -> SearchResult:
        """Top-``k`` items of modality ``target`` ('image'|'text'|'audio'|'any'), best first."""
        check_target(target)
        check_k(k)
        query.check(self.config)  # before any file is decoded or model loaded
        vectors, info = self.encode_query(query)
        info.update(target=target, k=k, collection=self.collection.name, preset=self.encoders.preset.name)
        return SearchResult(query=info, hits=self.search_vectors(vectors, target, k))

    def search_vectors(self, vectors: dict[str, np.ndarray], target: str, k: int) -> list[Hit]:
        """Rank items of ``target`` for pre-encoded query vectors ({space: (dim,)}); per item the best score wins."""
        modalities = target_modalities(target)
        best: dict[int, tuple[float, str, str]] = {}
        for space, vec in vectors.items():
            for channel in CHANNELS:
                for modality in modalities:
                    scores, ids = self.collection.search((space, channel, modality), vec[None, :], k)
                    for s, i in zip(scores[0], ids[0]):
                        if i < 0:
                            continue
                        if int(i) not in best or s > best[int(i)][0]:
                            best[int(i)] = (float(s), space, channel)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        items = self.collection.get_many([i for i, _ in ranked])
        hits = []
        for i, (score, space, channel) in ranked:
            it = items.get(i)
            if it is None:  # removed between the index search and this read
                continue
            hits.append(Hit(it.id, it.path, it.modality, round(score, 6), space, channel, it.caption, it.transcript))
        for r, h in enumerate(hits, start=1):
            h.rank = r
        return hits


def _existing(p: str | Path) -> Path:
    path = Path(p).expanduser()
    if not path.is_file():
        raise UserError(f"Query file not found: {path}")
    return path
