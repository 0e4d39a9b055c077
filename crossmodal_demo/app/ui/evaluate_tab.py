"""The Evaluate tab: score every single source and fusion method on labelled queries (ranx metrics).

``/evaluate`` takes an uploaded qrels file — .jsonl / .csv, or a .zip holding one with its query
files — or none (the shipped demo benchmark), returns the evaluation as JSON text and keeps it in
the visitor's state; private steps draw the table, chart, problems and downloads from that copy.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from crossmodal_demo.app import lab_actions
from crossmodal_demo.app.lab_actions import evaluation_rows
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, action, dumps, progress_fn, stop_button
from crossmodal_demo.app.visitors import Visitor
from crossmodal_demo.retrieval.fusion import DEFAULT_METHODS, method_names

EVAL_HEADERS = ["row", "kind", "n", "R@1", "R@5", "R@10", "MRR", "nDCG@10", "p vs best single (nDCG@10)"]
PROBLEM_HEADERS = ["line", "problem"]
PAIR_HEADERS = ["query → target", "queries", "best single", "best fused", "verdict"]


# ------------------------------------------------------------------------------ presentation helpers


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




# ------------------------------------------------------------------------------------------ the tab


def build_evaluate_tab(service: AppService, visitor: gr.State) -> None:
    """Add the Evaluate tab (call inside ``gr.Tabs()``)."""
    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown(
            "Score every single source and fusion method on labelled queries: recall@1/5/10, MRR and nDCG@10 (ranx), with a "
            "paired test against the best single source. Upload a qrels file — JSONL, one query a line, e.g. "
            '`{"id": "q1", "text": "a lion", "target": "image", "relevant": ["lion.jpg"]}` (or `"image"` / `"audio"` naming an item '
            "of the collection; `relevant` a list or a `{name: grade}` map), CSV with the same columns, or a **.zip** holding the "
            f"qrels file and its query images/clips. At most {service.config.max_qrels_queries:,} queries. Bad lines are listed; the rest still run."
        )
        with gr.Row():
            with gr.Column(scale=3):
                qrels = gr.File(file_types=list(lab_actions.QRELS_EXTS), label="Qrels file (JSONL, CSV, or a .zip with query files)", elem_id="qrels-file")
                with gr.Row():
                    eval_btn = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button")
                    demo_btn = gr.Button("Use the demo benchmark", elem_id="demo-benchmark-button")
                    stop_button(service, visitor, "evaluate-stop")
                gr.Markdown(
                    "_The demo benchmark (used when no file is uploaded) labels items of the **demo** collection: "
                    "it is only meaningful there. On your own collection, upload your own qrels._"
                )
            eval_methods = gr.CheckboxGroup(method_names(), value=list(DEFAULT_METHODS), label="Fusion methods", scale=2)
        eval_md = gr.Markdown(elem_id="eval-summary")
        eval_df = gr.Dataframe(headers=EVAL_HEADERS, label="Results", interactive=False, wrap=False, pinned_columns=1, elem_id="eval-table", visible=False)
        with gr.Row():
            csv_btn = gr.DownloadButton("Download CSV", visible=False, size="md")
            json_btn = gr.DownloadButton("Download JSON", visible=False, size="md")
        problems_df = gr.Dataframe(headers=PROBLEM_HEADERS, label="Qrels lines skipped", visible=False, interactive=False, wrap=True,
                                   column_widths=["7%", "93%"], elem_id="eval-problems")
        with gr.Row(equal_height=False):
            eval_plot = gr.Plot(show_label=False, scale=1, elem_id="eval-plot", visible=False)
            pairs_df = gr.Dataframe(headers=PAIR_HEADERS, label="By query type (nDCG@10)", interactive=False, wrap=False, pinned_columns=1, scale=1, visible=False)
        with gr.Accordion("Evaluation as JSON (what the /evaluate API returns)", open=False):
            eval_json = gr.Code(language="json", label="evaluation", interactive=False)

    @action
    def evaluate(qrels: str | None = None, methods: list[str] | None = None, visitor: Visitor | None = None, request: gr.Request = None,
                 progress: gr.Progress = gr.Progress()) -> tuple[str, Visitor]:
        """Score sources and fusion methods on a qrels file (none: the demo benchmark, demo collection only); returns JSON text."""
        methods = list(DEFAULT_METHODS) if methods is None else methods
        progress(0, desc="loading the qrels and the models…")
        doc = lab_actions.evaluate(service, visitor, qrels, methods, progress=progress_fn(progress, "queries"))
        return dumps(doc), visitor

    @action
    def show_eval(visitor: Visitor, request: gr.Request) -> tuple[Any, ...]:
        doc = visitor.last_eval or {}
        files = lab_actions.export_evaluation(doc)
        probs = [[p["line"] or "file", p["message"]] for p in doc.get("problems", [])]
        return (
            eval_summary(doc), gr.Dataframe(value=eval_frame(doc), visible=True), gr.Plot(value=eval_figure(doc), visible=True),
            gr.Dataframe(value=pairs_frame(doc), visible=True),
            gr.Dataframe(value=pd.DataFrame(probs, columns=PROBLEM_HEADERS), visible=bool(probs)),
            gr.DownloadButton(value=files["csv"], visible=True), gr.DownloadButton(value=files["json"], visible=True),
        )

    eval_outputs = [eval_md, eval_df, eval_plot, pairs_df, problems_df, csv_btn, json_btn]
    ev: dict[str, Any] = {"concurrency_id": "evaluate", "concurrency_limit": 1, "show_progress_on": [eval_md, eval_btn]}
    eval_btn.click(evaluate, [qrels, eval_methods, visitor], [eval_json, visitor], api_name="evaluate", **ev).success(
        show_eval, visitor, eval_outputs, **PRIVATE, **BROWSE
    )
    demo_btn.click(lambda: None, None, qrels, **PRIVATE).then(
        evaluate, [qrels, eval_methods, visitor], [eval_json, visitor], api_name="_evaluate_demo", **PRIVATE, **ev
    ).success(show_eval, visitor, eval_outputs, **PRIVATE, **BROWSE)


__all__ = ["build_evaluate_tab", "eval_figure", "eval_frame", "eval_summary", "pairs_frame"]
