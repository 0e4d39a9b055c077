"""How the fusion lab reads: a side-by-side HTML table with thumbnails, a rank view and a normalised-score view,
recommended method sets with one line of help each, and an interactive 2-D map (Plotly, labels on hover).

Plain functions over the lab document of :func:`crossmodal_demo.app.lab_actions.lab`; thumbnails load through
signed item links (``link(item_id)``), never through a path. User-made names are HTML-escaped here.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from crossmodal_demo.analysis.lab import movement_tag

# A few method sets worth comparing, with the one line a newcomer needs; the full list stays folded in the UI.
METHOD_SETS: dict[str, tuple[tuple[str, ...], str]] = {
    "recommended": (("rrf", "mean-zscore"), "RRF needs no calibration; the mean of z-scores did best on the demo benchmark."),
    "ranks only": (("rrf", "combsum-rank", "combmnz-rank"), "Only positions count: safe when sources score on different scales."),
    "scores": (("combsum-zscore", "mean-zscore", "max-zscore"), "Each source's scores standardised, then added, averaged or the best kept."),
    "your weights": (("wsum-minmax",), "A weighted sum: give a source more say with the weights box (e.g. text/caption=2)."),
}
VIEWS = ("ranks", "normalised scores")


def method_set_help() -> str:
    """Markdown: one line per recommended set."""
    return "\n".join(f"- **{name}** ({', '.join(methods)}): {why}" for name, (methods, why) in METHOD_SETS.items())


def column_title(col: dict[str, Any], baseline: str | None) -> str:
    """``text/content ★ baseline``, ``text/caption`` or ``rrf (fused)``."""
    if col["kind"] == "fused":
        return f"{col['name']} (fused)"
    return f"{col['name']} ★ baseline" if col["name"] == baseline else col["name"]


def normalised(scores: list[float]) -> list[float]:
    """Min–max within one column → [0, 1] (all 1.0 when the column's scores are equal): columns become comparable."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    return [1.0 if hi == lo else (s - lo) / (hi - lo) for s in scores]


def _cell(hit: dict[str, Any], fused: bool, view: str, norm: float, link: Callable[[int], str | None]) -> str:
    name = html.escape(str(hit.get("name") or hit["id"]))
    src = link(int(hit["id"]))
    img = f'<img src="{html.escape(src, quote=True)}" alt="">' if src else ""
    if view == "ranks":
        extra = ""
        if fused:
            tag = movement_tag(hit)
            cls = "up" if tag.startswith("▲") else "down" if tag.startswith("▼") else "new" if tag == "new" else "same"
            extra = f'<span class="mv mv-{cls}">{html.escape(tag)}</span>'
    else:
        extra = (f'<span class="hit-bar" title="raw score {hit["score"]:.4g}"><span style="width:{100 * norm:.0f}%"></span></span>'
                 f'<span class="hit-score">{norm:.2f}</span>')
    return f'<div class="lab-cell">{img}<div><div class="lab-name">{name}</div>{extra}</div></div>'


def lab_html(result: dict[str, Any] | None, view: str, link: Callable[[int], str | None]) -> str:
    """The side-by-side table: one row per rank, one column per single source and fused method.

    ``view`` "ranks": item and, for fused columns, its move against the baseline (▲ up, ▼ down, new);
    "normalised scores": each column's scores min–max scaled to 0–1 (raw scores on hover)."""
    if not result or not result.get("columns"):
        return ""
    cols = result["columns"]
    norms = [normalised([h["score"] for h in c["hits"]]) for c in cols]
    head = "".join(f"<th>{html.escape(column_title(c, result.get('baseline')))}</th>" for c in cols)
    rows = []
    for r in range(max(len(c["hits"]) for c in cols)):
        cells = [f'<td class="lab-rank">{r + 1}</td>']
        for c, norm in zip(cols, norms):
            cells.append(f"<td>{_cell(c['hits'][r], c['kind'] == 'fused', view, norm[r], link)}</td>" if r < len(c["hits"]) else "<td></td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="lab-wrap"><table class="lab"><thead><tr><th>#</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def lab_map(result: dict[str, Any] | None) -> Any:
    """Plotly figure of the 2-D projection: the query (star) and each result's content and caption points; names on hover."""
    import plotly.graph_objects as go  # heavy: loaded on the first lab run, not with the page

    proj = (result or {}).get("projection") or {}
    points = proj.get("points") or []
    fig = go.Figure()
    styles = {"content": ("circle", "#3b6fd4"), "caption": ("triangle-up", "#e08a1e")}
    for channel, (symbol, color) in styles.items():
        pts = [p for p in points if p["kind"] == "result" and p.get("channel") == channel]
        if pts:
            fig.add_trace(go.Scatter(x=[p["x"] for p in pts], y=[p["y"] for p in pts], mode="markers", name=f"result ({channel})",
                                     text=[p["label"] for p in pts], hovertemplate="%{text}<extra></extra>",
                                     marker={"symbol": symbol, "color": color, "size": 11, "opacity": 0.85}))
    q = [p for p in points if p["kind"] == "query"]
    if q:
        fig.add_trace(go.Scatter(x=[q[0]["x"]], y=[q[0]["y"]], mode="markers", name="query", text=["the query"], hovertemplate="%{text}<extra></extra>",
                                 marker={"symbol": "star", "color": "#d62828", "size": 18, "line": {"width": 1, "color": "black"}}))
    method = (proj.get("method") or "").upper() or "no projection (too few points)"
    fig.update_layout(title={"text": f"{method} of the {proj.get('space', '?')} space — hover a point for its name", "font": {"size": 13}},
                      height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.05},
                      xaxis={"visible": False}, yaxis={"visible": False}, plot_bgcolor="white")
    return fig


LAB_CSS = """
.lab-wrap {overflow-x: auto; max-width: 100%;}
table.lab {border-collapse: collapse; font-size: 0.9em; width: 100%;}
table.lab th {text-align: left; padding: 4px 6px; border-bottom: 2px solid var(--border-color-primary); white-space: nowrap;}
table.lab td {padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); vertical-align: middle;}
.lab-rank {color: var(--body-text-color-subdued);}
.lab-cell {display: flex; align-items: center; gap: 6px; min-width: 120px;}
.lab-cell img {width: 36px; height: 36px; object-fit: cover; border-radius: 4px; flex: none;}
.lab-name {overflow-wrap: anywhere; line-height: 1.2;}
.mv {font-size: 0.85em;} .mv-up {color: #15803d;} .mv-down {color: #b91c1c;} .mv-new {color: #1d4ed8;} .mv-same {color: var(--body-text-color-subdued);}
"""

__all__ = ["LAB_CSS", "METHOD_SETS", "VIEWS", "column_title", "lab_html", "lab_map", "method_set_help", "normalised"]
