"""The Gradio app: one ``gr.Blocks`` over an :class:`AppService`, tabs wired to plain functions.

Every action is an event with a named API endpoint — ``/search``, ``/index_uploads``, ``/list_items``,
``/delete``, ``/status``, ``/lab``, ``/evaluate``; ``/create_collection`` and ``/switch_collection``
in local mode, ``/set_scope`` in public mode, ``/index_folder`` with ``--allow-folder-indexing`` —
returning one JSON document as text. Each visitor's choices and results live in a ``gr.State``
(server-side); their workspace is deleted when they leave (``demo.unload``) or their state expires.
One plain route, ``/crossmodal/item/...``, serves an item's file (or ``?size=thumb`` preview) by a signed
link: a hit's ``url``, the result pictures and players. While models load or the demo builds, a timer
polls the status so the Search button says "Loading models…" and a toast says when all is ready.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import HTTPException
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from gradio import utils

from crossmodal_demo.app.lab_actions import warm_up_fusion
from crossmodal_demo.app.lab_view import LAB_CSS
from crossmodal_demo.app.results import RESULTS_CSS
from crossmodal_demo.app.serving import ITEM_ROUTE
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, WRITE, action, banner_details, banner_label, dumps
from crossmodal_demo.app.ui.evaluate_tab import build_evaluate_tab
from crossmodal_demo.app.ui.lab_tab import build_lab_tab
from crossmodal_demo.app.ui.library_tab import build_library_tab
from crossmodal_demo.app.ui.search_tab import build_search_tab, search_button, status_line
from crossmodal_demo.app.ui.status_tab import build_status_tab, status_markdown
from crossmodal_demo.app.visitors import Visitor

PACKAGE_DIR = Path(__file__).resolve().parents[2]
# Phones (≤ 640 px): tighter page, shorter title, smaller result cards (tables scroll sideways with their first column pinned).
PAGE_CSS = RESULTS_CSS + LAB_CSS + """
#banner {margin: 0;}
#title h2 {margin: 0;}
#title small {font-weight: normal; font-size: 0.6em; color: var(--body-text-color-subdued);}
#status-line {font-size: 0.9em; min-height: 1.2em;}
#status-line p {margin: 0;}
#examples-row {align-items: center; gap: 6px; flex-wrap: wrap;}
#examples-row > * {flex: 0 1 auto !important; min-width: 0 !important;}
#demo-strip {font-size: 0.9em; color: var(--body-text-color-subdued);}
.result-row {align-items: center; gap: 4px;}
@media (max-width: 640px) {
  .gradio-container {padding: 4px !important;}
  #title h2 {font-size: 1.2em;}
  #title small {display: none;}
  #query-row {flex-wrap: nowrap !important;}
  #query-row > div:first-child {min-width: 0 !important;}
}
"""


def blocked_paths(service: AppService) -> list[str]:
    """What Gradio must never serve, whatever a handler returns: the collections folder (served files are
    copies the app makes by item id), the package's source, and the working folder (unless Gradio's own
    upload cache lives there)."""
    out = [str(Path(service.config.indexes_dir).resolve()), str(PACKAGE_DIR)]
    cwd, uploads = os.path.realpath(os.getcwd()), os.path.realpath(utils.get_upload_folder())
    if not uploads.startswith(cwd + os.sep) and not (os.path.realpath(os.path.dirname(uploads)) + os.sep).startswith(cwd + os.sep):
        out.append(cwd)
    return out


def item_routes(service: AppService) -> list[APIRoute]:
    """The one extra route: ``GET /crossmodal/item/{kind}/{name}/{id}/{sig}`` serves an item's file by a signed link
    (a hit's ``url``); anything the server did not issue, or whose item is gone, is a 404."""

    def item(kind: str, name: str, item_id: str, sig: str, size: str = "") -> FileResponse:
        found = service.open_link(kind, name, item_id, sig, preview=size == "thumb")
        if found is None:
            raise HTTPException(status_code=404, detail="No such item (the link is wrong, or the item was deleted).")
        path, filename = found
        return FileResponse(path, filename=filename, headers={"Cache-Control": "private, max-age=3600"})

    return [APIRoute(ITEM_ROUTE + "/{kind}/{name}/{item_id}/{sig}", item, methods=["GET"], include_in_schema=False)]


def launch_options(service: AppService) -> dict[str, Any]:
    """``launch()`` keyword arguments: upload size limit, nothing allowed beyond Gradio's cache, blocked paths,
    the item-link route and the page's CSS."""
    cfg = service.config
    return {"max_file_size": cfg.max_file_bytes, "allowed_paths": [], "blocked_paths": blocked_paths(service),
            "server_name": cfg.host, "server_port": cfg.port, "share": cfg.share,
            "app_kwargs": {"routes": item_routes(service)}, "css": PAGE_CSS}


def build_ui(service: AppService) -> gr.Blocks:
    """The Blocks app over ``service`` (launch with ``.launch(**launch_options(service))``)."""
    cfg = service.config
    st0 = service.status(Visitor())
    if service.fusion_warm == "idle" and service.models.state == "idle":
        warm_up_fusion(service)  # no warm start asked for: ranx compiles numba kernels (~12 s) in the background now
    cache_every = max(60, min(600, cfg.gradio_cache_seconds // 2))
    with gr.Blocks(title="crossmodal_demo — search photos, sounds and notes together", delete_cache=(cache_every, cfg.gradio_cache_seconds)) as demo:
        visitor = gr.State(Visitor(), time_to_live=cfg.workspace_ttl, delete_callback=lambda v: service.workspaces.remove(v.session))
        gr.Markdown("## crossmodal_demo <small>· search photos, voice messages, sounds and notes with words, a picture or a clip</small>", elem_id="title")
        with gr.Accordion(banner_label(st0) or "About", open=False, visible=bool(banner_label(st0)), elem_id="banner"):
            gr.Markdown(banner_details(st0))
        timer = gr.Timer(1.0, active=_busy(st0))
        with gr.Tabs():
            search = build_search_tab(service, visitor)
            lib = build_library_tab(service, visitor)
            build_lab_tab(service, visitor)
            build_evaluate_tab(service, visitor)
            status = build_status_tab(service)

        @action
        def status_api(visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
            """Mode, what you search, preset, encoders, counts, your workspace quota and the demo build."""
            return dumps(service.status(visitor)), visitor

        @action
        def show_status(visitor: Visitor, request: gr.Request) -> tuple[Any, ...]:
            st = service.status(visitor)
            busy = _busy(st)
            if busy:
                visitor.saw_loading = True
            elif visitor.saw_loading and not visitor.told_ready:
                visitor.told_ready = True
                gr.Info(f"Ready: {st['counts']['total']} items in {st['collection']}. Try an example under the search box.", duration=6)
            out: list[Any] = [status_line(st), search_button(st), status_markdown(st), gr.Timer(active=busy), visitor]
            if lib["coll_dd"] is not None:
                out.append(gr.Dropdown(choices=st["collections"], value=service.active_name(visitor)))
            return tuple(out)

        status_outputs = [search["line"], search["button"], status["md"], timer, visitor] + ([lib["coll_dd"]] if lib["coll_dd"] is not None else [])
        refresh_items = (lib["list_items"], [lib["modality"], visitor], [lib["items_json"], visitor])

        def after(dep: Any) -> None:
            dep.then(show_status, visitor, status_outputs, **PRIVATE, **BROWSE).then(*refresh_items, **PRIVATE, **BROWSE).then(
                lib["show_items"], visitor, [lib["items_gallery"], lib["items_df"]], **PRIVATE, **BROWSE)

        after(demo.load(status_api, visitor, [status["json"], visitor], api_name="status", **BROWSE))
        timer.tick(show_status, visitor, status_outputs, **PRIVATE, **BROWSE)
        status["tab"].select(status_api, visitor, [status["json"], visitor], **PRIVATE, **BROWSE).then(show_status, visitor, status_outputs, **PRIVATE, **BROWSE)
        if "create" in lib:
            btn, name, create_fn = lib["create"]
            dd, switch_fn = lib["switch"]
            after(btn.click(create_fn, [name, visitor], [status["json"], visitor], api_name="create_collection", **WRITE))
            after(dd.input(switch_fn, [dd, visitor], [status["json"], visitor], api_name="switch_collection", **BROWSE))

        def leave(request: gr.Request) -> None:
            service.workspaces.remove(request.session_hash or "")  # the visitor closed the tab: their uploads go

        demo.unload(leave)
    demo.queue(max_size=cfg.queue_max_size, default_concurrency_limit=4)
    return demo


def _busy(st: dict[str, Any]) -> bool:
    """Models loading or the demo building: the page polls the status until both are done."""
    return st["demo_build"]["state"] == "building" or (st.get("models") or {}).get("state") == "loading"


__all__ = ["PAGE_CSS", "blocked_paths", "build_ui", "item_routes", "launch_options"]
