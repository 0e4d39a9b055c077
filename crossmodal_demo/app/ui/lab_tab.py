"""The Fusion lab and Evaluate tabs: components wired to AppService.lab / .evaluate, plus plain presentation helpers.

Endpoints ``/lab`` and ``/evaluate`` return one JSON document as text (see :mod:`.ui` for why text);
private follow-up steps turn it into the side-by-side table, the contributions table, the 2-D map,
the metrics table and chart, the qrels problems and the CSV / JSON downloads. No fusion or metric
is computed here: :mod:`.lab` and :mod:`.evaluate` do that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from crossmodal_demo.app.service import LAB_METHODS, MAX_LAB_K, AppService, evaluation_rows
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, method_names
from crossmodal_demo.analysis.lab import lab_table, movement_tag
from crossmodal_demo.retrieval.search import TARGETS

EVAL_HEADERS = ["row", "kind", "n", "R@1", "R@5", "R@10", "MRR", "nDCG@10", "p vs best single (nDCG@10)"]
PROBLEM_HEADERS = ["line", "problem"]
PAIR_HEADERS = ["query → target", "queries", "best single", "best fused", "verdict"]
EXPLAIN_PROMPT = "Click a cell of a fused column above to see what each source adds to its score."


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


def eval_frame(doc: dict[str, Any] | None) -> pd.DataFrame:
    """The metrics table: row, kind, queries answered, R@1/5/10, MRR, nDCG@10, p-value vs the best single (★ = that row)."""
    rows = []
    for r in evaluation_rows(doc or {}):
        name, kind, n, *metrics, p, significant, best = r
        note = "★ best single" if best else ("–" if p == "" else f"{p:.3f}{' *' if significant else ''}")
        rows.append([name, kind, n, *(f"{m:.3f}" for m in metrics), note])
    return pd.DataFrame(rows, columns=EVAL_HEADERS)


def pairs_frame(doc: dict[str, Any] | None) -> pd.DataFrame:
    """Per query type (e.g. text->audio): best single, best fused (with nDCG@10) and who wins."""
    rows = []
    for p in (doc or {}).get("by_pair", []):
        res = {r["name"]: r["metrics"].get("ndcg@10", 0.0) for r in p["results"]}
        verdict = {"tie": "tie", "single": "single source wins", "fused": "fusion wins"}[p["winner_kind"]]
        fused = f"{p['best_fused']} {res[p['best_fused']]:.3f}" if p.get("best_fused") else "–"
        rows.append([p["pair"], p["queries"], f"{p['best_single']} {res[p['best_single']]:.3f}", fused, verdict])
    return pd.DataFrame(rows, columns=PAIR_HEADERS)


def eval_summary(doc: dict[str, Any] | None) -> str:
    """One paragraph: which file, how many queries, what was skipped, how to read the p-values."""
    if not doc:
        return ""
    which = "the shipped demo benchmark" if doc.get("benchmark") == "demo" else f"`{doc.get('qrels_name', doc.get('qrels'))}`"
    text = f"**{doc['queries']} queries** from {which} on collection `{doc['collection']}`."
    if doc.get("problems"):
        text += f" **{len(doc['problems'])} qrels line(s) skipped** — see the problems below; the other lines ran."
    if doc.get("excluded_query_items"):
        text += f" {doc['excluded_query_items']} query file(s) are items themselves and were left out of their own rankings."
    return text + (
        f"\n\nn = queries a row could rank at all (the others score 0). p = {doc['stat_test']} on nDCG@10 against the best "
        f"single source, paired over queries; * = significant at p < {doc['max_p']}."
    )


def eval_figure(doc: dict[str, Any] | None) -> Any:
    """Grouped horizontal bars per row (source / method): nDCG@10 and R@1."""
    from matplotlib.figure import Figure

    results = (doc or {}).get("results", [])
    fig = Figure(figsize=(7.5, max(2.2, 0.42 * len(results) + 1.0)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    names = [("★ " if r.get("best_single") else "") + r["name"] + (" (fused)" if r["kind"] == "fused" else "") for r in results]
    ys = list(range(len(results)))[::-1]
    h = 0.38
    for off, metric, color in ((h / 2, "ndcg@10", "#3b6fd4"), (-h / 2, "recall@1", "#e08a1e")):
        vals = [r["metrics"].get(metric, 0.0) for r in results]
        ax.barh([y + off for y in ys], vals, height=h, color=color, label={"ndcg@10": "nDCG@10", "recall@1": "R@1"}[metric])
        for y, v in zip(ys, vals):
            ax.text(v + 0.01, y + off, f"{v:.2f}", va="center", fontsize=7)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("score (higher is better)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.set_title("nDCG@10 and R@1 per source and fusion method", fontsize=10, pad=22)
    return fig


# ------------------------------------------------------------------------------------------ the tabs


def add_lab_tabs(service: AppService, demo: gr.Blocks) -> None:
    """Add the Fusion lab and Evaluate tabs (call inside ``gr.Tabs()`` of :func:`ui.build_demo`)."""
    from crossmodal_demo.app.ui.main import BROWSE, PRIVATE, SEARCH_CONCURRENCY, dumps, loads, user_errors

    try:
        sources0 = service.lab_sources("image")
    except Exception:  # no collection yet: filled when the tab is opened
        sources0 = []
    # The server checks a CheckboxGroup's input against its choices as built, so API callers may name any
    # source a preset can have; opening the tab narrows the browser's list to the active collection's sources.
    every_source = list(dict.fromkeys(sources0 + service.all_source_names()))
    methods_all = method_names()

    with gr.Tab("Fusion lab", id="lab") as lab_tab:
        gr.Markdown(
            "Rank one query by **each source alone** (the query's vector against the items' content or caption vectors) "
            "and by **fusion methods** side by side. Fused cells show the rank movement against the baseline source: "
            "▲ moved up, ▼ moved down, *new* = the baseline did not rank it."
        )
        with gr.Row():
            with gr.Column(scale=3):
                lab_text = gr.Textbox(label="Type a query", placeholder="e.g. a cup of coffee", elem_id="lab-text")
                with gr.Row():
                    lab_image = gr.Image(label="…or an image", sources=["upload", "webcam", "clipboard"], type="filepath", height=170)
                    lab_audio = gr.Audio(label="…or an audio clip", sources=["upload", "microphone"], type="filepath")
                with gr.Row():
                    extra_text = gr.Textbox(label="Add a text term (query arithmetic)", placeholder="e.g. at night", scale=3)
                    extra_weight = gr.Slider(-1, 1, value=0.5, step=0.05, label="its weight (negative subtracts)", scale=2)
            with gr.Column(scale=2):
                lab_target = gr.Radio(list(TARGETS), value="image", label="Find")
                lab_sources = gr.CheckboxGroup(every_source, value=sources0, label="Sources", elem_id="lab-sources")
                lab_methods = gr.CheckboxGroup(methods_all, value=list(LAB_METHODS), label="Fusion methods", elem_id="lab-methods")
                with gr.Row():
                    lab_k = gr.Slider(1, MAX_LAB_K, value=8, step=1, label="k (rows)", scale=1)
                    lab_weights = gr.Textbox(label="wsum weights (optional)", placeholder="text/caption=2, text/content=1", scale=2)
                lab_btn = gr.Button("Run the lab", variant="primary", elem_id="lab-button")
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

    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown(
            "Score every single source and fusion method on labelled queries: recall@1/5/10, MRR and nDCG@10 (ranx), with a "
            "paired test against the best single source. Upload a qrels file — JSONL, one query a line, e.g. "
            '`{"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}` (or `"image"` / `"audio"` with a '
            "server path; `relevant` a list or a `{name: grade}` map), or CSV with the same columns. Bad lines are listed; the rest still run."
        )
        with gr.Row():
            with gr.Column(scale=3):
                qrels = gr.File(file_types=[".jsonl", ".csv"], label="Qrels file (JSONL or CSV)", elem_id="qrels-file")
                with gr.Row():
                    eval_btn = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button")
                    demo_btn = gr.Button("Use the demo benchmark", elem_id="demo-benchmark-button")
                gr.Markdown(
                    "_The demo benchmark (38 queries, used when no file is uploaded) labels items of the **demo** collection: "
                    "it is only meaningful there. On your own collection, upload your own qrels._"
                )
            eval_methods = gr.CheckboxGroup(methods_all, value=list(DEFAULT_METHODS), label="Fusion methods", scale=2)
        eval_md = gr.Markdown(elem_id="eval-summary")
        eval_df = gr.Dataframe(headers=EVAL_HEADERS, label="Results", interactive=False, wrap=True, elem_id="eval-table")
        with gr.Row():
            csv_btn = gr.DownloadButton("Download CSV", visible=False, size="md")
            json_btn = gr.DownloadButton("Download JSON", visible=False, size="md")
        problems_df = gr.Dataframe(headers=PROBLEM_HEADERS, label="Qrels lines skipped", visible=False, interactive=False, wrap=True,
                                   column_widths=["7%", "93%"], elem_id="eval-problems")
        with gr.Row(equal_height=False):
            eval_plot = gr.Plot(show_label=False, scale=1, elem_id="eval-plot")
            pairs_df = gr.Dataframe(headers=PAIR_HEADERS, label="By query type (nDCG@10)", interactive=False, wrap=True, scale=1)
        with gr.Accordion("Evaluation as JSON (what the /evaluate API returns)", open=False):
            eval_json = gr.Code(language="json", label="evaluation", interactive=False)

    # ---------------------------------------------------------------- named endpoints
    @user_errors
    def lab(
        text: str, image: str | None, audio: str | None, target: str, sources: list[str], methods: list[str], k: float,
        weights: str, extra_text: str, extra_weight: float,
    ) -> str:
        """Rank one query by each source and each fusion method side by side; returns the lab document as JSON text."""
        return dumps(service.lab(text=text, image=image, audio=audio, target=target, sources=sources, methods=methods, k=int(k),
                                 weights=weights, extra_text=extra_text, extra_weight=extra_weight))

    @user_errors
    def evaluate(qrels: str | None, methods: list[str], progress: gr.Progress = gr.Progress()) -> str:
        """Score sources and fusion methods on a qrels file (none: the demo benchmark, demo collection only); returns JSON text."""
        progress(0, desc="loading the qrels and the models…")
        doc = service.evaluate(qrels, methods, progress=lambda d, t, desc: progress((d, t), desc=desc, unit="queries"))
        return dumps(doc)

    # ---------------------------------------------------------------- private display steps
    def show_lab(text: str) -> tuple[str, pd.DataFrame, str, pd.DataFrame, Any]:
        res = loads(text)
        first = next((c["name"] for c in (res or {}).get("columns", []) if c["kind"] == "fused"), None)
        explain = f"Contributions to **{first}** (click a fused cell above for another method or one item)." if first else "No fusion method ticked."
        return lab_summary(res, service.fusion_warm), lab_frame(res), explain, contributions_frame(res, first), lab_map_figure(res)

    def select_cell(text: str, evt: gr.SelectData) -> tuple[str, pd.DataFrame]:
        res = loads(text) or {}
        cols = res.get("columns", [])
        row, col = (evt.index if isinstance(evt.index, (list, tuple)) else (None, None))
        if col is None or not 1 <= col <= len(cols) or cols[col - 1]["kind"] != "fused":
            first = next((c["name"] for c in cols if c["kind"] == "fused"), None)
            return "That is a single source; click a fused column to see what each source adds.", contributions_frame(res, first)
        name = cols[col - 1]["name"]
        return f"Contributions to **{name}**, rank {row + 1}.", contributions_frame(res, name, row + 1)

    def refresh_sources(target: str, current: list[str]) -> Any:
        try:
            names = service.lab_sources(target)
        except Exception:
            names = []
        kept = [s for s in (current or []) if s in names]
        return gr.CheckboxGroup(choices=names, value=kept or names)

    def show_eval(text: str) -> tuple[Any, ...]:
        doc = loads(text) or {}
        files = service.export_evaluation(doc)
        probs = [[p["line"] or "file", p["message"]] for p in doc.get("problems", [])]
        return (
            eval_summary(doc), eval_frame(doc), eval_figure(doc), pairs_frame(doc),
            gr.Dataframe(value=pd.DataFrame(probs, columns=PROBLEM_HEADERS), visible=bool(probs)),
            gr.DownloadButton(value=files["csv"], visible=True), gr.DownloadButton(value=files["json"], visible=True),
        )

    # ---------------------------------------------------------------- wiring
    lab_text.input(None, [lab_text, lab_image, lab_audio], [lab_image, lab_audio], js="(t, i, a) => t ? [null, null] : [i, a]")
    lab_image.input(None, [lab_image, lab_text, lab_audio], [lab_text, lab_audio], js="(i, t, a) => i ? ['', null] : [t, a]")
    lab_audio.input(None, [lab_audio, lab_text, lab_image], [lab_text, lab_image], js="(a, t, i) => a ? ['', null] : [t, i]")
    gr.on(
        [lab_btn.click, lab_text.submit], lab,
        [lab_text, lab_image, lab_audio, lab_target, lab_sources, lab_methods, lab_k, lab_weights, extra_text, extra_weight], lab_json,
        api_name="lab", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY, show_progress_on=[lab_md],
    ).success(show_lab, lab_json, [lab_md, lab_df, explain_md, contrib_df, lab_map], api_visibility="private", **BROWSE)
    lab_df.select(select_cell, lab_json, [explain_md, contrib_df], **PRIVATE)
    gr.on([lab_target.change, lab_tab.select], refresh_sources, [lab_target, lab_sources], lab_sources, **PRIVATE)

    eval_outputs = [eval_md, eval_df, eval_plot, pairs_df, problems_df, csv_btn, json_btn]
    ev: dict[str, Any] = {"concurrency_id": "evaluate", "concurrency_limit": 1, "show_progress_on": [eval_md]}
    eval_btn.click(evaluate, [qrels, eval_methods], eval_json, api_name="evaluate", **ev).success(
        show_eval, eval_json, eval_outputs, api_visibility="private", **BROWSE
    )
    demo_btn.click(lambda: None, None, qrels, **PRIVATE).then(
        evaluate, [qrels, eval_methods], eval_json, api_name="_evaluate_demo", api_visibility="private", **ev
    ).success(show_eval, eval_json, eval_outputs, api_visibility="private", **BROWSE)


__all__ = [
    "add_lab_tabs", "contributions_frame", "eval_figure", "eval_frame", "eval_summary", "lab_frame", "lab_map_figure",
    "lab_summary", "movement_tag", "pairs_frame",
]
