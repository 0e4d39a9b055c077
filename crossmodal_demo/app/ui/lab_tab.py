"""The Fusion lab tab: one query ranked by each single source and each fusion method, side by side.

``/lab`` returns the lab document as JSON text and keeps it in the visitor's state; private steps
build the side-by-side table (thumbnails; ranks or normalised scores), each source's share of a
chosen method's scores and the 2-D map (Plotly) from that server-side copy. No fusion is computed here: :mod:`crossmodal_demo.analysis.lab` does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from crossmodal_demo.analysis.lab import movement_tag
from crossmodal_demo.app import lab_actions
from crossmodal_demo.app.lab_view import METHOD_SETS, VIEWS, lab_html, lab_map, method_set_help
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, SEARCH, action, dumps
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.retrieval.fusion import method_names
from crossmodal_demo.retrieval.search import TARGETS

EVERY_SOURCE = [f"{space}/{channel}" for space in ("clip", "clap", "text") for channel in ("content", "caption")]


# ------------------------------------------------------------------------------ presentation helpers


def contributions_frame(result: dict[str, Any] | None, method: str | None, rank: int | None = None) -> pd.DataFrame:
    """Each source's share of ``method``'s fused scores: rank, item, fused score, movement, then per source
    ``term (share %)``. ``rank`` (1-based) keeps that one hit only."""
    singles = [c["name"] for c in (result or {}).get("columns", []) if c["kind"] == "single"]
    headers = ["rank", "item", "fused score", "vs baseline", *singles]
    col = next((c for c in (result or {}).get("columns", []) if c["kind"] == "fused" and c["name"] == method), None)
    if col is None:
        return pd.DataFrame(columns=headers)
    rows = []
    for h in col["hits"]:
        if rank is not None and h["rank"] != rank:
            continue
        parts = h.get("contributions") or {}
        total = sum(abs(v) for v in parts.values()) or 1.0
        cells = [f"{parts.get(s, 0.0):.4g} ({100 * abs(parts.get(s, 0.0)) / total:.0f}%)" for s in singles]
        rows.append([h["rank"], h.get("name") or h["id"], round(h["score"], 4), movement_tag(h), *cells])
    return pd.DataFrame(rows, columns=headers)


def lab_summary(result: dict[str, Any] | None, warm: str = "ready") -> str:
    """What was asked, which source is the baseline, what each source is, and what was skipped."""
    if not result:
        return ""
    q = result["query"]
    if q.get("terms"):
        parts = []
        for t in q["terms"]:
            what = f"“{t['text']}”" if t.get("text") else Path(str(t.get("image") or t.get("audio") or "the clip")).name
            parts.append(f"{'+' if t['weight'] >= 0 else '−'} {abs(t['weight']):g} × {what}")
        asked = " ".join(parts).lstrip("+ ")
    else:
        asked = f"“{q['text']}”" if q.get("text") else Path(str(q.get("image") or q.get("audio") or "the clip")).name
    lines = [
        (
            f"**{asked}** → {result['target']} in `{result.get('collection', '')}` · top {result['k']} per column · "
            f"baseline (for ▲/▼): **{result['baseline']}**, the source most confident in its top hit"
        )
    ]
    if q.get("transcript") is not None:
        lines.append(f"Heard in the clip: “{q['transcript']}”" if q["transcript"] else "No speech heard in the clip.")
    lines.append("Sources: " + "; ".join(f"`{s['name']}` — {s['description']}" for s in result["sources"]))
    if result.get("skipped_sources"):
        lines.append(f"Skipped (this query is not encoded in their space): {', '.join(result['skipped_sources'])}.")
    if result.get("ignored_weights"):
        lines.append(f"Ignored weights for sources not in this run: {', '.join(result['ignored_weights'])}.")
    if warm == "warming":
        lines.append("_Fusion kernels are still compiling in the background (once per start), so this run was slower._")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------------------ the tab


def build_lab_tab(service: AppService, visitor: gr.State) -> None:
    """Add the Fusion lab tab (call inside ``gr.Tabs()``)."""
    methods_all = method_names()
    sets = {name: [m for m in methods if m in methods_all] for name, (methods, _) in METHOD_SETS.items()}
    with gr.Tab("Fusion lab", id="lab") as lab_tab:
        gr.Markdown("Rank one query by **each source alone** (the query against the items' content, or their captions) and by "
                    "**fusion methods** that combine them, side by side. ▲/▼ = moved up/down against the baseline source; *new* = "
                    "only fusion found it.", elem_id="lab-intro")
        with gr.Row(equal_height=True):
            lab_text = gr.Textbox(label="Query", show_label=False, placeholder="Type a query, e.g. a cup of coffee", max_length=service.config.max_query_chars,
                                  elem_id="lab-text", scale=5, container=False)
            lab_btn = gr.Button("Run the lab", variant="primary", elem_id="lab-button", scale=1, min_width=120)
        with gr.Row():
            lab_target = gr.Radio(list(TARGETS), value="image", label="Find", scale=2, min_width=260)
            lab_set = gr.Radio(list(METHOD_SETS) + ["custom"], value="recommended", label="Fusion methods", scale=3, min_width=300, elem_id="lab-set")
            lab_k = gr.Slider(1, lab_actions.MAX_LAB_K, value=8, step=1, label="Rows", scale=1, min_width=160)
        with gr.Accordion("What the method sets do · all methods and sources", open=False):
            gr.Markdown(method_set_help())
            lab_methods = gr.CheckboxGroup(methods_all, value=sets["recommended"], label="Fusion methods (ticking any makes the set “custom”)", elem_id="lab-methods")
            # The server checks a CheckboxGroup's input against its choices as built: every source any preset can have.
            lab_sources = gr.CheckboxGroup(EVERY_SOURCE, value=None, label="Sources (none ticked = all)", elem_id="lab-sources")
            lab_weights = gr.Textbox(label="Weights for wsum (optional)", placeholder="text/caption=2, text/content=1")
        with gr.Accordion("…or an image or audio clip as the query · query arithmetic", open=False):
            with gr.Row():
                lab_image = gr.Image(label="Image", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=160)
                lab_audio = gr.Audio(label="Audio clip", sources=["upload", "microphone"], type="filepath")
            with gr.Row():
                extra_text = gr.Textbox(label="Add a text term", placeholder="e.g. at night", max_length=service.config.max_query_chars, scale=3)
                extra_weight = gr.Slider(-1, 1, value=0.5, step=0.05, label="its weight (negative subtracts)", scale=2)
        lab_md = gr.Markdown(elem_id="lab-summary")
        lab_view = gr.Radio(list(VIEWS), value="ranks", label="Show", visible=False, elem_id="lab-view")
        lab_table = gr.HTML(elem_id="lab-table", visible=False)
        with gr.Row(equal_height=False, visible=False) as details:
            with gr.Column(scale=3):
                explain = gr.Dropdown(choices=[], label="What each source adds to a fused score", elem_id="lab-explain")
                contrib_df = gr.Dataframe(interactive=False, wrap=False, pinned_columns=2, elem_id="lab-contributions", show_label=False)
            with gr.Column(scale=2):
                map_plot = gr.Plot(show_label=False, elem_id="lab-map")
        with gr.Accordion("Lab result as JSON (what the /lab API returns)", open=False):
            lab_json = gr.Code(language="json", label="lab result", interactive=False)

    @action
    def lab(text: str | None = None, image: str | None = None, audio: str | None = None, target: str = "image", sources: list[str] | None = None,
            methods: list[str] | None = None, k: float = 8, weights: str | None = None, extra_text: str | None = None, extra_weight: float = 0.5,
            visitor: Visitor | None = None, request: gr.Request = None) -> tuple[str, Visitor]:
        """Rank one query by each source and each fusion method side by side; returns the lab document as JSON text."""
        methods = list(lab_actions.LAB_METHODS) if methods is None else methods
        res = lab_actions.lab(service, visitor, text, image, audio, target, sources or None, methods, k, weights, extra_text, extra_weight)
        return dumps(res), visitor

    def table(visitor: Visitor, view: str) -> str:
        res = visitor.last_lab or {}
        ref = visitor.last_refs.get(res.get("collection", ""))
        return lab_html(res, view if view in VIEWS else "ranks", lambda i: f"{service.file_link(ref, i)}?size=thumb" if ref else None)

    @action
    def show_lab(view: str, visitor: Visitor, request: gr.Request) -> tuple[Any, ...]:
        res = visitor.last_lab
        fused = [c["name"] for c in (res or {}).get("columns", []) if c["kind"] == "fused"]
        first = fused[0] if fused else None
        return (lab_summary(res, service.fusion_warm), gr.Radio(visible=True), gr.HTML(table(visitor, view), visible=True),
                gr.Row(visible=True), gr.Dropdown(choices=fused, value=first), contributions_frame(res, first), lab_map(res))

    @action
    def switch_view(view: str, visitor: Visitor, request: gr.Request) -> str:
        return table(visitor, view)

    @action
    def explain_method(method: str, visitor: Visitor, request: gr.Request) -> pd.DataFrame:
        return contributions_frame(visitor.last_lab, method)

    @action
    def refresh_sources(target: str, current: list[str] | None, visitor: Visitor, request: gr.Request) -> Any:
        try:
            names = lab_actions.lab_sources(service, visitor, target)
        except gr.Error:
            names = []
        kept = [s for s in (current or []) if s in names]
        return gr.CheckboxGroup(choices=names, value=kept or names)

    lab_image.input(None, [lab_image, lab_text, lab_audio], [lab_text, lab_audio], js="(i, t, a) => i ? ['', null] : [t, a]")
    lab_audio.input(None, [lab_audio, lab_text, lab_image], [lab_text, lab_image], js="(a, t, i) => a ? ['', null] : [t, i]")
    lab_text.input(None, [lab_text, lab_image, lab_audio], [lab_image, lab_audio], js="(t, i, a) => t ? [null, null] : [i, a]")
    lab_set.input(lambda name: gr.CheckboxGroup(value=sets.get(name, sets["recommended"])) if name in sets else gr.CheckboxGroup(),
                  lab_set, lab_methods, **PRIVATE)
    lab_methods.input(lambda: "custom", None, lab_set, **PRIVATE)
    gr.on(
        [lab_btn.click, lab_text.submit], lab,
        [lab_text, lab_image, lab_audio, lab_target, lab_sources, lab_methods, lab_k, lab_weights, extra_text, extra_weight, visitor],
        [lab_json, visitor], api_name="lab", show_progress_on=[lab_md, lab_btn], **SEARCH,
    ).success(show_lab, [lab_view, visitor], [lab_md, lab_view, lab_table, details, explain, contrib_df, map_plot], **PRIVATE, **BROWSE)
    lab_view.change(switch_view, [lab_view, visitor], lab_table, **PRIVATE)
    explain.input(explain_method, [explain, visitor], contrib_df, **PRIVATE)
    gr.on([lab_target.change, lab_tab.select], refresh_sources, [lab_target, lab_sources, visitor], lab_sources, **PRIVATE, **BROWSE)


__all__ = ["build_lab_tab", "contributions_frame", "lab_summary"]
