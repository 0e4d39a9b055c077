"""The Library tab: upload and index files, browse items, delete with confirmation, pick or create collections.

Public mode: uploads go to the visitor's private workspace; the demo is read-only. Local mode:
each visitor picks (the dropdown switches at once) or creates a collection for their own session.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from crossmodal_demo.app import library_actions
from crossmodal_demo.app.serving import item_file
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, WRITE, action, dumps, md_escape, progress_fn, served, stop_button
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.ingest.media import AUDIO_EXTS, IMAGE_EXTS, TEXT_EXTS

ITEM_HEADERS = ["id", "type", "name", "caption / transcript", "note"]
ERROR_HEADERS = ["file", "problem"]
UPLOAD_EXTS = sorted(IMAGE_EXTS | AUDIO_EXTS | TEXT_EXTS | {".zip", ".csv", ".jsonl"})


def report_markdown(rep: dict[str, Any] | None) -> str:
    """Summary of an indexing report or a deletion."""
    if not rep:
        return ""
    if "removed" in rep:
        names = ", ".join(f"**{md_escape(n)}**" for n in rep.get("names", [])[:10]) + (" …" if len(rep.get("names", [])) > 10 else "")
        return f"Deleted **{len(rep['removed'])}** item(s) from {rep['collection']}: {names}."
    text = (
        f"Added **{rep['added']}** item(s) to {rep['collection']} in {rep['seconds']:.1f} s "
        f"({rep['items_per_second']:.2f} items/s); {rep['duplicates']} already indexed; {len(rep['errors'])} not indexed."
    )
    if rep.get("ignored"):
        text += f" Ignored {len(rep['ignored'])} file(s) (listed below)."
    return text + "".join(f"\n\n- note: **{md_escape(n['path'])}**: {md_escape(n['note'])}" for n in rep.get("notes", []))


def items_table(items: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows for the browse table."""
    rows = [[it["id"], it["modality"], it["name"], it.get("caption") or it.get("transcript") or "", it.get("note") or ""] for it in items]
    return pd.DataFrame(rows, columns=ITEM_HEADERS)


def build_library_tab(service: AppService, visitor: gr.State) -> dict[str, Any]:
    """Add the Library tab; returns the components other tabs refresh (``status_json``, ``coll_dd``)."""
    public = service.public
    with gr.Tab("Library", id="library"):
        if public:
            gr.Markdown(
                "**Your uploads are private**: only this browser tab sees them, and they are deleted when you leave "
                f"or after {service.config.workspace_ttl / 60:.0f} minutes without use. At most "
                f"{service.config.workspace_max_files} files / {service.config.workspace_max_bytes / 2**20:.0f} MB. "
                "The demo collection is shared and read-only.", elem_id="privacy-note")
            coll_dd = None
        else:
            with gr.Row():
                coll_dd = gr.Dropdown(service.shared_names(), value=service.default_collection, label="Collection (switches at once)", scale=2, elem_id="collection-dropdown", allow_custom_value=True)  # choices grow after build; the service checks the name
                new_name = gr.Textbox(label="New collection", placeholder="letters, digits, _ - .", scale=2)
                create_btn = gr.Button("Create", scale=1)
        upload = gr.File(file_count="multiple", file_types=UPLOAD_EXTS, label="Add files: images, audio, .txt/.md notes, captions.csv — or a .zip of them", elem_id="upload-files", height=150)
        with gr.Row():
            index_btn = gr.Button("Index the uploaded files", variant="primary", elem_id="index-button", scale=1)
            stop_button(service, visitor, "index-stop")
            index_summary = gr.Markdown(elem_id="index-summary")
        folder_allowed = bool(service.config.folder_roots) and not public
        if folder_allowed:
            with gr.Row():
                folder = gr.Textbox(label=f"…or index a folder under {', '.join(map(str, service.config.folder_roots))}, in place", scale=4)
                folder_btn = gr.Button("Index folder", scale=1)
        errors_df = gr.Dataframe(headers=ERROR_HEADERS, label="Files not indexed or ignored", visible=False, interactive=False, wrap=True)
        with gr.Accordion("Index report as JSON", open=False):
            index_json = gr.Code(language="json", label="index report", interactive=False)

        gr.Markdown("### Browse")
        with gr.Row():
            modality = gr.Radio(list(library_actions.MODALITY_FILTERS), value="all", label="Show", scale=3)
            refresh_btn = gr.Button("Refresh", scale=1)
        with gr.Row(equal_height=True):
            selected = gr.Textbox(label="Item ids to delete (click thumbnails below, or type ids)", scale=4, elem_id="delete-ids")
            delete_btn = gr.Button("Delete…", variant="stop", scale=1, min_width=110, elem_id="delete-button")
        with gr.Row(visible=False, equal_height=True) as confirm_row:
            confirm_md = gr.Markdown(elem_id="delete-confirm-text")
            confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="delete-confirm", scale=0, min_width=120)
            cancel_btn = gr.Button("Cancel", elem_id="delete-cancel", scale=0, min_width=100)
        delete_md = gr.Markdown(elem_id="delete-result")
        items_gallery = gr.Gallery(label="Items (click to select for deletion)", columns=6, fit_columns=False, height=420, allow_preview=False, elem_id="items-gallery")
        with gr.Accordion("Items as a table", open=False):
            items_df = gr.Dataframe(headers=ITEM_HEADERS, interactive=False, wrap=False, pinned_columns=1, label="Items", max_height=420, elem_id="items-df")
        with gr.Accordion("Items and last deletion as JSON", open=False):
            items_json = gr.Code(language="json", label="items", interactive=False)
            delete_json = gr.Code(language="json", label="last deletion", interactive=False)

    # ---------------------------------------------------------------- named endpoints
    @action
    def index_uploads(files: list[str] | None, visitor: Visitor, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[str, Visitor]:
        """Copy the uploaded files (or .zip contents) into your collection (public: your private workspace) and index them."""
        rep = library_actions.index_uploads(service, visitor, files, progress=progress_fn(progress))
        visitor.last_report = rep
        return dumps(rep), visitor

    @action
    def list_items(modality: str, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
        """Items of the collection you browse (newest first)."""
        return dumps(library_actions.list_items(service, visitor, modality)), visitor

    @action
    def delete(ids: str, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
        """Delete items by id ("3, 5 8") from your collection (public: only your own uploads)."""
        rep = library_actions.delete(service, visitor, ids)
        visitor.last_report = rep
        return dumps(rep), visitor

    # ---------------------------------------------------------------- private display steps
    @action
    def show_report(visitor: Visitor, request: gr.Request) -> tuple[str, Any, None]:
        rep = visitor.last_report or {}
        rows = [[e["path"], e["reason"]] for e in rep.get("errors", [])] + [[i["path"], f"ignored: {i['reason']}"] for i in rep.get("ignored", [])]
        return report_markdown(rep), gr.Dataframe(value=pd.DataFrame(rows, columns=ERROR_HEADERS), visible=bool(rows)), None

    @action
    def show_items(visitor: Visitor, request: gr.Request) -> tuple[list[tuple[str, str]], pd.DataFrame]:
        shown = []
        for it in visitor.last_items:
            ref = visitor.last_refs.get(it["collection"])
            if ref is None:
                continue
            with service.library(ref) as lib:
                path = item_file(lib.collection, it["id"], service.config, prefer="preview")
            if path is not None:
                shown.append((served(path), f"#{it['id']} {it['name']}"))
        return shown, items_table(visitor.last_items)

    @action
    def select_item(current: str, visitor: Visitor, evt: gr.SelectData, request: gr.Request) -> str:
        ids = [s for s in (current or "").replace(",", " ").split() if s][:500]
        index = evt.index if isinstance(evt.index, int) else None
        if index is not None and 0 <= index < len(visitor.last_items) and str(visitor.last_items[index]["id"]) not in ids:
            ids.append(str(visitor.last_items[index]["id"]))
        return ", ".join(ids)

    @action
    def ask_delete(ids: str, visitor: Visitor, request: gr.Request) -> tuple[str, Any]:
        plan = library_actions.describe_delete(service, visitor, ids)
        if not plan["items"]:
            raise gr.Error(f"No item with those ids in {plan['collection']}.", print_exception=False)
        names = ", ".join(f"**{md_escape(i['name'])}**" for i in plan["items"][:10]) + (" …" if len(plan["items"]) > 10 else "")
        return f"Delete **{len(plan['items'])}** item(s) from {plan['collection']}: {names}? This cannot be undone.", gr.Row(visible=True)

    # ---------------------------------------------------------------- wiring
    def refresh(dep: Any, n: int) -> Any:
        """After a write: reload the item list (private)."""
        return dep.then(list_items, [modality, visitor], [items_json, visitor], api_name=f"_items_{n}", **PRIVATE, **BROWSE).then(
            show_items, visitor, [items_gallery, items_df], **PRIVATE, **BROWSE)

    indexed = index_btn.click(index_uploads, [upload, visitor], [index_json, visitor], api_name="index_uploads", show_progress_on=[index_summary, index_btn], **WRITE)
    refresh(indexed.success(show_report, visitor, [index_summary, errors_df, upload], **PRIVATE), 1)
    if folder_allowed:
        @action
        def index_folder(path: str, visitor: Visitor, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[str, Visitor]:
            """Index a server folder in place (only under the --allow-folder-indexing roots; local mode)."""
            rep = library_actions.index_folder(service, visitor, path, progress=progress_fn(progress))
            visitor.last_report = rep
            return dumps(rep), visitor

        by_folder = folder_btn.click(index_folder, [folder, visitor], [index_json, visitor], api_name="index_folder", show_progress_on=[index_summary], **WRITE)
        refresh(by_folder.success(show_report, visitor, [index_summary, errors_df, upload], **PRIVATE), 2)

    listed = gr.on([modality.change, refresh_btn.click], list_items, [modality, visitor], [items_json, visitor], api_name="list_items", **BROWSE)
    listed.success(show_items, visitor, [items_gallery, items_df], **PRIVATE, **BROWSE)
    items_gallery.select(select_item, [selected, visitor], selected, **PRIVATE)
    delete_btn.click(ask_delete, [selected, visitor], [confirm_md, confirm_row], **PRIVATE, **BROWSE)
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, **PRIVATE)
    deleted = confirm_btn.click(delete, [selected, visitor], [delete_json, visitor], api_name="delete", **WRITE)
    refresh(deleted.success(lambda v: (report_markdown(v.last_report), gr.Row(visible=False), ""), visitor, [delete_md, confirm_row, selected], **PRIVATE), 3)

    out: dict[str, Any] = {"modality": modality, "items_json": items_json, "items_gallery": items_gallery, "items_df": items_df,
                           "list_items": list_items, "show_items": show_items, "coll_dd": coll_dd}
    if not public:
        @action
        def create_collection(name: str, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
            """Create an empty collection and make it yours for this session; returns your status."""
            service.create_collection(visitor, name)
            return dumps(service.status(visitor)), visitor

        @action
        def switch_collection(name: str, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
            """Work on another collection in this session (others are not affected); returns your status."""
            service.switch_collection(visitor, name)
            return dumps(service.status(visitor)), visitor

        out.update(create=(create_btn, new_name, create_collection), switch=(coll_dd, switch_collection))
    return out


__all__ = ["ITEM_HEADERS", "UPLOAD_EXTS", "build_library_tab", "items_table", "report_markdown"]
