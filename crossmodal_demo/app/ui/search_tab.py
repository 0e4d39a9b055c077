"""The Search tab: a query (text, an uploaded image or audio clip), what to find, and the results.

``/search`` returns the result document as JSON text and keeps it in the visitor's state; a
private step builds the gallery and cards from that server-side copy (files by item id only).
In public mode ``/set_scope`` chooses what to search: the demo, my uploads, or both.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from crossmodal_demo.app import search_actions
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, SEARCH, action, dumps, md_escape, served
from crossmodal_demo.app.visitors import SCOPE_LABELS, SCOPES, Visitor
from crossmodal_demo.retrieval.search import TARGETS


def card_markdown(card: dict[str, Any]) -> str:
    """A ranked text/audio result: rank, score, the space that ranked it, and what it says."""
    head = (f"**#{card['rank']}** · score **{card['score']:.3f}** · {card['space']}/{card['channel']} · "
            f"{card['modality']} · `{md_escape(card['name'])}`")
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


def build_search_tab(service: AppService, visitor: gr.State) -> None:
    """Add the Search tab's components and events (call inside ``gr.Tabs()``)."""
    cfg = service.config
    with gr.Tab("Search", id="search"):
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Type a query", placeholder="e.g. a cat, rain tomorrow, a rocket launch",
                                  max_length=cfg.max_query_chars, elem_id="query-text",
                                  info=f"Up to {cfg.max_query_chars:,} characters.")
                with gr.Row():
                    image = gr.Image(label="…or use an image", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=200)  # image_mode=None: Gradio passes the file as uploaded, undecoded, to our guards
                    audio = gr.Audio(label=f"…or an audio clip (up to {cfg.max_query_audio_seconds:.0f} s)", sources=["upload", "microphone"], type="filepath")
            with gr.Column(scale=1):
                search_btn = gr.Button("Search", variant="primary", elem_id="search-button")
                target = gr.Radio(list(TARGETS), value="image", label="Find")
                k = gr.Slider(1, search_actions.MAX_K, value=8, step=1, label="How many results (k)")
                if service.public:
                    scope = gr.Radio([(SCOPE_LABELS[s], s) for s in SCOPES], value="both", label="Search in", elem_id="search-scope")
        summary = gr.Markdown(elem_id="results-summary")
        gallery = gr.Gallery(label="Images", columns=4, fit_columns=False, object_fit="contain", height="auto", visible=False, elem_id="results-gallery")
        cards_state = gr.State([])

        @gr.render(inputs=cards_state)
        def render_cards(cards: list[dict[str, Any]]) -> None:
            for card in cards:
                with gr.Group(elem_classes=["result-card"]):
                    gr.Markdown(card_markdown(card), padding=True)
                    if card["modality"] == "audio" and card.get("file"):
                        gr.Audio(value=served(card["file"]), show_label=False, interactive=False)

        with gr.Accordion("Result as JSON (what the /search API returns)", open=False):
            result_json = gr.Code(language="json", label="search result", interactive=False)

    @action
    def search(text: str, image: str | None, audio: str | None, target: str, k: float, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
        """Search with exactly one of text / image / audio; returns {"query", "hits"} as JSON text."""
        return dumps(search_actions.search(service, visitor, text, image, audio, target, k)), visitor

    @action
    def show_results(visitor: Visitor, request: gr.Request) -> tuple[str, Any, list[dict[str, Any]]]:
        view = search_actions.result_view(service, visitor)
        gallery_value = [(served(p), caption) for p, caption in view["gallery"]]
        return view["summary"], gr.Gallery(value=gallery_value, visible=bool(gallery_value)), view["cards"]

    # A new query in one place clears the others (one query at a time); runs in the browser only.
    text.input(None, [text, image, audio], [image, audio], js="(t, i, a) => t ? [null, null] : [i, a]")
    image.input(None, [image, text, audio], [text, audio], js="(i, t, a) => i ? ['', null] : [t, a]")
    audio.input(None, [audio, text, image], [text, image], js="(a, t, i) => a ? ['', null] : [t, i]")
    gr.on(
        [search_btn.click, text.submit], search, [text, image, audio, target, k, visitor], [result_json, visitor],
        api_name="search", show_progress_on=[summary, search_btn], **SEARCH,
    ).success(show_results, visitor, [summary, gallery, cards_state], **PRIVATE, **BROWSE)

    if service.public:
        @action
        def set_scope(scope: str, visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
            """Public mode: search the demo, my uploads, or both; returns the new scope."""
            service.set_scope(visitor, scope)
            return dumps({"scope": visitor.scope}), visitor

        scope.change(set_scope, [scope, visitor], [result_json, visitor], api_name="set_scope", **BROWSE)


__all__ = ["build_search_tab", "card_markdown"]
