"""The Gradio app: components wired to :class:`~crossmodal_demo.app.service.AppService` methods.

No search or indexing logic lives here. Every action is an event with a named API endpoint —
``/search``, ``/index_uploads``, ``/list_items``, ``/delete``, ``/create_collection``,
``/switch_collection``, ``/status``, ``/lab``, ``/evaluate`` (and ``/index_folder`` when folder indexing is
allowed; the Fusion lab and Evaluate tabs live in :mod:`.ui_lab`) — that
returns one JSON document *as text* (``json.loads`` it). Text, not a ``gr.JSON`` dict, because
gradio_client 2.x treats every dict with a ``"path"`` key in an output as a file to download, which
would replace each search hit with a downloaded copy of the file. A private follow-up step turns the
JSON into galleries, players and cards. User mistakes become ``gr.Error`` with the service's message.

Concurrency groups: ``search`` (search and lab, 2 at a time; encoders serialise their own model calls),
``evaluate`` (one at a time), ``write`` (indexing, delete, create: one at a time; the service also holds a
write lock), ``browse`` (cheap reads). Building the app starts ranx's kernel warm-up in a background thread.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable, TypeVar

import gradio as gr
import pandas as pd

from crossmodal_demo.app.service import MAX_K, MODALITY_FILTERS, UPLOAD_EXTS, AppService
from crossmodal_demo.errors import UserError
from crossmodal_demo.retrieval.search import TARGETS

F = TypeVar("F", bound=Callable[..., Any])
ITEM_HEADERS = ["id", "type", "name", "caption / transcript", "note"]
ERROR_HEADERS = ["file", "problem"]
SEARCH_CONCURRENCY = 2
PRIVATE: dict[str, Any] = {"api_visibility": "private", "queue": False}
BROWSE: dict[str, Any] = {"concurrency_id": "browse", "concurrency_limit": 4}
WRITE: dict[str, Any] = {"concurrency_id": "write", "concurrency_limit": 1}


def user_errors(fn: F) -> F:
    """Run ``fn``; a :class:`UserError` (incl. MediaError) becomes ``gr.Error`` with its message, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper  # type: ignore[return-value]


def launch_options(service: AppService) -> dict[str, Any]:
    """``launch()`` keyword arguments that depend on the service: upload size limit and servable folders.

    ``allowed_paths`` holds only collections' media (and thumbnail) folders; the app extends the list
    in place when a collection is created, switched to or indexed, so new media can be shown.
    """
    return {"max_file_size": service.config.max_file_bytes, "allowed_paths": service.media_roots()}


def dumps(doc: Any) -> str:
    """A JSON document as the text an endpoint returns."""
    return json.dumps(doc, ensure_ascii=False, indent=2)


def loads(text: str | None) -> Any:
    """Parse an endpoint's JSON text (None / '' → None)."""
    return json.loads(text) if text else None


# ------------------------------------------------------------------------------ presentation helpers


def build_line(st: dict[str, Any]) -> str:
    """One line about the demo build, or ''."""
    b = st["demo_build"]
    if b["state"] == "building":
        return (
            f"⏳ **Building the demo collection** from the media shipped with the app: {b['done']}/{b['total'] or '?'} "
            "files indexed (the first build loads the models and takes about a minute). Search works on what is indexed so far."
        )
    if b["state"] == "failed":
        return f"⚠️ **The demo collection could not be built:** {b['error']}"
    return ""


def banner_markdown(st: dict[str, Any]) -> str:
    """Top-of-page banner: the stand-in notice (and why this preset), and the demo build progress."""
    why = f"_Why this preset: {st['preset_reason']}._" if st.get("banner") and st.get("preset_reason") else ""
    return "\n\n".join(p for p in (st.get("banner"), why, build_line(st)) if p)


def status_markdown(st: dict[str, Any]) -> str:
    """The Status tab: preset, encoders, device, collection counts, demo build."""
    c = st["counts"]
    lines = [
        f"**Preset:** `{st['preset']}` — {st['preset_description']}" + (f" ({st['preset_reason']})" if st.get("preset_reason") else ""),
        "",
        f"**Device:** {st['device']} (CUDA available: {'yes' if st['cuda_available'] else 'no'})",
        "",
        f"**Active collection:** `{st['collection']}` — {c['image']} images, {c['audio']} audio clips, {c['text']} texts "
        f"({c['total']} items). All collections: {', '.join(st['collections']) or '—'} (in `{st['indexes_dir']}`)",
        "",
        "| encoder | takes | space | dim | model | loaded |",
        "|---|---|---|---|---|---|",
    ]
    for e in st["encoders"]:
        lines.append(f"| {e['name']} | {e['modality']} | {e['space']} | {e['dim']} | `{e['model_id']}` | {'yes' if e['loaded'] else 'not yet'} |")
    lines += ["", "Models load on first use, so the first search or upload takes a few seconds longer."]
    if build_line(st):
        lines += ["", build_line(st)]
    return "\n".join(lines)


def md_escape(text: str) -> str:
    """``text`` with Markdown syntax escaped, so user content shows as typed."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~>])", r"\\\1", text)


def card_markdown(card: dict[str, Any]) -> str:
    """A ranked text/audio result: rank, score, the space that ranked it, and what it says."""
    head = f"**#{card['rank']}** · score **{card['score']:.3f}** · {card['space']}/{card['channel']} · {card['modality']} · `{card['name']}`"
    body = []
    if card.get("excerpt"):
        body.append(f"> {md_escape(card['excerpt'])}")
    if card.get("transcript"):
        body.append(f"Transcript: “{md_escape(card['transcript'])}”")
    if card.get("caption"):
        body.append(f"Caption: {md_escape(card['caption'])}")
    if card["modality"] == "audio" and not card.get("transcript") and not card.get("caption"):
        body.append("(no speech, no caption)")
    return "\n\n".join([head, *body])


def items_table(items: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows for the browse table."""
    rows = [[it["id"], it["modality"], it["name"], it.get("caption") or it.get("transcript") or "", it.get("note") or ""] for it in items]
    return pd.DataFrame(rows, columns=ITEM_HEADERS)


def report_markdown(rep: dict[str, Any] | None) -> str:
    """Summary of an indexing report."""
    if not rep:
        return ""
    text = (
        f"Added **{rep['added']}** item(s) to `{rep['collection']}` in {rep['seconds']:.1f} s "
        f"({rep['items_per_second']:.2f} items/s); {rep['duplicates']} already indexed; {len(rep['errors'])} not indexed."
    )
    if rep.get("ignored"):
        text += f" Ignored {len(rep['ignored'])} file(s) of other types."
    return text + "".join(f"\n\n- note: `{n['path']}`: {n['note']}" for n in rep.get("notes", []))


# ------------------------------------------------------------------------------------------ the app


def build_demo(service: AppService) -> gr.Blocks:
    """The Blocks app over ``service`` (launch it with ``.launch(**launch_options(service))``)."""
    from crossmodal_demo.app.ui.lab_tab import add_lab_tabs

    st0 = service.status()
    service.warm_up_fusion()  # ranx compiles numba kernels (~12 s) in the background; serving never waits

    with gr.Blocks(title="crossmodal_demo — search photos, sounds and notes together") as demo:
        gr.Markdown("# crossmodal_demo\nSearch photos, speech, sounds and notes with text, an image or an audio clip.")
        banner = gr.Markdown(banner_markdown(st0), elem_id="banner")
        timer = gr.Timer(2.0, active=st0["demo_build"]["state"] == "building")

        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    with gr.Column(scale=3):
                        text = gr.Textbox(label="Type a query", placeholder="e.g. a cat, rain tomorrow, a rocket launch", elem_id="query-text")
                        with gr.Row():
                            image = gr.Image(label="…or use an image", sources=["upload", "webcam", "clipboard"], type="filepath", height=200)
                            audio = gr.Audio(label="…or an audio clip", sources=["upload", "microphone"], type="filepath")
                    with gr.Column(scale=1):
                        target = gr.Radio(list(TARGETS), value="image", label="Find")
                        k = gr.Slider(1, MAX_K, value=8, step=1, label="How many results (k)")
                        search_btn = gr.Button("Search", variant="primary", elem_id="search-button")
                summary = gr.Markdown(elem_id="results-summary")
                gallery = gr.Gallery(label="Images", columns=4, fit_columns=False, object_fit="contain", visible=False, elem_id="results-gallery")
                cards_state = gr.State([])

                @gr.render(inputs=cards_state)
                def render_cards(cards: list[dict[str, Any]]) -> None:
                    for card in cards:
                        with gr.Group(elem_classes=["result-card"]):
                            gr.Markdown(card_markdown(card), padding=True)
                            if card["modality"] == "audio" and card.get("exists"):
                                gr.Audio(value=card["path"], show_label=False, interactive=False)

                with gr.Accordion("Result as JSON (what the /search API returns)", open=False):
                    result_json = gr.Code(language="json", label="search result", interactive=False)

            with gr.Tab("Library", id="library"):
                with gr.Row():
                    coll_dd = gr.Dropdown(st0["collections"], value=st0["collection"], label="Collection", allow_custom_value=True, scale=2)  # the service validates
                    switch_btn = gr.Button("Switch", scale=1)
                    new_name = gr.Textbox(label="New collection", placeholder="letters, digits, _ - .", scale=2)
                    create_btn = gr.Button("Create", scale=1)
                upload = gr.File(file_count="multiple", file_types=UPLOAD_EXTS, label="Add files: images, audio, .txt/.md notes, captions.csv — or a .zip of them")
                index_btn = gr.Button("Index the uploaded files", variant="primary", elem_id="index-button")
                if service.allow_folder_indexing:
                    with gr.Row():
                        folder = gr.Textbox(label="…or index a folder on the server, in place", scale=4)
                        folder_btn = gr.Button("Index folder", scale=1)
                index_summary = gr.Markdown(elem_id="index-summary")
                errors_df = gr.Dataframe(headers=ERROR_HEADERS, label="Files not indexed", visible=False, interactive=False, wrap=True)
                with gr.Accordion("Index report as JSON", open=False):
                    index_json = gr.Code(language="json", label="index report", interactive=False)

                gr.Markdown("### Browse")
                with gr.Row():
                    modality = gr.Radio(list(MODALITY_FILTERS), value="all", label="Show", scale=3)
                    refresh_btn = gr.Button("Refresh", scale=1)
                items_gallery = gr.Gallery(label="Items (click to select for deletion)", columns=6, fit_columns=False, height="auto", allow_preview=False, elem_id="items-gallery")
                items_df = gr.Dataframe(headers=ITEM_HEADERS, interactive=False, wrap=True, label="Items")
                with gr.Row():
                    selected = gr.Textbox(label="Item ids to delete (click thumbnails, or type ids)", scale=4, elem_id="delete-ids")
                    delete_btn = gr.Button("Delete", variant="stop", scale=1)
                with gr.Accordion("Items and last deletion as JSON", open=False):
                    items_json = gr.Code(language="json", label="items", interactive=False)
                    delete_json = gr.Code(language="json", label="last deletion", interactive=False)

            add_lab_tabs(service, demo)

            with gr.Tab("Status", id="status") as status_tab:
                status_md = gr.Markdown(status_markdown(st0))
                with gr.Accordion("Status as JSON", open=False):
                    status_json = gr.Code(dumps(st0), language="json", label="status", interactive=False)

        # ---------------------------------------------------------------- named endpoints (actions)
        def sync_paths() -> None:
            for p in service.media_roots():
                if p not in demo.allowed_paths:
                    demo.allowed_paths.append(p)

        def report_progress(progress: gr.Progress) -> Callable[[int, int, str], None]:
            return lambda done, total, desc: progress((done, total), desc=desc, unit="files")

        @user_errors
        def search(text: str, image: str | None, audio: str | None, target: str, k: float) -> str:
            """Search the active collection with exactly one of text / image / audio; returns {"query", "hits"} as JSON text."""
            return dumps(service.search(text=text, image=image, audio=audio, target=target, k=int(k)))

        @user_errors
        def index_uploads(files: list[str] | None, progress: gr.Progress = gr.Progress()) -> str:
            """Copy the uploaded files (or .zip contents) into the active collection and index them; returns the report."""
            rep = service.index_uploads(files, progress=report_progress(progress))
            sync_paths()
            return dumps(rep)

        @user_errors
        def index_folder(folder: str, progress: gr.Progress = gr.Progress()) -> str:
            """Index a folder on the server in place (needs --allow-folder-indexing); returns the report."""
            rep = service.index_folder(folder, progress=report_progress(progress))
            sync_paths()
            return dumps(rep)

        @user_errors
        def list_items(modality: str) -> str:
            """Items of the active collection (newest first) with thumbnail paths."""
            return dumps(service.list_items(modality))

        @user_errors
        def delete(ids: str) -> str:
            """Delete items of the active collection by id ("3, 5 8")."""
            return dumps(service.delete(ids))

        @user_errors
        def create_collection(name: str) -> str:
            """Create an empty collection and make it active; returns the status."""
            st = service.create_collection(name)
            sync_paths()
            return dumps(st)

        @user_errors
        def switch_collection(name: str) -> str:
            """Make another collection active; returns the status."""
            st = service.switch_collection(name)
            sync_paths()
            return dumps(st)

        @user_errors
        def status() -> str:
            """Preset, encoders, device, collections, counts and demo-build progress."""
            return dumps(service.status())

        # ---------------------------------------------------------------- private display steps
        def show_results(result: str) -> tuple[str, Any, list[dict[str, Any]]]:
            view = service.result_view(loads(result))
            return view["summary"], gr.Gallery(value=view["gallery"], visible=bool(view["gallery"])), view["cards"]

        def show_report(report: str) -> tuple[str, Any, None]:
            rep = loads(report) or {}
            errs = [[e["path"], e["reason"]] for e in rep.get("errors", [])]
            return report_markdown(rep), gr.Dataframe(value=pd.DataFrame(errs, columns=ERROR_HEADERS), visible=bool(errs)), None

        def show_items(items_text: str) -> tuple[list[tuple[str, str]], pd.DataFrame]:
            items = loads(items_text) or []
            return [(it["thumbnail"], f"#{it['id']} {it['name']}") for it in items], items_table(items)

        def select_item(items_text: str, current: str, evt: gr.SelectData) -> str:
            items = loads(items_text) or []
            ids = [s for s in (current or "").replace(",", " ").split() if s]
            if evt.index is not None and 0 <= evt.index < len(items) and str(items[evt.index]["id"]) not in ids:
                ids.append(str(items[evt.index]["id"]))
            return ", ".join(ids)

        def show_status(status_text: str) -> tuple[str, str, Any, Any]:
            st = loads(status_text)
            building = st["demo_build"]["state"] == "building"
            return banner_markdown(st), status_markdown(st), gr.Dropdown(choices=st["collections"], value=st["collection"]), gr.Timer(active=building)

        def tick() -> str:
            st = service.status()
            if st["demo_build"]["state"] != "building":
                sync_paths()
            return dumps(st)

        def refresh(dep: Any, n: int) -> Any:
            """After a write: reload the item list and the status (private steps)."""
            return dep.then(list_items, modality, items_json, api_name=f"_items_{n}", api_visibility="private", **BROWSE).then(
                status, None, status_json, api_name=f"_status_{n}", api_visibility="private", **BROWSE
            )

        # ---------------------------------------------------------------- wiring
        # A new query in one place clears the others (one query at a time); runs in the browser only.
        text.input(None, [text, image, audio], [image, audio], js="(t, i, a) => t ? [null, null] : [i, a]")
        image.input(None, [image, text, audio], [text, audio], js="(i, t, a) => i ? ['', null] : [t, a]")
        audio.input(None, [audio, text, image], [text, image], js="(a, t, i) => a ? ['', null] : [t, i]")

        gr.on(
            [search_btn.click, text.submit], search, [text, image, audio, target, k], result_json, api_name="search",
            concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY, show_progress_on=[summary],
        ).success(show_results, result_json, [summary, gallery, cards_state], api_visibility="private", **BROWSE)  # queued: a State
        # set by an unqueued event does not trigger @gr.render

        indexed = index_btn.click(index_uploads, upload, index_json, api_name="index_uploads", show_progress_on=[index_summary], **WRITE)
        refresh(indexed.success(show_report, index_json, [index_summary, errors_df, upload], **PRIVATE), 1)
        if service.allow_folder_indexing:
            by_folder = folder_btn.click(index_folder, folder, index_json, api_name="index_folder", show_progress_on=[index_summary], **WRITE)
            refresh(by_folder.success(show_report, index_json, [index_summary, errors_df, upload], **PRIVATE), 2)

        gr.on([modality.change, refresh_btn.click], list_items, modality, items_json, api_name="list_items", **BROWSE)
        items_json.change(show_items, items_json, [items_gallery, items_df], api_visibility="private", **BROWSE)
        items_gallery.select(select_item, [items_json, selected], selected, **PRIVATE)
        refresh(delete_btn.click(delete, selected, delete_json, api_name="delete", **WRITE).success(lambda: "", None, selected, **PRIVATE), 3)
        refresh(create_btn.click(create_collection, new_name, status_json, api_name="create_collection", **WRITE).success(lambda: "", None, new_name, **PRIVATE), 4)
        refresh(switch_btn.click(switch_collection, coll_dd, status_json, api_name="switch_collection", **BROWSE), 5)
        status_json.change(show_status, status_json, [banner, status_md, coll_dd, timer], **PRIVATE)
        demo.load(status, None, status_json, api_name="status", **BROWSE).then(list_items, modality, items_json, api_name="_items_0", api_visibility="private", **BROWSE)
        timer.tick(tick, None, status_json, api_visibility="private", **BROWSE)
        status_tab.select(status, None, status_json, api_name="_status_tab", api_visibility="private", **BROWSE)

    demo.queue(default_concurrency_limit=4)
    return demo


__all__ = ["build_demo", "launch_options", "user_errors", "dumps", "loads", "status_markdown", "card_markdown", "report_markdown"]
