"""The Gradio app: one ``gr.Blocks`` over an :class:`AppService`, tabs wired to plain functions.

Every action is an event with a named API endpoint — ``/search``, ``/index_uploads``, ``/list_items``,
``/delete``, ``/status``, ``/lab``, ``/evaluate``; ``/create_collection`` and ``/switch_collection``
in local mode, ``/set_scope`` in public mode, ``/index_folder`` with ``--allow-folder-indexing`` —
returning one JSON document as text. Each visitor's choices and results live in a ``gr.State``
(server-side); their workspace is deleted when they leave (``demo.unload``) or their state expires.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils

from crossmodal_demo.app.lab_actions import warm_up_fusion
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, WRITE, action, banner_markdown, dumps
from crossmodal_demo.app.ui.evaluate_tab import build_evaluate_tab
from crossmodal_demo.app.ui.lab_tab import build_lab_tab
from crossmodal_demo.app.ui.library_tab import build_library_tab
from crossmodal_demo.app.ui.search_tab import build_search_tab
from crossmodal_demo.app.ui.status_tab import build_status_tab, status_markdown
from crossmodal_demo.app.visitors import Visitor

PACKAGE_DIR = Path(__file__).resolve().parents[2]


def blocked_paths(service: AppService) -> list[str]:
    """What Gradio must never serve, whatever a handler returns: the collections folder (served files are
    copies the app makes by item id), the package's source, and the working folder (unless Gradio's own
    upload cache lives there)."""
    out = [str(Path(service.config.indexes_dir).resolve()), str(PACKAGE_DIR)]
    cwd, uploads = os.path.realpath(os.getcwd()), os.path.realpath(utils.get_upload_folder())
    if not uploads.startswith(cwd + os.sep) and not (os.path.realpath(os.path.dirname(uploads)) + os.sep).startswith(cwd + os.sep):
        out.append(cwd)
    return out


def launch_options(service: AppService) -> dict[str, Any]:
    """``launch()`` keyword arguments: upload size limit, nothing allowed beyond Gradio's cache, blocked paths."""
    cfg = service.config
    return {"max_file_size": cfg.max_file_bytes, "allowed_paths": [], "blocked_paths": blocked_paths(service),
            "server_name": cfg.host, "server_port": cfg.port, "share": cfg.share}


def build_ui(service: AppService) -> gr.Blocks:
    """The Blocks app over ``service`` (launch with ``.launch(**launch_options(service))``)."""
    cfg = service.config
    st0 = service.status(Visitor())
    if service.fusion_warm == "idle":
        warm_up_fusion(service)  # ranx compiles numba kernels (~12 s) in the background; serving never waits
    cache_every = max(60, min(600, cfg.gradio_cache_seconds // 2))
    with gr.Blocks(title="crossmodal_demo — search photos, sounds and notes together", delete_cache=(cache_every, cfg.gradio_cache_seconds)) as demo:
        visitor = gr.State(Visitor(), time_to_live=cfg.workspace_ttl, delete_callback=lambda v: service.workspaces.remove(v.session))
        gr.Markdown("# crossmodal_demo\nSearch photos, speech, sounds and notes with text, an image or an audio clip.")
        banner = gr.Markdown(banner_markdown(st0), elem_id="banner")
        timer = gr.Timer(2.0, active=st0["demo_build"]["state"] == "building")
        with gr.Tabs():
            build_search_tab(service, visitor)
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
            building = st["demo_build"]["state"] == "building"
            out: list[Any] = [banner_markdown(st), status_markdown(st), gr.Timer(active=building)]
            if lib["coll_dd"] is not None:
                out.append(gr.Dropdown(choices=st["collections"], value=service.active_name(visitor)))
            return tuple(out)

        status_outputs = [banner, status["md"], timer] + ([lib["coll_dd"]] if lib["coll_dd"] is not None else [])
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


__all__ = ["blocked_paths", "build_ui", "launch_options"]
