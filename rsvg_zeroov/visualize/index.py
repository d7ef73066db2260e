"""``RUN/index.html``: one static page of panel thumbnails, worst IoU first.

Each card links to its full-size panel (``panels/<id>.png``, relative to the page) and shows the
sample id, the expression and the IoU, written the same way everywhere on the page (a fraction with
three decimals, as in the panels' titles). Every text from the data set is HTML-escaped and every
link URL-quoted; the page has no scripts and no external resources. The card shows the small JPEG
thumbnail (``thumbs/<id>.jpg``, :data:`THUMB_WIDTH` px wide) through ``srcset``; ``src`` stays the
full panel, for a browser without ``srcset`` and for a run drawn before thumbnails existed.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import quote

THUMB_WIDTH = 400  # pixels; a card is CARD_WIDTH CSS px wide, so the thumbnail stays sharp on most screens
CARD_WIDTH = 300

STYLE = """
body { font-family: sans-serif; margin: 16px; background: #fafafa; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
p.meta { margin: 0 0 12px 0; color: #555; font-size: 13px; }
div.grid { display: flex; flex-wrap: wrap; gap: 12px; }
div.card { width: CARD_WIDTHpx; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 6px; }
div.card img { width: 100%; height: auto; display: block; }
div.id { font-weight: bold; font-size: 13px; margin-top: 4px; word-break: break-all; }
div.iou { font-size: 13px; }
div.iou.low { color: #b00; }
div.expr { font-size: 12px; color: #333; margin-top: 2px; }
ul.skipped { font-size: 12px; color: #a00; }
""".replace("CARD_WIDTH", str(CARD_WIDTH))


@dataclass(frozen=True)
class IndexEntry:
    """One drawn sample. iou: None when the run has no final mask for it; iou_kind ``mask``|``box``;
    panel: the panel's path relative to the run directory (``panels/<id>.png``); thumb: its
    thumbnail's (``thumbs/<id>.jpg``) or None."""

    sample_id: str
    expression: str
    iou: float | None
    iou_kind: str
    panel: str
    thumb: str | None = None


def format_iou(value: float) -> str:
    """The one number format of IoUs on the page and in the panels: a fraction, three decimals."""
    return f"{value:.3f}"


def sort_key(entry: IndexEntry) -> tuple:
    """Worst first: samples without a score, then ascending IoU; ties by sample id."""
    return (entry.iou is not None, entry.iou if entry.iou is not None else 0.0, entry.sample_id)


def iou_text(entry: IndexEntry) -> str:
    return "no final mask" if entry.iou is None else f"{entry.iou_kind} IoU {format_iou(entry.iou)}"


def card(entry: IndexEntry) -> str:
    href = html.escape(quote(entry.panel), quote=True)
    low = " low" if entry.iou is None or entry.iou < 0.5 else ""
    thumb = "" if entry.thumb is None else (
        f' srcset="{html.escape(quote(entry.thumb), quote=True)} {THUMB_WIDTH}w" sizes="{CARD_WIDTH}px"')
    return (f'<div class="card"><a href="{href}"><img src="{href}"{thumb} loading="lazy" '
            f'alt="{html.escape(entry.sample_id, quote=True)}"></a>'
            f'<div class="id">{html.escape(entry.sample_id)}</div>'
            f'<div class="iou{low}">{html.escape(iou_text(entry))}</div>'
            f'<div class="expr">{html.escape(entry.expression)}</div></div>')


def mean_iou(entries: Sequence[IndexEntry]) -> str:
    scored = [e.iou for e in entries if e.iou is not None]
    return "n/a" if not scored else format_iou(sum(scored) / len(scored))


def render_index(entries: Sequence[IndexEntry], skipped: Sequence[tuple[str, str]] = (),
                 title: str = "RSVG-ZeroOV run") -> str:
    """The page as a string: cards sorted by :func:`sort_key`, then the skipped samples and why."""
    ordered = sorted(entries, key=sort_key)
    kinds = sorted({e.iou_kind for e in entries}) or ["-"]
    meta = (f"{len(ordered)} samples drawn, {len(skipped)} skipped; mean {'/'.join(kinds)} IoU "
            f"{mean_iou(ordered)}; sorted worst IoU first. Click a thumbnail for the full panel.")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>',
             '<div class="grid">', *(card(e) for e in ordered), "</div>"]
    if skipped:
        parts.append("<h2>Skipped (missing or bad inputs)</h2><ul class=\"skipped\">")
        parts += [f"<li><b>{html.escape(sid)}</b>: {html.escape(msg)}</li>" for sid, msg in skipped]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
