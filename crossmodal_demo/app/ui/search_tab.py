"""The Search tab: the query box and the Search button together on top, examples, then the results.

``/search`` returns the result document as JSON text and keeps it in the visitor's state; a
private step builds the picture grid and result rows from that server-side copy (files by item id only).
Examples and "Find similar" are private events that take no value from the browser but an example
id fixed on the server or a rank in the visitor's own last result. In public mode ``/set_scope``
chooses what to search: the demo, my uploads, or both.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from crossmodal_demo.app import search_actions
from crossmodal_demo.app.demo_collection import EXAMPLES, demo_strip, example_query
from crossmodal_demo.app.service import AppService
from crossmodal_demo.app.ui.common import BROWSE, PRIVATE, SEARCH, action, base_url, dumps, served
from crossmodal_demo.app.visitors import SCOPE_LABELS, SCOPES, Visitor
from crossmodal_demo.retrieval.fusion import DEFAULT_FUSION, DEFAULT_METHODS, RAW_MAX
from crossmodal_demo.retrieval.search import TARGETS

SEARCH_LABEL, LOADING_LABEL = "Search", "Loading models…"
TARGET_WORDS = {"image": "photos", "text": "notes", "audio": "audio", "any": "anything"}
TARGET_CHOICES = [(TARGET_WORDS.get(t, t), t) for t in TARGETS]
# "" = the configured default; the others are what the Fusion lab compares, plus the raw best cosine.
FUSION_CHOICES = [(f"fused ({DEFAULT_FUSION}, default)", ""), ("best raw cosine (max)", RAW_MAX)] + [
    (m, m) for m in DEFAULT_METHODS if m != DEFAULT_FUSION]


def search_button(st: dict[str, Any]) -> Any:
    """The Search button for a status document: "Loading models…" (still clickable: the search waits) or "Search"."""
    loading = (st.get("models") or {}).get("state") == "loading"
    return gr.Button(LOADING_LABEL if loading else SEARCH_LABEL, variant="secondary" if loading else "primary")


def status_line(st: dict[str, Any]) -> str:
    """The small line under the query box: loading, building, ready or a problem, in a few words."""
    models = (st.get("models") or {}).get("state")
    b = st.get("demo_build") or {}
    parts = []
    if models == "loading":
        parts.append("Loading models in the background… you can search already; the first search waits for them.")
    elif models == "failed":
        parts.append("Problem: the models could not be preloaded; they load on the first search.")
    if b.get("state") == "building":
        parts.append(f"Building the demo collection: {b.get('done', 0)}/{b.get('total') or '?'} files (search works on what is indexed so far).")
    elif b.get("state") == "failed":
        parts.append(f"Problem: the demo collection could not be built: {b.get('error')}")
    if not parts:
        c = st.get("counts") or {}
        parts.append(f"✓ Ready — {c.get('total', 0)} items in {st.get('collection', '')}.")
    return " ".join(parts)


def build_search_tab(service: AppService, visitor: gr.State) -> dict[str, Any]:
    """Add the Search tab's components and events (call inside ``gr.Tabs()``); returns the button and status line."""
    cfg = service.config
    with gr.Tab("Search", id="search"):
        with gr.Row(equal_height=True, elem_id="query-row"):
            text = gr.Textbox(label="Query", show_label=False, placeholder="e.g. a cat, rain tomorrow, a rocket launch",
                              max_length=cfg.max_query_chars, elem_id="query-text", scale=5, lines=1, max_lines=4, container=False)
            search_btn = gr.Button(SEARCH_LABEL, variant="primary", elem_id="search-button", scale=1, min_width=120)
        line = gr.Markdown(elem_id="status-line")
        gr.Markdown(f"The demo holds {demo_strip()}. Try one:", elem_id="demo-strip")
        with gr.Row(elem_id="examples-row"):
            example_btns = {key: gr.Button(ex["label"], size="sm", elem_id=f"example-{key}", min_width=60) for key, ex in EXAMPLES.items()}
        with gr.Row(elem_id="search-options"):
            target = gr.Radio(TARGET_CHOICES, value="image", label="Find", scale=3, min_width=300)
            k = gr.Slider(1, search_actions.MAX_K, value=8, step=1, label="How many", scale=2, min_width=200)
            fusion = gr.Dropdown(FUSION_CHOICES, value="", label="Ranking", elem_id="search-fusion", scale=2, min_width=160,
                                 info="how the lists of each model are combined")
            if service.public:
                scope = gr.Radio([(SCOPE_LABELS[s], s) for s in SCOPES], value="both", label="Search in", elem_id="search-scope", scale=3)
        with gr.Accordion("…or search with an image or an audio clip (upload, webcam, microphone)", open=False, elem_id="media-inputs") as media:
            with gr.Row():
                image = gr.Image(label="Image", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=180)  # image_mode=None: Gradio passes the file as uploaded, undecoded, to our guards
                audio = gr.Audio(label=f"Audio clip (up to {cfg.max_query_audio_seconds:.0f} s)", sources=["upload", "microphone"], type="filepath")
        summary = gr.Markdown(elem_id="results-summary")
        cards_state = gr.State([])

        @gr.render(inputs=cards_state)
        def render_cards(cards: list[dict[str, Any]]) -> None:
            def similar_button(card: dict[str, Any]) -> None:
                btn = gr.Button("Find similar", size="sm", scale=0, min_width=96, elem_classes=["similar-button"])
                btn.click(similar_to(int(card["rank"])), visitor, [result_json, visitor], show_progress_on=[summary], **PRIVATE, **SEARCH).success(
                    show_results, visitor, results_out, **PRIVATE, **BROWSE)

            pictures = [c for c in cards if c["kind"] == "image"]
            if pictures:
                with gr.Row(elem_id="result-grid"):
                    for card in pictures:
                        with gr.Column(elem_classes=["grid-card"], min_width=150):
                            gr.HTML(card["html"])
                            similar_button(card)
            with gr.Column(elem_id="result-cards"):
                for card in cards:
                    if card["kind"] == "divider":
                        gr.HTML(card["html"])
                    elif card["kind"] == "row":
                        with gr.Row(equal_height=False, elem_classes=["result-row"]):
                            gr.HTML(card["html"], scale=6)
                            similar_button(card)

        with gr.Accordion("Result as JSON (what the /search API returns)", open=False):
            result_json = gr.Code(language="json", label="search result", interactive=False)

    @action
    def search(text: str | None = None, image: str | None = None, audio: str | None = None, target: str = "image", k: float = 8,
               fusion: str = "", visitor: Visitor | None = None, request: gr.Request = None) -> tuple[str, Visitor]:
        """Search with one of text / image / audio (the others empty); target image|text|audio|any, k results;
        fusion: a Fusion lab method, "max" (best raw cosine) or "" for the default (mean-zscore). Returns {"query", "hits"} as JSON text; each hit has a downloadable ``url``."""
        return dumps(search_actions.search(service, visitor, text, image, audio, target, k, base_url(request), fusion)), visitor

    @action
    def show_results(visitor: Visitor, request: gr.Request) -> tuple[str, list[dict[str, Any]]]:
        view = search_actions.result_view(service, visitor)
        return view["summary"], view["cards"]

    results_out = [summary, cards_state]

    def similar_to(rank: int) -> Any:
        @action
        def run(visitor: Visitor, request: gr.Request) -> tuple[str, Visitor]:
            return dumps(search_actions.similar(service, visitor, rank, base_url(request))), visitor
        return run

    def example(key: str) -> Any:
        @action
        def run(visitor: Visitor, request: gr.Request) -> tuple[Any, ...]:
            q = example_query(key)
            doc = search_actions.search(service, visitor, q.get("text"), q.get("image"), q.get("audio"), q["target"], 8, base_url(request))
            media_open = gr.Accordion(open="image" in q or "audio" in q)  # show the example's photo or clip, fold otherwise
            return q.get("text", ""), served(q.get("image")), served(q.get("audio")), media_open, q["target"], dumps(doc), visitor
        return run

    # A new query in one place clears the others (one query at a time); runs in the browser only.
    text.input(None, [text, image, audio], [image, audio], js="(t, i, a) => t ? [null, null] : [i, a]")
    image.input(None, [image, text, audio], [text, audio], js="(i, t, a) => i ? ['', null] : [t, a]")
    audio.input(None, [audio, text, image], [text, image], js="(a, t, i) => a ? ['', null] : [t, i]")
    gr.on(
        [search_btn.click, text.submit], search, [text, image, audio, target, k, fusion, visitor], [result_json, visitor],
        api_name="search", show_progress_on=[summary, search_btn], **SEARCH,
    ).success(show_results, visitor, results_out, **PRIVATE, **BROWSE)
    for key, btn in example_btns.items():
        btn.click(example(key), visitor, [text, image, audio, media, target, result_json, visitor], show_progress_on=[summary, search_btn],
                  **PRIVATE, **SEARCH).success(show_results, visitor, results_out, **PRIVATE, **BROWSE)
    if service.public:
        @action
        def set_scope(scope: str = "both", visitor: Visitor | None = None, request: gr.Request = None) -> tuple[str, Visitor]:
            """Public mode: search the demo, my uploads, or both; returns the new scope."""
            service.set_scope(visitor, scope)
            return dumps({"scope": visitor.scope}), visitor

        scope.change(set_scope, [scope, visitor], [result_json, visitor], api_name="set_scope", **BROWSE)
    return {"button": search_btn, "line": line}


__all__ = ["LOADING_LABEL", "SEARCH_LABEL", "build_search_tab", "search_button", "status_line"]
