"""A small bar chart as inline SVG, drawn on the server (no JavaScript library).

The SVG carries ``role="img"`` and a text alternative; the caller puts the same
numbers in words beside it for screen readers that skip graphics.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 480
HEIGHT = 120
PAD = 20


def bar_chart_svg(values: Sequence[int], label: str, *, first_label: str = "",
                  last_label: str = "") -> str:
    """Bars for ``values`` (left to right), scaled to the largest; ``label`` is the
    accessible name. Returns markup safe to embed."""
    count = max(len(values), 1)
    highest = max(values, default=0)
    top = max(highest, 1)
    slot = (WIDTH - 2 * PAD) / count
    bar = max(slot * 0.7, 1.0)
    inner = HEIGHT - 2 * PAD
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}">',
             f'<title>{escape(label)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'stroke="#444" stroke-width="1"/>']
    for i, v in enumerate(values):
        h = inner * v / top
        x = PAD + i * slot + (slot - bar) / 2
        y = HEIGHT - PAD - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="#b3261e"><title>{v}</title></rect>')
    parts.append(f'<text x="{PAD}" y="{PAD - 6}" font-size="11" fill="#222">max {highest}</text>')
    if first_label:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 4}" font-size="11" fill="#222">'
                     f'{escape(first_label)}</text>')
    if last_label:
        parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" font-size="11" fill="#222" '
                     f'text-anchor="end">{escape(last_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
