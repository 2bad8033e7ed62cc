"""Static SVG charts for the HTML report: no scripts, no fonts to fetch, every mark drawn at build time.

Each chart is an `<svg data-chart="...">` whose bars, points and lines carry class="mark", so a
browser test can check that every chart laid out and drew something.
"""
from __future__ import annotations

import math

from pipeline.report_text import escape_html as escape  # also shows control characters

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e"]
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def fmt_number(v: float) -> str:
    """Short human form: 1234567 -> 1.23M, 0.1234 -> 0.123."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    a = abs(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.3g}"


def _legend(series_names: list[str], x: float, y: float) -> str:
    if len(series_names) < 2:
        return ""
    out, cx = [], x
    for i, name in enumerate(series_names):
        out.append(f'<rect x="{cx:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{cx + 14:.1f}" y="{y:.1f}" {FONT}>{escape(name)}</text>')
        cx += 24 + 7 * len(name)
    return "".join(out)


def _svg(chart_id: str, title: str, width: float, height: float, body: str) -> str:
    return (f'<svg data-chart="{escape(chart_id)}" class="chart" role="img" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" xmlns="http://www.w3.org/2000/svg">'
            f'<title>{escape(title)}</title>{body}</svg>')


def hbar_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float]],
               width: int = 640, value_format=fmt_number, value_label: str = "") -> str:
    """Horizontal bars, one group per label, one bar per series (e.g. target vs achieved);
    value_label names the bars' unit."""
    names = list(series)
    label_w = min(220, 12 + 7 * max((len(s) for s in labels), default=4))
    bar_h, gap = 14, 8
    group_h = bar_h * len(names) + gap
    top = 22 if len(names) > 1 else 6
    height = top + group_h * len(labels) + 4 + 16 * bool(value_label)
    vmax = max((v for vals in series.values() for v in vals if v is not None), default=0) or 1
    plot_w = width - label_w - 70
    parts = [_legend(names, label_w, 12)]
    for i, label in enumerate(labels):
        y0 = top + i * group_h
        parts.append(f'<text x="{label_w - 6}" y="{y0 + group_h / 2 + 1:.1f}" text-anchor="end" {FONT}>'
                     f'{escape(label)}</text>')
        for j, name in enumerate(names):
            v = series[name][i] or 0
            w = max(1.0, plot_w * v / vmax) if v > 0 else 0.0
            y = y0 + j * bar_h
            parts.append(f'<rect class="mark" x="{label_w}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 2}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(f"{label} / {name}: {value_format(v)}")}'
                         f'</title></rect><text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4:.1f}" {FONT}>'
                         f'{escape(value_format(v))}</text>')
    if value_label:
        parts.append(f'<text class="axis-label" x="{label_w}" y="{height - 4}" {FONT} fill="#444">'
                     f'{escape(value_label)} →</text>')
    return _svg(chart_id, title, width, height, "".join(parts))


def _axis_labels(x_label: str, y_label: str, left: float, top: float, plot_w: float, plot_h: float,
                 height: float) -> str:
    """The unit of each axis: x under the tick labels, y turned along the left edge."""
    out = ""
    if x_label:
        out += (f'<text class="axis-label" x="{left + plot_w / 2:.1f}" y="{height - 4:.1f}" text-anchor="middle" '
                f'{FONT} fill="#444">{escape(x_label)}</text>')
    if y_label:
        out += (f'<text class="axis-label" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" {FONT} fill="#444" '
                f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    return out


def column_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float]],
                 width: int = 640, height: int = 220, log_y: bool = False, x_label: str = "",
                 y_label: str = "") -> str:
    """Vertical bars (histograms): x = bins, one bar per series in each bin; x_label and y_label
    name each axis's unit."""
    names = list(series)
    left, right, top, bottom = 56, 10, 22, 36 + 14 * bool(x_label)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = max(1.0, (slot - 2) / max(len(names), 1))

    def scale(v: float) -> float:
        return math.log10(1 + v) if log_y else v

    vmax = max((scale(v or 0) for vals in series.values() for v in vals), default=0) or 1
    parts = [_legend(names, left, 12),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" {FONT}>'
             f'{escape(fmt_number(max((v or 0) for vals in series.values() for v in vals) if series else 0))}</text>']
    step = max(1, math.ceil(n / (plot_w / 40)))
    for i, label in enumerate(labels):
        x0 = left + i * slot + 1
        for j, name in enumerate(names):
            v = series[name][i] or 0
            h = plot_h * scale(v) / vmax
            if v > 0:
                h = max(h, 1.0)
            parts.append(f'<rect class="mark" x="{x0 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}"><title>'
                         f'{escape(f"{label} / {name}: {fmt_number(v)}")}</title></rect>')
        if i % step == 0:
            parts.append(f'<text x="{x0 + slot / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT}>'
                         f'{escape(label)}</text>')
    if log_y:
        parts.append(f'<text x="{left + plot_w}" y="{top - 8}" text-anchor="end" {FONT} fill="#666">log scale</text>')
    parts.append(_axis_labels(x_label, y_label, left, top, plot_w, plot_h, height))
    return _svg(chart_id, title, width, height, "".join(parts))


def line_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float]],
               width: int = 640, height: int = 220, x_label: str = "", y_label: str = "") -> str:
    """Lines over shared x labels (a distribution per stage), a point per value."""
    names = list(series)
    left, right, top, bottom = 56, 24, 22, 36 + 14 * bool(x_label)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    vmax = max((v or 0 for vals in series.values() for v in vals), default=0) or 1
    dx = plot_w / max(n - 1, 1)
    parts = [_legend(names, left, 12),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" {FONT}>{escape(fmt_number(vmax))}</text>']
    step = max(1, math.ceil(n / (plot_w / 40)))
    for i, label in enumerate(labels):
        if i % step == 0:
            parts.append(f'<text x="{left + i * dx:.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT}>'
                         f'{escape(label)}</text>')
    for j, name in enumerate(names):
        color = PALETTE[j % len(PALETTE)]
        pts = [(left + i * dx, top + plot_h - plot_h * (v or 0) / vmax) for i, v in enumerate(series[name])]
        parts.append(f'<polyline class="mark" fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
        for (x, y), label, v in zip(pts, labels, series[name]):
            parts.append(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>'
                         f'{escape(f"{name}, {label}: {fmt_number(v or 0)}")}</title></circle>')
    parts.append(_axis_labels(x_label, y_label, left, top, plot_w, plot_h, height))
    return _svg(chart_id, title, width, height, "".join(parts))


def waterfall_chart(chart_id: str, title: str, start: tuple[str, float], steps: list[tuple[str, float]],
                    end: tuple[str, float], width: int = 640, value_label: str = "documents") -> str:
    """Where a stage's input went: the input as a full bar, then each drop as a floating bar that
    takes its share off the running total, then what is kept."""
    label_w = min(260, 12 + 7 * max((len(s) for s, _ in [start, *steps, end]), default=4))
    bar_h = 16
    rows = [start, *steps, end]
    height = 8 + (bar_h + 4) * len(rows) + 18
    vmax = max(start[1], end[1], 1)
    plot_w = width - label_w - 70
    parts, running = [], start[1]
    for i, (label, value) in enumerate(rows):
        y = 6 + i * (bar_h + 4)
        if i == 0 or i == len(rows) - 1:
            x0, w, color = 0.0, value, PALETTE[0] if i == 0 else PALETTE[4]
        else:
            running -= value
            x0, w, color = running, value, PALETTE[2]
        px, pw = label_w + plot_w * x0 / vmax, max(1.0, plot_w * w / vmax) if w > 0 else 0.0
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end" {FONT}>{escape(label)}</text>'
                     f'<rect class="mark" x="{px:.1f}" y="{y}" width="{pw:.1f}" height="{bar_h}" fill="{color}">'
                     f'<title>{escape(f"{label}: {fmt_number(value)}")}</title></rect>'
                     f'<text x="{px + pw + 4:.1f}" y="{y + bar_h - 4}" {FONT}>'
                     f'{escape(("−" if 0 < i < len(rows) - 1 else "") + fmt_number(value))}</text>')
    parts.append(f'<text class="axis-label" x="{label_w}" y="{height - 4}" {FONT} fill="#444">{escape(value_label)} →</text>')
    return _svg(chart_id, title, width, height, "".join(parts))
