"""How a hit reads to a person: why it matched in plain words, a score bar, notes without markdown, query words marked.

Plain functions over the hit documents of :func:`crossmodal_demo.app.search_actions.search` (the
``search --json`` hit plus ``collection`` and ``url``; with H5's retrieval also ``sources``,
``match`` and ``labels``). Everything user-made (names, captions, transcripts, note text) is
HTML-escaped here, before any markup is added.
"""

from __future__ import annotations

import html
import re
from typing import Any

# What a source ("space/channel") looked at, by the hit's modality, in the words a visitor uses.
CONTENT_WORDS = {"image": "the picture", "text": "the text", "audio": "what was said"}
SOUND_SPACES = {"clap"}  # audio content in these spaces is the sound itself, not a transcript
STOP_WORDS = {"a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "with", "is", "are", "it", "my", "your"}


def source_words(source: str, modality: str) -> str:
    """``"text/caption"`` → "its caption"; ``"text/content"`` of an audio hit → "what was said"."""
    space, _, channel = source.partition("/")
    if channel == "caption":
        return "its caption"
    if modality == "audio" and space in SOUND_SPACES:
        return "the sound"
    return CONTENT_WORDS.get(modality, "its content")


def why_matched(hit: dict[str, Any]) -> str:
    """"the picture and its caption": what of the item matched, best source first (``sources`` if given, else space/channel)."""
    sources = hit.get("sources") or {}
    names = sorted(sources, key=lambda s: (sources[s] or {}).get("rank") or 10**9) if sources else [f"{hit.get('space')}/{hit.get('channel')}"]
    words: list[str] = []
    for name in names:
        w = source_words(name, hit.get("modality", ""))
        if w not in words:
            words.append(w)
    return " and ".join(words)


def score_fraction(score: float, top: float) -> float:
    """Bar length in [0, 1]: the score relative to the best hit's (scores of one list share a scale)."""
    if top <= 0:
        return 0.0
    return max(0.0, min(1.0, float(score) / float(top)))


def labels_text(labels: Any, n: int = 3) -> str:
    """``[["tabby cat", 0.62], ...]`` → "tabby cat 62%, tiger cat 20%" (at most ``n``; bad entries skipped)."""
    out = []
    for entry in (labels or [])[:n]:
        try:
            name, prob = entry
            out.append(f"{str(name)[:40]} {100 * float(prob):.0f}%")
        except (TypeError, ValueError):
            continue
    return ", ".join(out)


def strip_markdown(text: str) -> str:
    """Note text as it reads: headings, emphasis, code marks, quotes, list bullets and link targets removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [label](url) → label
    text = re.sub(r"(?m)^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", r"\1 —", text)  # a heading reads as a title
    text = re.sub(r"(?m)^\s{0,3}(>\s?|[-*+]\s+|\d+[.)]\s+)", "", text)
    text = re.sub(r"(\*\*|__|\*|_|`+|~~)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    return re.sub(r"(?m)^\s*([-*_]\s*){3,}$", "", text)


def query_words(query: str | None) -> list[str]:
    """The words of a text query worth marking in results (no stop words, at least 3 letters)."""
    return sorted({w for w in re.findall(r"\w+", (query or "").lower()) if len(w) >= 3 and w not in STOP_WORDS}, key=len, reverse=True)


def highlight(text: str, words: list[str]) -> str:
    """HTML: ``text`` escaped, with whole-word (prefix) matches of ``words`` in ``<mark>``."""
    safe = html.escape(text)
    if not words:
        return safe
    pattern = re.compile(r"\b(" + "|".join(re.escape(html.escape(w)) for w in words) + r")\w*", re.IGNORECASE)
    return pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", safe)


def excerpt(text: str, words: list[str], n: int = 240) -> str:
    """About ``n`` characters of ``text`` (whitespace folded), starting near the first matching word."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    lower = text.lower()
    at = min((i for i in (lower.find(w) for w in words) if i >= 0), default=0)
    start = max(0, at - n // 3)
    start = text.rfind(" ", 0, start) + 1 if start else 0
    body = text[start:start + n].rstrip()
    return ("…" if start else "") + body + ("…" if start + n < len(text) else "")


def card_html(card: dict[str, Any], words: list[str], top: float) -> str:
    """One result as compact HTML: rank, file name, score bar and value, why it matched, labels, text, player."""
    frac = score_fraction(card.get("score", 0.0), top)
    weak = card.get("match") == "weak"
    parts = [f'<div class="hit{" hit-weak" if weak else ""}">']
    if card.get("thumb"):
        parts.append(f'<img class="hit-thumb" src="{html.escape(card["thumb"], quote=True)}" alt="{html.escape(str(card.get("name", "")), quote=True)}">')
    parts += [
        f'<div class="hit-head"><span class="hit-rank">#{int(card.get("rank", 0))}</span>'
        f'<span class="hit-name">{html.escape(str(card.get("name", "")))}</span>'
        f'<span class="hit-bar" title="score {card.get("score", 0.0):.3f}"><span style="width:{100 * frac:.0f}%"></span></span>'
        f'<span class="hit-score">{card.get("score", 0.0):.3f}</span></div>',
        f'<div class="hit-why">matched {html.escape(why_matched(card))}'
        + (f' · looks like {html.escape(labels_text(card.get("labels")))}' if card.get("labels") else "")
        + (" · weak match" if weak and card.get("thumb") else "")
        + (f' · in {html.escape(str(card["collection"]))}' if card.get("show_collection") else "") + "</div>",
    ]
    if card.get("excerpt"):
        parts.append(f'<div class="hit-text">{highlight(card["excerpt"], words)}</div>')
    if card.get("transcript"):
        parts.append(f'<div class="hit-text">“{highlight(card["transcript"], words)}”</div>')
    if card.get("caption"):
        parts.append(f'<div class="hit-caption">Caption: {highlight(card["caption"], words)}</div>')
    if card.get("modality") == "audio" and not card.get("transcript") and not card.get("caption"):
        parts.append('<div class="hit-caption">(no speech, no caption)</div>')
    if card.get("modality") == "audio" and card.get("url"):
        parts.append(f'<audio controls preload="none" src="{html.escape(card["url"], quote=True)}"></audio>')
    parts.append("</div>")
    return "".join(parts)


RESULTS_CSS = """
.hit {padding: 2px 4px;}
.hit-thumb {display: block; width: 100%; height: 170px; object-fit: contain; background: var(--background-fill-secondary); border-radius: 6px; margin-bottom: 4px;}
#result-cards {gap: 0 !important;}
.result-row {gap: 6px !important; border-bottom: 1px solid var(--border-color-primary); padding: 4px 0; flex-wrap: nowrap !important; align-items: center;}
#result-grid {gap: 10px !important; margin-bottom: 8px;}
.grid-card {flex: 0 1 calc(25% - 8px) !important; max-width: calc(25% - 8px); min-width: 150px !important; gap: 2px !important;
  border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px !important;}
.grid-card .hit-caption {display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;}
@media (max-width: 640px) {
  .grid-card {flex-basis: calc(50% - 6px) !important; max-width: calc(50% - 6px);}
  .hit-thumb {height: 120px;}
  .hit-bar {width: 50px;}
  .grid-card .hit-caption {display: none;}
  .grid-card .hit-why {display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;}
}
.hit-head {display: flex; align-items: center; gap: 8px; flex-wrap: wrap;}
.hit-rank {color: var(--body-text-color-subdued); min-width: 2em;}
.hit-name {font-weight: 600; overflow-wrap: anywhere;}
.hit-bar {display: inline-block; width: 90px; height: 8px; background: var(--border-color-primary); border-radius: 4px; overflow: hidden;}
.hit-bar > span {display: block; height: 100%; background: var(--color-accent);}
.hit-score {font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); font-size: 0.9em;}
.hit-why, .hit-caption {color: var(--body-text-color-subdued); font-size: 0.9em;}
.hit-text {margin: 2px 0; font-size: 0.95em;}
.hit-weak {opacity: 0.75;}
.hit audio {height: 32px; width: 100%; max-width: 420px; margin-top: 4px;}
.hit mark {background: #fde68a; color: inherit; padding: 0 1px;}
.weak-divider {margin: 6px 0; color: var(--body-text-color-subdued); font-size: 0.9em; border-top: 1px dashed var(--border-color-primary);}
"""

__all__ = [
    "RESULTS_CSS", "card_html", "excerpt", "highlight", "labels_text", "query_words",
    "score_fraction", "source_words", "strip_markdown", "why_matched",
]
