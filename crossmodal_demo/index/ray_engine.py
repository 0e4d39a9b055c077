"""Indexing on Ray Data (``--engine ray [--ray-address ADDRESS]``): decode + encode in an actor pool.

The driver (this process) discovers the files and skips unchanged ones exactly like the local engine,
then hands the file list to Ray Data as a dataset. An actor pool maps it in batches: each actor builds
the preset's encoders once (a GPU per actor when the cluster has GPUs), hashes, decodes (within the same
budgets) and encodes its batch, and returns the items with their vectors and the per-file problems.
The driver commits each returned batch to the collection's store in one ``add`` (one transaction for
SQLite), so killing a run leaves the collection consistent and running it again resumes. Without an
address Ray starts on this machine; with one the same code runs on a cluster, whose workers must see
the files at the same paths (shared media storage).
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.encoders.base import Encoder, EncoderSet, Preset
from crossmodal_demo.errors import UserError
from crossmodal_demo.index.batch_encode import BatchEncoder, Prepared
from crossmodal_demo.index.pipeline import MODALITY_ORDER, IndexReport, ProgressFn, decode, per_file
from crossmodal_demo.index.protocol import Store
from crossmodal_demo.index.schema import Item
from crossmodal_demo.ingest.discover import Candidate, Problem, discover
from crossmodal_demo.ingest.files import check_size
from crossmodal_demo.ingest.hashing import file_sha256


class EncodeActor:
    """One Ray actor: the preset's encoders, built once; ``__call__`` turns a batch of files into items."""

    def __init__(self, preset: Preset, config: Config, overrides: dict[str, Encoder] | None) -> None:
        self.encoders = EncoderSet(preset, config, overrides)  # models load once per actor, on first use
        self.config = config
        self.audio_sr = self.encoders.audio_sample_rate()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch["task"]``: pickled (Candidate, mtime) → one row ``payload``: pickled (items, problems, notes)."""
        problems: list[Problem] = []
        notes: list[Problem] = []
        ready: dict[str, list[Prepared]] = {}
        for raw in batch["task"]:
            cand, mtime = pickle.loads(raw)
            p = self._prepare(cand, mtime)
            if isinstance(p, Problem):
                problems.append(p)
            else:
                ready.setdefault(cand.modality, []).append(p)
        encoding = BatchEncoder(self.encoders, problems, notes)
        items = [it for m in MODALITY_ORDER if m in ready for it in encoding.encode(ready[m])]
        return {"payload": np.array([pickle.dumps((items, problems, notes))], dtype=object)}

    def _prepare(self, cand: Candidate, mtime: float) -> Prepared | Problem:
        """Hash and decode one file within the budgets; its Problem when it fails (as the local engine)."""
        def run() -> Prepared:
            size = check_size(cand.path, self.config.max_file_bytes)
            return Prepared(cand, file_sha256(cand.path), size, mtime, decode(cand, self.config, self.audio_sr))

        return per_file(cand, run)


def start_ray(address: str | None) -> Any:
    """``ray`` connected to ``address`` (a cluster), or to a Ray started on this machine when None."""
    try:
        import ray  # lazy: large, optional (requirements-scale.txt)
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install -r requirements-scale.txt (CROSSMODAL_ENGINE=local "
                        "or --engine local indexes without it).") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(),) if p)}})
        except Exception as exc:
            raise UserError(f"Cannot start or reach Ray at {address or 'this machine'} ({exc}). Check --ray-address "
                            "(CROSSMODAL_RAY_ADDRESS), e.g. ray://head:10001 or auto.") from None
    return ray


def index_paths_ray(
    collection: Store,
    encoders: EncoderSet,
    paths: Sequence[Path],
    config: Config,
    on_progress: ProgressFn | None = None,
    overrides: dict[str, Encoder] | None = None,
    actors: int | None = None,
) -> IndexReport:
    """Index files and folders into ``collection`` on Ray (see the module docstring); the same report as the
    local engine. ``actors``: size of the actor pool (default: one per CPU of the cluster, at most 8)."""
    t0 = time.perf_counter()
    found = discover([Path(p) for p in paths], max_caption_chars=config.max_caption_chars,
                     max_manifest_bytes=config.max_manifest_bytes)
    report = IndexReport(problems=list(found.problems), ignored=[str(p) for p in found.ignored])
    cands = sorted(found.candidates, key=lambda c: MODALITY_ORDER.index(c.modality))  # stable
    known: dict[str, list[Item]] = {}
    tasks = []
    for c in cands:
        try:
            st = os.stat(c.path)
        except OSError as exc:
            report.problems.append(Problem(str(c.path), f"cannot read the file ({exc.strerror or exc})"))
            continue
        known[str(c.path)] = collection.find_by_path(str(c.path))
        if any(it.size == st.st_size and it.mtime == st.st_mtime for it in known[str(c.path)]):
            report.unchanged.append(str(c.path))
        else:
            tasks.append({"task": pickle.dumps((c, st.st_mtime))})
    done = len(cands) - len(tasks)
    try:
        if tasks:
            done = _run(collection, encoders, config, tasks, report, known, overrides, actors, on_progress, done, len(cands))
    finally:
        collection.flush()
    report.seconds = time.perf_counter() - t0
    return report


def _run(collection: Store, encoders: EncoderSet, config: Config, tasks: list[dict[str, bytes]], report: IndexReport,
         known: dict[str, list[Item]], overrides: dict[str, Encoder] | None, actors: int | None,
         on_progress: ProgressFn | None, done: int, total: int) -> int:
    """Map the tasks through the actor pool and commit each returned batch; returns files done."""
    ray = start_ray(config.ray_address)
    resources = ray.cluster_resources()
    pool = actors or max(1, min(8, int(resources.get("CPU", 1))))
    ds = ray.data.from_items(tasks, override_num_blocks=max(1, min(len(tasks) // config.batch_size, 4 * pool)))
    ds = ds.map_batches(EncodeActor, fn_constructor_args=(encoders.preset, config, overrides), batch_size=config.batch_size,
                        batch_format="numpy", concurrency=pool, num_gpus=1 if resources.get("GPU") else 0)
    seen: set[str] = set()
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for payload in out["payload"]:
            items, problems, notes = pickle.loads(payload)
            report.problems.extend(problems)
            report.notes.extend(notes)
            fresh = []
            for it in items:
                if it.sha256 in seen or collection.find_by_hash(it.sha256) is not None:
                    report.duplicates.append(it.path)
                else:
                    seen.add(it.sha256)
                    fresh.append(it)
            stale: list[int] = []
            for it, item_id in zip(fresh, collection.add(fresh)):
                if item_id < 0:
                    report.duplicates.append(it.path)
                    continue
                report.added.append(item_id)
                stale.extend(old.id for old in known.pop(it.path, []))  # a changed file replaces its old version
            if stale:
                report.replaced.extend(collection.remove(stale))
            done += len(items) + len(problems)
            if on_progress and items:
                on_progress(done, total, Path(items[-1].path).name)
    return done


__all__ = ["EncodeActor", "index_paths_ray", "start_ray"]
