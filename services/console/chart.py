"""Mentions per minute by sentiment as an inline SVG stacked bar chart, rendered on the server (no JS)."""

from __future__ import annotations

import time
from html import escape

COLOURS = {"negative": "#d64545", "neutral": "#9aa5b1", "positive": "#3f9142"}


def mentions_chart(buckets: list[tuple[float, dict[str, int]]], width: int = 720, height: int = 200) -> str:
    """`buckets` are (minute start, {sentiment: count}) in time order; an empty list gives a short note."""
    if not buckets:
        return '<p class="muted">No mentions tagged with this incident in the queues yet.</p>'
    pad_l, pad_b, pad_t = 36, 22, 8
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    peak = max(1, max(sum(c.values()) for _, c in buckets))
    bar_w = plot_w / len(buckets)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Mentions per minute by sentiment (peak {peak})</title>',
             f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 4}" y2="{pad_t + plot_h}" stroke="#555"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 10}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{pad_l - 4}" y="{pad_t + plot_h}" text-anchor="end" font-size="11">0</text>']
    for k, (minute, counts) in enumerate(buckets):
        x = pad_l + k * bar_w
        y = float(pad_t + plot_h)
        for sentiment in ("negative", "neutral", "positive"):
            n = counts.get(sentiment, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            label = f"{time.strftime('%H:%M', time.gmtime(minute))} UTC: {n} {sentiment}"
            parts.append(f'<rect class="bar {sentiment}" x="{x + 0.5:.1f}" y="{y:.1f}" '
                         f'width="{max(1.0, bar_w - 1):.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS[sentiment]}"><title>{escape(label)}</title></rect>')
    step = max(1, len(buckets) // 6)
    for k in range(0, len(buckets), step):
        x = pad_l + k * bar_w + bar_w / 2
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" font-size="11">'
                     f'{time.strftime("%H:%M", time.gmtime(buckets[k][0]))}</text>')
    legend = " ".join(f'<span class="swatch" style="background:{c}"></span>{s}' for s, c in COLOURS.items())
    parts.append("</svg>")
    return "".join(parts) + f'<p class="legend">{legend} (UTC, per minute)</p>'
