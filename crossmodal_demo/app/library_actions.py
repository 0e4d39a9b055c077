"""Library actions for one visitor: index uploads, index a folder (local mode), list items, delete items.

Uploads are files Gradio received (temporary paths it created); each upload is recorded as a
batch before any file is written (see :mod:`.upload_batches`), copied into the target collection's
``media/`` within the budget (workspace quota in public mode, per-upload limits in local mode),
indexed, and the files that did not become items are removed. Deletions in public mode touch only
the visitor's own workspace.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossmodal_demo.app import upload_batches
from crossmodal_demo.app.jobs import stoppable
from crossmodal_demo.app.search_actions import display_path
from crossmodal_demo.app.thumbnails import drop_thumbnails
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.errors import MediaError, UserError
from crossmodal_demo.index.pipeline import ProgressFn, index_paths
from crossmodal_demo.ingest.discover import Problem
from crossmodal_demo.ingest.uploads import UploadBudget, copy_upload, extract_zip
from crossmodal_demo.retrieval.library import Library

MODALITY_FILTERS = ("all", "image", "audio", "text")
BROWSE_LIMIT = 300


def _budget(service: Any, ref: Any) -> UploadBudget:
    """What this upload may add: the workspace's remaining quota (public; full quota before it exists) or the per-upload limits."""
    cfg = service.config
    if service.public:
        files_left, bytes_left = service.workspaces.remaining(ref) if ref else (cfg.workspace_max_files, cfg.workspace_max_bytes)
        return UploadBudget(bytes_left, files_left, "CROSSMODAL_WORKSPACE_MAX_BYTES", "CROSSMODAL_WORKSPACE_MAX_FILES")
    return UploadBudget(cfg.max_upload_bytes, cfg.max_upload_files, "CROSSMODAL_MAX_UPLOAD_BYTES", "CROSSMODAL_MAX_UPLOAD_FILES")


def _check_quota_first(service: Any, paths: list[Path], budget: UploadBudget) -> None:
    """Refuse an upload that cannot fit before copying anything (zips are checked again while extracting)."""
    if len(paths) > budget.files_left:
        where = "your workspace" if service.public else "one upload"
        raise UserError(
            f"{len(paths):,} files are more than {where} can take now ({max(0, budget.files_left):,} more; "
            f"{budget.files_setting}). Upload fewer files."
        )
    total = sum(p.stat().st_size for p in paths if p.is_file())
    if total > budget.bytes_left:
        raise UserError(
            f"These files hold {total / 1e6:,.1f} MB; only {max(0, budget.bytes_left) / 1e6:,.1f} MB more fit "
            f"({budget.bytes_setting}). Upload fewer or smaller files."
        )


def index_uploads(service: Any, visitor: Visitor, files: Sequence[Any] | None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Copy uploaded files (and .zip contents) into the visitor's writable collection and index them.

    Returns the index report plus ``collection``, ``counts`` and ``ignored`` (every file not taken,
    with the reason). Files that did not become items are not kept.
    """
    paths = [Path(str(f)) for f in (files or []) if f]
    if not paths:
        raise UserError("Choose one or more files (or a .zip) to upload first.")
    existing = service.workspaces.get(visitor.session) if service.public else None
    _check_quota_first(service, paths, _budget(service, existing))  # before a workspace is even made
    label, ref = service.write_ref(visitor, create=True)
    budget = _budget(service, ref)
    problems: list[Problem] = []
    ignored: list[dict[str, str]] = []
    if progress and service.write_lock.locked():
        progress(0, 1, "waiting for another indexing job (e.g. the demo build) to finish…")
    with service.jobs.track(visitor.session) as flag, service.write_lock, service.library(ref, create=True) as lib:
        progress = stoppable(progress, flag, "indexing")
        batch = upload_batches.begin(lib.collection)
        try:
            for p in paths:
                if p.suffix.lower() == ".zip":
                    res = extract_zip(p, batch.folder / p.stem, budget, service.config.max_file_bytes, max_manifest_bytes=service.config.max_manifest_bytes,
                                      max_text_bytes=service.config.max_text_bytes)
                    problems += res.problems
                    ignored += [{"path": i.path, "reason": i.reason} for i in res.ignored]
                else:
                    try:
                        copy_upload(p, batch.folder, budget, service.config.max_file_bytes, max_manifest_bytes=service.config.max_manifest_bytes,
                                    max_text_bytes=service.config.max_text_bytes)
                    except MediaError as exc:  # this file only; a budget overrun (UserError) stops the upload
                        problems.append(Problem(p.name, str(exc)))
                _forget_upload(p)
            out = _index(service, lib, [batch.folder], progress, display_root=batch.folder)
        finally:
            upload_batches.finish(lib.collection, batch)
        out["errors"] = [{"path": p.path, "reason": p.reason} for p in problems] + out["errors"]
        out["ignored"] = ignored + [{"path": i, "reason": "not an image, audio or text file"} for i in out["ignored"]]
        out.update(collection=label, counts=lib.collection.counts())
    return out


def _forget_upload(p: Path) -> None:
    """Delete Gradio's temporary copy once ours is made (uploads must not pile up in its cache)."""
    try:
        p.unlink(missing_ok=True)
    except OSError:
        pass  # someone else's file or already gone: nothing to clean


def index_folder(service: Any, visitor: Visitor, folder: str, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Index a server folder in place — local mode only, and only under ``--allow-folder-indexing`` roots."""
    if service.public or not service.config.folder_roots:
        raise UserError("Indexing server folders is off. Start the app with --allow-folder-indexing DIR [DIR ...] (not in public mode).")
    raw = str(folder or "").strip()
    if not raw:
        raise UserError("Type the path of a folder on the server first.")
    path = Path(os.path.realpath(os.path.expanduser(raw)))
    roots = [Path(os.path.realpath(r)) for r in service.config.folder_roots]
    if not any(path == r or path.is_relative_to(r) for r in roots):
        raise UserError(f"Only folders under {', '.join(map(str, roots))} may be indexed (--allow-folder-indexing).")
    if not path.is_dir():
        raise UserError(f"No such folder on the server: {path}")
    label, ref = service.write_ref(visitor)
    with service.jobs.track(visitor.session) as flag, service.write_lock, service.library(ref, create=True) as lib:
        out = _index(service, lib, [path], stoppable(progress, flag, "indexing"))
        out["ignored"] = [{"path": i, "reason": "not an image, audio or text file"} for i in out["ignored"]]
        out.update(collection=label, counts=lib.collection.counts())
    return out


def _index(service: Any, lib: Library, paths: list[Path], progress: ProgressFn | None, display_root: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()

    def on_progress(done: int, total: int, name: str) -> None:
        rate = done / max(time.perf_counter() - t0, 1e-6)
        if progress:
            progress(done, total, f"{done}/{total} files · {rate:.1f} items/s · {name}")

    report = index_paths(lib.collection, lib.encoders, paths, lib.config, on_progress=on_progress)
    out = report.to_json()
    if display_root is not None:  # names relative to the upload, not our batch folder
        prefix = str(display_root.resolve()) + os.sep

        def short(p: str) -> str:
            return p[len(prefix):] if p.startswith(prefix) else Path(p).name

        out["errors"] = [{"path": short(e["path"]), "reason": e["reason"]} for e in out["errors"]]
        out["notes"] = [{"path": short(n["path"]), "note": n["note"]} for n in out.get("notes", [])]
        out["ignored"] = [short(str(p)) for p in out.get("ignored", [])]
    return out


def list_items(service: Any, visitor: Visitor, modality: str = "all", limit: int = BROWSE_LIMIT) -> dict[str, Any]:
    """Items of the visitor's collection (newest first, at most ``limit``); kept in ``visitor.last_items``."""
    if modality not in MODALITY_FILTERS:
        raise UserError(f"Unknown modality {str(modality)[:40]!r}. Choose one of: {', '.join(MODALITY_FILTERS)}.")
    label, ref = service.browse_ref(visitor)
    with service.library(ref) as lib:
        items = lib.collection.items(None if modality == "all" else modality)[::-1][:limit]
        docs = []
        for it in items:
            d = it.to_json()
            d.update(path=display_path(lib.collection, it.path, service.public), name=Path(it.path).name, collection=label)
            d.pop("root", None)
            d.pop("relpath", None)
            docs.append(d)
        counts = lib.collection.counts()
    visitor.last_items = docs
    visitor.last_refs = {**visitor.last_refs, label: ref}
    return {"collection": label, "items": docs, "counts": counts, "writable": not service.public or label != service.default_collection}


def parse_ids(ids: str | Sequence[Any] | None) -> list[int]:
    """``"3, 5 8"`` or a list → item ids; anything that is not a whole number is refused."""
    refs = [r for r in re.split(r"[\s,;]+", ids) if r] if isinstance(ids, str) else [str(i) for i in ids or []]
    if not refs:
        raise UserError("Select items (click their thumbnails) or type their ids first.")
    bad = [r[:20] for r in refs if not r.isdigit() or len(r) > 18]
    if bad:
        raise UserError(f"Item ids are whole numbers; not understood: {', '.join(bad[:5])}.")
    return sorted({int(r) for r in refs})


def describe_delete(service: Any, visitor: Visitor, ids: str | Sequence[Any] | None) -> dict[str, Any]:
    """What deleting ``ids`` would remove (for the confirmation), without deleting anything."""
    wanted = parse_ids(ids)
    label, ref = service.write_ref(visitor, create=False)
    with service.library(ref) as lib:
        found = lib.collection.get_many(wanted)
    return {"collection": label, "items": [{"id": i, "name": Path(found[i].path).name} for i in wanted if i in found],
            "unknown": [i for i in wanted if i not in found]}


def delete(service: Any, visitor: Visitor, ids: str | Sequence[Any] | None) -> dict[str, Any]:
    """Delete items of the visitor's writable collection; their copies in its ``media/`` go too.

    Returns ``{"collection", "removed": [ids], "names": [...], "unknown": [ids], "counts"}``.
    """
    wanted = parse_ids(ids)
    label, ref = service.write_ref(visitor, create=False)
    with service.write_lock, service.library(ref) as lib:
        coll = lib.collection
        found = coll.get_many(wanted)
        removed = coll.remove(list(found))
        media = os.path.realpath(coll.root / "media") + os.sep
        for i in removed:
            it = found[i]
            if os.path.realpath(it.path).startswith(media) and not coll.find_by_path(it.path):
                Path(it.path).unlink(missing_ok=True)
            drop_thumbnails(coll, i)
        counts = coll.counts()
    unknown = [i for i in wanted if i not in found]
    if not removed:
        raise UserError(f"Nothing deleted: no item with id {', '.join(map(str, unknown[:10]))} in {label}.")
    visitor.pending_delete = []
    return {"collection": label, "removed": removed, "names": [Path(found[i].path).name for i in removed], "unknown": unknown, "counts": counts}


__all__ = ["BROWSE_LIMIT", "MODALITY_FILTERS", "delete", "describe_delete", "index_folder", "index_uploads", "list_items", "parse_ids"]
