"""Small bar charts drawn on the server as inline SVG: no chart library, no script."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 640
HEIGHT = 180
BASELINE = 150


def bar_chart(points: Sequence[tuple[str, float]], *, unit: str = "") -> SafeString:
    """An SVG bar chart of (label, value) pairs; labels are escaped, values label the bars."""
    if not points:
        return format_html('<svg class="chart" viewBox="0 0 {} {}" role="img"></svg>', WIDTH, 40)
    top = max(value for _, value in points) or 1
    step = WIDTH / len(points)
    bar = max(2.0, step * 0.7)
    show_every = max(1, len(points) // 15)
    bars = format_html_join(
        "",
        '<g><rect x="{}" y="{}" width="{}" height="{}" class="bar">'
        "<title>{}: {}{}</title></rect>{}</g>",
        (
            (
                f"{index * step + (step - bar) / 2:.1f}",
                f"{BASELINE - (value / top) * (BASELINE - 20):.1f}",
                f"{bar:.1f}",
                f"{(value / top) * (BASELINE - 20):.1f}",
                label,
                _number(value),
                unit,
                _labels(index, label, value, unit, step, show_every),
            )
            for index, (label, value) in enumerate(points)
        ),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img">'
        '<line x1="0" y1="{}" x2="{}" y2="{}" class="axis"></line>{}</svg>',
        WIDTH, HEIGHT, BASELINE, WIDTH, BASELINE, bars,
    )  # fmt: skip


def _labels(index: int, label: str, value: float, unit: str, step: float, every: int) -> str:
    if index % every:
        return ""
    x = index * step + step / 2
    return format_html(
        '<text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="value">{}{}</text>',
        f"{x:.1f}", BASELINE + 16, label, f"{x:.1f}", BASELINE - 4, _number(value), unit,
    )  # fmt: skip


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
