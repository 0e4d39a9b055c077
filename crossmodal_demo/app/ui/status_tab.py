"""The Status tab: mode, what this visitor searches, preset and encoders, counts, quotas, demo build, cleanups."""

from __future__ import annotations

from typing import Any

import gradio as gr

from crossmodal_demo.app.service import AppService


def status_markdown(st: dict[str, Any]) -> str:
    """The Status tab's text for one visitor's status document."""
    c = st["counts"]
    mode = ("**Public mode**: shared collections are read-only; your uploads go to a private workspace."
            if st["mode"] == "public" else "**Local mode**: you can create, switch and edit collections (for this browser session).")
    lines = [
        mode, "",
        f"**Preset:** `{st['preset']}` — {st['preset_description']}" + (f" ({st['preset_reason']})" if st.get("preset_reason") else ""),
        "",
        f"**Collection:** {st['collection']} — {c['image']} images, {c['audio']} audio clips, {c['text']} texts ({c['total']} items)."
        + (f" Collections: {', '.join(st['collections']) or '—'}." if st["mode"] == "local" else ""),
    ]
    ws = st.get("workspace")
    if ws:
        lines += ["", (f"**Your workspace:** {ws['files']} of {ws['max_files']} files, {ws['bytes'] / 2**20:.1f} of {ws['max_bytes'] / 2**20:.0f} MB; "
                       f"deleted when you leave or after {ws['ttl_seconds'] / 60:.0f} min idle." if ws["exists"]
                       else f"**Your workspace:** none yet — it is made when you upload (up to {ws['max_files']} files, {ws['max_bytes'] / 2**20:.0f} MB).")]
    lines += ["", "| encoder | takes | space | dim | model | loaded |", "|---|---|---|---|---|---|"]
    for e in st["encoders"]:
        lines.append(f"| {e['name']} | {e['modality']} | {e['space']} | {e['dim']} | `{e['model_id']}` | {'yes' if e['loaded'] else 'not yet'} |")
    m = st.get("models") or {}
    lines += ["", {"loading": "Models are loading in the background; a search made now waits for them.",
                   "ready": f"Models loaded and warmed up in {m.get('seconds', 0):.1f} s after start.",
                   "failed": f"Preloading the models failed ({m.get('error')}); they load on first use."}.get(
        m.get("state", ""), "Models load on first use, so the first search or upload takes a few seconds longer.")]
    b = st["demo_build"]
    if b["state"] != "idle":
        lines += ["", f"**Demo collection build:** {b['state']} ({b['done']}/{b['total'] or '?'} files)" + (f" — rebuilt because it was {b['reason']}" if b.get("reason") else "")]
    for r in st.get("recovered_uploads", []):
        lines += ["", f"**Interrupted upload cleaned up at start** ({r['collection']}, {r['batch']}): removed {r['removed']} unindexed file(s), kept {r['kept']} indexed."]
    return "\n".join(lines)


def build_status_tab(service: AppService) -> dict[str, Any]:
    """Add the Status tab; returns its components (wired in :mod:`.build`)."""
    with gr.Tab("Status", id="status") as tab:
        md = gr.Markdown(elem_id="status-text")
        with gr.Accordion("Status as JSON (what the /status API returns)", open=False):
            js = gr.Code(language="json", label="status", interactive=False)
    return {"tab": tab, "md": md, "json": js}


__all__ = ["build_status_tab", "status_markdown"]
