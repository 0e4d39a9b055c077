"""Encoding one decoded batch in every space of a preset, telling a bad input from a model that cannot load.

A batch that fails is retried item by item, so one input an encoder rejects costs only that file. A
failure while the encoder's model is still not loaded is different: no file could succeed, so it is
raised once as :class:`ModelFailed` (the pipeline stops the run) instead of N retries and N problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

from crossmodal_demo.encoders.base import Encoder, EncoderSet
from crossmodal_demo.encoders.vocabulary import item_labels
from crossmodal_demo.index.store import NewItem
from crossmodal_demo.ingest.discover import Candidate, Problem

R = TypeVar("R")


@dataclass
class Prepared:
    """A decoded file ready to encode: its media in ``data`` (str, RGB PIL image or Audio)."""

    cand: Candidate
    sha256: str
    size: int
    mtime: float
    data: Any


class ModelFailed(Exception):
    """An encoder's model could not be loaded: a fault of the run, not of one file."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(name)
        self.name, self.cause = name, cause


class BatchEncoder:
    """Encodes batches with the encoders of one :class:`EncoderSet`; per-file problems and notes are
    appended to ``problems`` / ``notes``."""

    def __init__(self, encoders: EncoderSet, problems: list[Problem], notes: list[Problem]) -> None:
        self.encoders, self.problems, self.notes = encoders, problems, notes
        self.ready: set[str] = set()  # encoders whose model is known to be loaded

    def encoder(self, name: str) -> Encoder:
        """The encoder called ``name`` with its model loaded when it can say so (``load()``)."""
        try:
            enc = self.encoders.get(name)
            if name not in self.ready:
                load = getattr(enc, "load", None)
                if callable(load):
                    load()
                self.ready.add(name)
            return enc
        except Exception as exc:  # a factory or weights failure: no file can be encoded
            raise ModelFailed(name, exc) from exc

    def encode(self, ready: list[Prepared]) -> list[NewItem]:
        """Vectors for a batch of one modality, per encoder; a failing batch is retried item by item."""
        if not ready:
            return []
        modality = ready[0].cand.modality
        vectors: list[dict[tuple[str, str], np.ndarray]] = [{} for _ in ready]
        failed: set[int] = set()
        for spec in self.encoders.specs_for(modality):
            enc = self.encoder(spec.name)
            for j, row in self.encode_robust(enc, [p.data for p in ready], failed, ready).items():
                if np.any(row):  # zero row: nothing to embed in this space (e.g. no speech)
                    vectors[j][(spec.space, "content")] = row
        captions = [(j, p.cand.caption) for j, p in enumerate(ready) if p.cand.caption and j not in failed]
        for space in self.encoders.spaces() if captions else ():
            name = next((s.name for s in self.encoders.specs if s.space == space and s.modality == "text"), None)
            if name is None:
                continue
            text_enc = self.encoder(name)
            vecs = guarded(text_enc, lambda: text_enc.encode([c for _, c in captions]))
            for (j, _), row in zip(captions, vecs):
                if np.any(row):
                    vectors[j][(space, "caption")] = row
        out: list[NewItem] = []
        for j, p in enumerate(ready):
            if j in failed:
                continue
            note = self.note(p)
            if note:
                self.notes.append(Problem(str(p.cand.path), note))
            out.append(NewItem(path=str(p.cand.path), root=str(p.cand.root), modality=modality, sha256=p.sha256,
                               size=p.size, caption=p.cand.caption, note=note, vectors=vectors[j], mtime=p.mtime,
                               transcript=p.data.transcript if modality == "audio" else None,
                               labels=item_labels(self.encoders, modality, p.data, vectors[j])))
        return out

    def encode_robust(self, enc: Encoder, batch: list[Any], failed: set[int], ready: list[Prepared]) -> dict[int, np.ndarray]:
        """Encode ``batch``; if the batch call fails, isolate the failing items one by one — unless the
        model never loaded (then no item can succeed: :class:`ModelFailed`, with no retries)."""
        todo = [j for j in range(len(batch)) if j not in failed]
        try:
            vecs = enc.encode([batch[j] for j in todo])
            return dict(zip(todo, vecs))
        except Exception as exc:  # an encoder error on one input must not lose the batch
            if not getattr(enc, "is_loaded", True):
                raise ModelFailed(enc.name, exc) from exc
        out: dict[int, np.ndarray] = {}
        for j in todo:
            try:
                out[j] = enc.encode([batch[j]])[0]
            except Exception as exc:
                failed.add(j)
                self.problems.append(Problem(str(ready[j].cand.path), f"{enc.name} could not encode it ({exc})"))
        return out

    def note(self, p: Prepared) -> str | None:
        """A remark shown with the item (not an error): no speech found, text truncated."""
        if p.cand.modality == "audio" and not (p.data.transcript or "").strip():
            return "no speech found" + ("" if p.cand.caption else " (no caption either: not searchable by text)")
        if p.cand.modality == "text":
            notes = []
            for spec in self.encoders.specs_for("text"):
                enc = self.encoder(spec.name)
                limit = guarded(enc, lambda: getattr(enc, "max_tokens", None))
                if limit:
                    n = guarded(enc, lambda: enc.count_tokens(p.data))
                    if n > limit:
                        notes.append(f"text truncated: {spec.name} reads the first {limit} of {n} tokens")
            return "; ".join(notes) or None
        return None


def guarded(enc: Encoder, call: Callable[[], R]) -> R:
    """``call()``; a failure of an encoder whose model is not loaded is a :class:`ModelFailed`."""
    try:
        return call()
    except Exception as exc:
        if not getattr(enc, "is_loaded", True):
            raise ModelFailed(enc.name, exc) from exc
        raise
