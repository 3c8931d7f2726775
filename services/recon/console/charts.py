"""Tiny hand-written SVG charts, rendered on the server (no script, no external asset).

Coordinates are floats; they position pixels, never money.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f")


def line_chart(
    title: str,
    x_labels: list[str],
    series: dict[str, list[int | None]],
    *,
    y_max: int,
    y_format: Callable[[int], str] = str,
    width: int = 720,
    height: int = 240,
) -> str:
    """One polyline per series over ``x_labels``; values are integers in [0, y_max]."""
    left, right, top, bottom = 48, 28, 16, 40  # room for the last date label
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return top + plot_h - plot_h * v / y_max if y_max else top + plot_h

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        v = y_max * step // 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#6b7280">{escape(y_format(v))}</text>'
        )
    stride = max(1, n // 8)
    for i, label in enumerate(x_labels):
        if i % stride == 0 or i == n - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="11" fill="#6b7280">{escape(label)}</text>'
            )
    for k, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[k % len(PALETTE)]
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>'
            )
        for px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        parts.append(
            f'<rect x="{left + 130 * k}" y="{height - 14}" width="10" height="10" '
            f'fill="{color}"/><text x="{left + 130 * k + 14}" y="{height - 5}" font-size="11" '
            f'fill="#111827">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    bars: list[tuple[str, int, str]],
    *,
    width: int = 520,
    bar_h: int = 20,
) -> str:
    """Horizontal bars: (label, value, caption). Values are non-negative integers."""
    left, right = 150, 150
    height = max(bar_h * len(bars) + 8, 28)
    top_value = max((v for _, v, _ in bars), default=0)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    if not bars:
        parts.append('<text x="8" y="18" font-size="12" fill="#6b7280">nothing to show</text>')
    for i, (label, value, caption) in enumerate(bars):
        length = (width - left - right) * value / top_value if top_value else 0
        y = 4 + i * bar_h
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<text x="{left - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" font-size="12" '
            f'fill="#111827">{escape(label)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{length:.1f}" height="{bar_h - 6}" '
            f'fill="{color}"/><text x="{left + length + 6:.1f}" y="{y + bar_h * 0.7:.1f}" '
            f'font-size="12" fill="#374151">{escape(caption)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
