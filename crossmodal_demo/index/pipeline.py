"""Indexing: files → decoded media → vectors in every space → one committed transaction per batch.

Decoding (and hashing) of the next batch runs in worker threads while the current batch is encoded,
so the encoders are kept busy. One bad file is reported and skipped; the rest is indexed.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSet
from crossmodal_demo.errors import MediaError
from crossmodal_demo.index.store import Collection, NewItem
from crossmodal_demo.ingest.discover import Candidate, Problem, discover
from crossmodal_demo.ingest.hashing import file_sha256
from crossmodal_demo.ingest.media import check_size, load_audio, load_image, load_text

ProgressFn = Callable[[int, int, str], None]  # (done, total, what is being done now); the one progress type
MODALITY_ORDER = ("text", "image", "audio")  # text first: its model is shared by the other two


@dataclass
class IndexReport:
    """Outcome of one indexing run. ``seconds`` is wall time; ``items_per_second`` counts added items."""

    added: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Added items per wall-clock second."""
        return len(self.added) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "added": len(self.added),
            "duplicates": len(self.duplicates),
            "replaced": len(self.replaced),
            "errors": [{"path": p.path, "reason": p.reason} for p in self.problems],
            "notes": [{"path": p.path, "note": p.reason} for p in self.notes],
            "ignored": self.ignored,
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.items_per_second, 3),
        }


@dataclass
class _Prepared:
    cand: Candidate
    sha256: str
    size: int
    data: Any


def decode(cand: Candidate, config: Config, audio_sr: int = 16000) -> Any:
    """Decode one candidate's media with the configured limits (raises MediaError); audio at ``audio_sr`` Hz."""
    if cand.modality == "image":
        return load_image(cand.path, max_mpx=config.max_image_mpx)
    if cand.modality == "audio":
        return load_audio(cand.path, target_sr=audio_sr, max_seconds=config.max_audio_seconds)
    return load_text(cand.path)


def _prepare(cand: Candidate, config: Config, audio_sr: int) -> _Prepared | Problem:
    try:
        size = check_size(cand.path, config.max_file_bytes)
        sha = file_sha256(cand.path)
        return _Prepared(cand, sha, size, decode(cand, config, audio_sr))
    except MediaError as exc:
        return Problem(str(cand.path), str(exc))
    except OSError as exc:
        return Problem(str(cand.path), f"cannot read the file ({exc.strerror or exc})")
    except MemoryError:
        return Problem(str(cand.path), "too large to decode in memory")
    except Exception as exc:  # a decoder bug on one file must not abort the whole run
        return Problem(str(cand.path), f"could not be decoded ({type(exc).__name__}: {exc})")


def index_paths(
    collection: Collection,
    encoders: EncoderSet,
    paths: Sequence[Path],
    config: Config,
    on_progress: ProgressFn | None = None,
) -> IndexReport:
    """Index files and folders into ``collection``; returns what was added, skipped and why."""
    t0 = time.perf_counter()
    found = discover([Path(p) for p in paths], max_caption_chars=config.max_caption_chars)
    report = IndexReport(problems=list(found.problems), ignored=[str(p) for p in found.ignored])
    total = len(found.candidates)
    done = 0
    chunks = [
        [c for c in found.candidates if c.modality == m][i : i + config.batch_size]
        for m in MODALITY_ORDER
        for i in range(0, sum(1 for c in found.candidates if c.modality == m), config.batch_size)
    ]
    seen_hashes: set[str] = set()
    audio_sr = encoders.audio_sample_rate()
    with ThreadPoolExecutor(max_workers=max(1, config.decode_workers), thread_name_prefix="decode") as pool:
        pending: list[Future] | None = None
        try:
            for i, chunk in enumerate(chunks):
                futs = pending if pending is not None else [pool.submit(_prepare, c, config, audio_sr) for c in chunk]
                # Start decoding the next batch now, so it overlaps with encoding this one.
                pending = [pool.submit(_prepare, c, config, audio_sr) for c in chunks[i + 1]] if i + 1 < len(chunks) else None
                ready: list[_Prepared] = []
                for fut in futs:
                    res = fut.result()
                    if isinstance(res, Problem):
                        report.problems.append(res)
                    elif res.sha256 in seen_hashes or collection.find_by_hash(res.sha256) is not None:
                        report.duplicates.append(str(res.cand.path))
                    else:
                        seen_hashes.add(res.sha256)
                        ready.append(res)
                new_items = _encode_batch(ready, encoders, report)
                ids = collection.add(new_items)
                for item, item_id in zip(new_items, ids):
                    if item_id < 0:
                        report.duplicates.append(item.path)
                        continue
                    report.added.append(item_id)
                    # A file that changed on disk replaces its older version at the same path.
                    stale = [old.id for old in collection.find_by_path(item.path) if old.id != item_id]
                    report.replaced.extend(collection.remove(stale) if stale else [])
                done += len(chunk)
                if on_progress:
                    on_progress(done, total, chunk[-1].path.name)
        finally:
            for fut in pending or []:
                fut.cancel()
            collection.flush()
    report.seconds = time.perf_counter() - t0
    return report


def _encode_batch(ready: list[_Prepared], encoders: EncoderSet, report: IndexReport) -> list[NewItem]:
    """Vectors for a batch of one modality, per encoder; a failing batch is retried item by item."""
    if not ready:
        return []
    modality = ready[0].cand.modality
    vectors: list[dict[tuple[str, str], np.ndarray]] = [{} for _ in ready]
    failed: set[int] = set()
    for spec in encoders.specs_for(modality):
        enc = encoders.get(spec.name)
        rows = _encode_robust(enc, [p.data for p in ready], failed, ready, report)
        for j, row in rows.items():
            if np.any(row):  # zero row: nothing to embed in this space (e.g. no speech)
                vectors[j][(spec.space, "content")] = row
    captions = [(j, p.cand.caption) for j, p in enumerate(ready) if p.cand.caption and j not in failed]
    if captions:
        for space in encoders.spaces():
            text_enc = encoders.text_encoder_for(space)
            if text_enc is None:
                continue
            vecs = text_enc.encode([c for _, c in captions])
            for (j, _), row in zip(captions, vecs):
                if np.any(row):
                    vectors[j][(space, "caption")] = row
    out: list[NewItem] = []
    for j, p in enumerate(ready):
        if j in failed:
            continue
        note = _note(p, encoders)
        if note:
            report.notes.append(Problem(str(p.cand.path), note))
        transcript = p.data.transcript if modality == "audio" else None
        out.append(
            NewItem(
                path=str(p.cand.path),
                root=str(p.cand.root),
                modality=modality,
                sha256=p.sha256,
                size=p.size,
                caption=p.cand.caption,
                transcript=transcript,
                note=note,
                vectors=vectors[j],
            )
        )
    return out


def _encode_robust(enc: Encoder, batch: list[Any], failed: set[int], ready: list[_Prepared], report: IndexReport) -> dict[int, np.ndarray]:
    """Encode ``batch``; if the batch call fails, isolate the failing items one by one."""
    todo = [j for j in range(len(batch)) if j not in failed]
    try:
        vecs = enc.encode([batch[j] for j in todo])
        return dict(zip(todo, vecs))
    except Exception:  # an encoder error on one input must not lose the batch
        out: dict[int, np.ndarray] = {}
        for j in todo:
            try:
                out[j] = enc.encode([batch[j]])[0]
            except Exception as exc:
                failed.add(j)
                report.problems.append(Problem(str(ready[j].cand.path), f"{enc.name} could not encode it ({exc})"))
        return out


def _note(p: _Prepared, encoders: EncoderSet) -> str | None:
    """A remark shown with the item (not an error): no speech found, text truncated."""
    if p.cand.modality == "audio" and not (p.data.transcript or "").strip():
        return "no speech found" + ("" if p.cand.caption else " (no caption either: not searchable by text)")
    if p.cand.modality == "text":
        notes = []
        for spec in encoders.specs_for("text"):
            enc = encoders.get(spec.name)
            limit = getattr(enc, "max_tokens", None)
            if limit:
                n = enc.count_tokens(p.data)
                if n > limit:
                    notes.append(f"text truncated: {spec.name} reads the first {limit} of {n} tokens")
        return "; ".join(notes) or None
    return None
