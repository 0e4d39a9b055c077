"""The Fusion lab tab: one query ranked by each single source and each fusion method, side by side.

``/lab`` returns the lab document as JSON text and keeps it in the visitor's state; private steps
build the side-by-side table, the contributions of a clicked cell and the 2-D map from that
server-side copy. No fusion is computed here: :mod:`crossmodal_demo.analysis.lab` does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from crossmodal_demo.analysis.lab import lab_table, movement_tag
from crossmodal_demo.app import lab_actions
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, SEARCH, action, dumps
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.retrieval.fusion import method_names
from crossmodal_demo.retrieval.search import TARGETS

EXPLAIN_PROMPT = "Click a cell of a fused column above to see what each source adds to its score."
EVERY_SOURCE = [f"{space}/{channel}" for space in ("clip", "clap", "text") for channel in ("content", "caption")]


# ------------------------------------------------------------------------------ presentation helpers


def column_header(col: dict[str, Any], baseline: str | None) -> str:
    """``text/content ★ baseline``, ``text/caption`` or ``rrf (fused)``."""
    if col["kind"] == "fused":
        return f"{col['name']} (fused)"
    return f"{col['name']} ★ baseline" if col["name"] == baseline else col["name"]


def lab_frame(result: dict[str, Any] | None) -> pd.DataFrame:
    """The side-by-side table: one row per rank, one column per single source and per fused ranking.

    A cell is ``item name · score``; fused cells add the rank movement vs the baseline source (▲2 / ▼1 / = / new).
    """
    if not result:
        return pd.DataFrame(columns=["rank"])
    cols = result["columns"]
    rows = lab_table(result)
    return pd.DataFrame(rows, columns=["rank", *(column_header(c, result.get("baseline")) for c in cols)])


def contributions_frame(result: dict[str, Any] | None, method: str | None, rank: int | None = None) -> pd.DataFrame:
    """Each source's share of ``method``'s fused scores: rank, item, fused score, movement, then per source
    ``term (share %)``. ``rank`` (1-based) keeps that one hit only."""
    singles = [c["name"] for c in (result or {}).get("columns", []) if c["kind"] == "single"]
    headers = ["method", "rank", "item", "fused score", "vs baseline", *singles]
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
        rows.append([col["name"], h["rank"], h.get("name") or h["id"], round(h["score"], 4), movement_tag(h), *cells])
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


def lab_map_figure(result: dict[str, Any] | None) -> Any:
    """Matplotlib figure of the 2-D projection: the query (star) and each result's content and caption points."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    proj = (result or {}).get("projection") or {}
    points = proj.get("points") or []
    styles = {"content": ("o", "#3b6fd4", "content"), "caption": ("^", "#e08a1e", "caption")}
    for channel, (marker, color, label) in styles.items():
        pts = [p for p in points if p["kind"] == "result" and p.get("channel") == channel]
        if pts:
            ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], marker=marker, c=color, s=60, label=f"result ({label})", alpha=0.85)
    for p in points:
        if p["kind"] == "result":
            ax.annotate(p["label"].rsplit(" (", 1)[0], (p["x"], p["y"]), fontsize=9, xytext=(5, 4), textcoords="offset points", color="#333")
    q = [p for p in points if p["kind"] == "query"]
    if q:
        ax.scatter([q[0]["x"]], [q[0]["y"]], marker="*", c="#d62828", s=260, label="query", zorder=5, edgecolors="black", linewidths=0.5)
    method = (proj.get("method") or "").upper() or "no projection (too few points)"
    ax.set_title(f"{method} of the {proj.get('space', '?')} space: query and results", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.18)  # room for the names next to the points
    if points:
        ax.legend(fontsize=8, loc="best")
    return fig




# ------------------------------------------------------------------------------------------ the tab


def build_lab_tab(service: AppService, visitor: gr.State) -> None:
    """Add the Fusion lab tab (call inside ``gr.Tabs()``)."""
    methods_all = method_names()
    with gr.Tab("Fusion lab", id="lab") as lab_tab:
        gr.Markdown(
            "Rank one query by **each source alone** (the query's vector against the items' content or caption vectors) "
            "and by **fusion methods** side by side. Fused cells show the rank movement against the baseline source: "
            "▲ moved up, ▼ moved down, *new* = the baseline did not rank it."
        )
        with gr.Row():
            with gr.Column(scale=3):
                lab_text = gr.Textbox(label="Type a query", placeholder="e.g. a cup of coffee", max_length=service.config.max_query_chars, elem_id="lab-text")
                with gr.Row():
                    lab_image = gr.Image(label="…or an image", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=170)
                    lab_audio = gr.Audio(label="…or an audio clip", sources=["upload", "microphone"], type="filepath")
                with gr.Row():
                    extra_text = gr.Textbox(label="Add a text term (query arithmetic)", placeholder="e.g. at night", max_length=service.config.max_query_chars, scale=3)
                    extra_weight = gr.Slider(-1, 1, value=0.5, step=0.05, label="its weight (negative subtracts)", scale=2)
            with gr.Column(scale=2):
                lab_btn = gr.Button("Run the lab", variant="primary", elem_id="lab-button")
                lab_target = gr.Radio(list(TARGETS), value="image", label="Find")
                # The server checks a CheckboxGroup's input against its choices as built: every source any preset can have.
                lab_sources = gr.CheckboxGroup(EVERY_SOURCE, value=None, label="Sources (none ticked = all)", elem_id="lab-sources")
                lab_methods = gr.CheckboxGroup(methods_all, value=list(lab_actions.LAB_METHODS), label="Fusion methods", elem_id="lab-methods")
                with gr.Row():
                    lab_k = gr.Slider(1, lab_actions.MAX_LAB_K, value=8, step=1, label="k (rows)", scale=1)
                    lab_weights = gr.Textbox(label="wsum weights (optional)", placeholder="text/caption=2, text/content=1", scale=2)
        lab_md = gr.Markdown(elem_id="lab-summary")
        lab_df = gr.Dataframe(label="Side by side (click a fused cell to explain it)", interactive=False, wrap=True, elem_id="lab-table")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                explain_md = gr.Markdown(EXPLAIN_PROMPT)
                contrib_df = gr.Dataframe(label="Each source's share of the fused score", interactive=False, wrap=True, elem_id="lab-contributions")
            with gr.Column(scale=2):
                gr.Markdown("2-D map of the query and the results (closer = more similar in that space)")
                lab_map = gr.Plot(show_label=False, elem_id="lab-map")
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

    @action
    def show_lab(visitor: Visitor, request: gr.Request) -> tuple[str, pd.DataFrame, str, pd.DataFrame, Any]:
        res = visitor.last_lab
        first = next((c["name"] for c in (res or {}).get("columns", []) if c["kind"] == "fused"), None)
        explain = f"Contributions to **{first}** (click a fused cell above for another method or one item)." if first else "No fusion method ticked."
        return lab_summary(res, service.fusion_warm), lab_frame(res), explain, contributions_frame(res, first), lab_map_figure(res)

    @action
    def select_cell(visitor: Visitor, evt: gr.SelectData, request: gr.Request) -> tuple[str, pd.DataFrame]:
        res = visitor.last_lab or {}
        cols = res.get("columns", [])
        index = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (None, None)
        row, col = index
        if not isinstance(col, int) or not isinstance(row, int) or not 1 <= col <= len(cols) or cols[col - 1]["kind"] != "fused":
            first = next((c["name"] for c in cols if c["kind"] == "fused"), None)
            return "That is a single source; click a fused column to see what each source adds.", contributions_frame(res, first)
        name = cols[col - 1]["name"]
        return f"Contributions to **{name}**, rank {row + 1}.", contributions_frame(res, name, row + 1)

    @action
    def refresh_sources(target: str, current: list[str] | None, visitor: Visitor, request: gr.Request) -> Any:
        try:
            names = lab_actions.lab_sources(service, visitor, target)
        except gr.Error:
            names = []
        kept = [s for s in (current or []) if s in names]
        return gr.CheckboxGroup(choices=names, value=kept or names)

    lab_text.input(None, [lab_text, lab_image, lab_audio], [lab_image, lab_audio], js="(t, i, a) => t ? [null, null] : [i, a]")
    lab_image.input(None, [lab_image, lab_text, lab_audio], [lab_text, lab_audio], js="(i, t, a) => i ? ['', null] : [t, a]")
    lab_audio.input(None, [lab_audio, lab_text, lab_image], [lab_text, lab_image], js="(a, t, i) => a ? ['', null] : [t, i]")
    gr.on(
        [lab_btn.click, lab_text.submit], lab,
        [lab_text, lab_image, lab_audio, lab_target, lab_sources, lab_methods, lab_k, lab_weights, extra_text, extra_weight, visitor],
        [lab_json, visitor], api_name="lab", show_progress_on=[lab_md, lab_btn], **SEARCH,
    ).success(show_lab, visitor, [lab_md, lab_df, explain_md, contrib_df, lab_map], **PRIVATE, **BROWSE)
    lab_df.select(select_cell, visitor, [explain_md, contrib_df], **PRIVATE)
    gr.on([lab_target.change, lab_tab.select], refresh_sources, [lab_target, lab_sources, visitor], lab_sources, **PRIVATE, **BROWSE)


__all__ = ["build_lab_tab", "contributions_frame", "lab_frame", "lab_map_figure", "lab_summary"]
