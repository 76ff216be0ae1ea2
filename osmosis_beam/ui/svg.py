"""Plots as inline SVG, rendered on the server: no JavaScript, no CDN, nothing to vendor.

Example::

    from osmosis_beam.ui.svg import time_series, bars
    time_series([(t1, 120), (t2, 80)], unit="records")      # '<svg ...>...</svg>'
    bars([("orders", 42.0), ("news", 3600.0)], unit="s")
"""
from __future__ import annotations

import datetime as dt
from html import escape
from typing import Sequence

__all__ = ["time_series", "bars", "human_seconds"]

_W, _H, _L, _R, _T, _B = 640, 200, 56, 12, 12, 28


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if abs(seconds) < 60:
        return f"{seconds:.2f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return human_seconds(value)
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def time_series(points: Sequence[tuple[dt.datetime, float]], *, unit: str = "", label: str = "") -> str:
    """A line with dots over time; ``points`` oldest first."""
    if not points:
        return '<p class="muted">no runs to plot yet</p>'
    xs = [p[0].timestamp() for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    top = max(ys) or 1.0
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return _L + (x - x0) / span * (_W - _L - _R) if x1 > x0 else (_L + _W - _R) / 2

    def py(y: float) -> float:
        return _T + (1 - y / top) * (_H - _T - _B)

    parts = [f'<svg class="plot" role="img" aria-label="{escape(label)}" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
             'xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        y = py(top * frac)
        parts.append(f'<line x1="{_L}" y1="{y:.1f}" x2="{_W - _R}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{_L - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(top * frac, unit))}</text>')
    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    parts.append(f'<polyline points="{coords}" class="line"/>')
    for (when, value), x, y in zip(points, xs, ys):
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" class="dot"><title>'
                     f'{escape(when.strftime("%Y-%m-%d %H:%M:%S"))}: {escape(_fmt(value, unit))}</title></circle>')
    first = dt.datetime.fromtimestamp(x0, dt.timezone.utc).strftime("%m-%d %H:%M")
    last = dt.datetime.fromtimestamp(x1, dt.timezone.utc).strftime("%m-%d %H:%M")
    parts.append(f'<text x="{_L}" y="{_H - 8}">{escape(first)}</text>')
    parts.append(f'<text x="{_W - _R}" y="{_H - 8}" text-anchor="end">{escape(last)} UTC</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(items: Sequence[tuple[str, float | None]], *, unit: str = "s", label: str = "") -> str:
    """Horizontal bars, one per item (``None``: no value, shown as '-')."""
    if not items:
        return '<p class="muted">nothing to plot yet</p>'
    row, left = 22, 160
    height = row * len(items) + 8
    top = max((v for _, v in items if v is not None), default=0.0) or 1.0
    parts = [f'<svg class="plot" role="img" aria-label="{escape(label)}" viewBox="0 0 {_W} {height}" width="{_W}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>')
        if value is None:
            parts.append(f'<text x="{left}" y="{y + 15}" class="muted">-</text>')
            continue
        width = max(value, 0) / top * (_W - left - 90)
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" class="bar"/>')
        parts.append(f'<text x="{left + width + 6:.1f}" y="{y + 15}">{escape(_fmt(value, unit))}</text>')
    parts.append("</svg>")
    return "".join(parts)
