"""Helpers shared by the tabs: one wrapper for every event, JSON text, served copies, Markdown pieces.

Every event is an API anyone can call with any value, so every handler goes through :func:`action`:
it takes the visitor's server-side state (``gr.State``; Gradio never takes it from the client),
stamps it with the caller's session id, turns a :class:`UserError` into ``gr.Error`` (no traceback)
and hands the state back so Gradio renews its time to live.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import processing_utils, route_utils, utils

from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.errors import UserError

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
BROWSE: dict[str, Any] = {"concurrency_id": "browse", "concurrency_limit": 4}
WRITE: dict[str, Any] = {"concurrency_id": "write", "concurrency_limit": 1}
SEARCH: dict[str, Any] = {"concurrency_id": "search", "concurrency_limit": 2}


def action(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler ``fn(*inputs, visitor, request)``: session stamped, UserError → gr.Error."""

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs).arguments  # Gradio passes the request positionally
        request, visitor = bound.get("request"), bound.get("visitor")
        if isinstance(visitor, Visitor) and request is not None:
            visitor.session = getattr(request, "session_hash", None) or visitor.session
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


def stop_button(service: Any, visitor: gr.State, elem_id: str) -> gr.Button:
    """A "Stop" button that stops the visitor's own running indexing or evaluation at its next step.

    Its own concurrency group, so it runs while the job it stops holds the write or evaluate slot.
    """
    btn = gr.Button("Stop", variant="stop", size="sm", elem_id=elem_id, scale=0, min_width=80)

    @action
    def stop(visitor: Visitor, request: gr.Request) -> None:
        n = service.jobs.cancel(visitor.session)
        gr.Info("Stopping at the next step; what is done is kept." if n else "Nothing of yours is running.")

    btn.click(stop, visitor, None, concurrency_id="stop", concurrency_limit=None, **PRIVATE)
    return btn


def dumps(doc: Any) -> str:
    """A JSON document as the text an endpoint returns (gradio_client would treat a dict with "path" as a file)."""
    return json.dumps(doc, ensure_ascii=False, indent=2)


def served(path: str | Path | None) -> str | None:
    """A copy of a file the service chose (by item id, inside a collection) in Gradio's cache, for a component."""
    if path is None:
        return None
    return processing_utils.save_file_to_cache(path, utils.get_upload_folder())


def md_escape(text: str) -> str:
    """``text`` with Markdown syntax escaped, so user content shows as typed."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~>])", r"\\\1", text)


def progress_fn(progress: gr.Progress, unit: str = "files") -> Callable[[int, int, str], None]:
    """(done, total, description) callbacks → a Gradio progress bar."""
    return lambda done, total, desc: progress((done, total), desc=desc, unit=unit)


def base_url(request: Any) -> str:
    """The app's public root URL as the caller reached it (proxy headers honoured), or "" when unknown."""
    raw = getattr(request, "request", None)
    if raw is None:
        return ""
    try:
        return route_utils.get_root_url(raw, route_utils.get_api_call_path(raw), getattr(getattr(raw, "app", None), "root_path", None) or None)
    except (ValueError, AttributeError, KeyError):
        return ""


def banner_label(st: dict[str, Any]) -> str:
    """The one-line banner (the label of a folded box holding the details); "" when there is nothing to say."""
    parts = []
    if st.get("mode") == "public":
        parts.append("Public demo — your uploads are private and go when you leave")
    if st.get("preset") == "offline":
        parts.append("Offline mode — smaller models, no downloads. Why?")
    return " · ".join(parts)


def banner_details(st: dict[str, Any]) -> str:
    """What the banner folds away: the mode and the preset in full."""
    lines = []
    if st.get("mode") == "public":
        lines.append("**Public demo.** The demo collection is shared and read-only. What you upload goes to a private workspace "
                     "that only this browser tab sees; it is deleted when you leave or after a while without use.")
    if st.get("preset") == "offline":
        lines.append("**Offline mode.** This app runs models that ship inside Python packages, so it needs no model downloads: "
                     "pictures are described by an ImageNet classifier (it knows 1,000 kinds of objects and animals, not scenes "
                     "or people), speech is transcribed, and everything is compared as text. Expect good results for objects and "
                     "spoken words, weaker ones for scenes and non-speech sounds (found by their captions).")
        if st.get("preset_reason"):
            lines.append(f"Why this preset: {md_escape(str(st['preset_reason']))}")
    return "\n\n".join(lines)


__all__ = ["BROWSE", "PRIVATE", "SEARCH", "WRITE", "action", "banner_details", "banner_label", "base_url", "dumps", "md_escape", "progress_fn", "served"]
