"""Charts of the margin ratio over time: a compact text chart (pure) and a PNG (matplotlib).

`render_text` turns (time, ratio) points into lines of text: a filled column per time slot
(the worst ratio of the slot, in eighths of a row), the warning/call/critical rows labelled
on the right, a UTC time axis and one marker per alert below it. `plot_png` draws the same
with matplotlib, which is imported only there (it is an optional extra: ``alerter[plot]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from alerter import display
from alerter.models import Alert, AlertKind, Level, Thresholds

BLOCKS = " ▁▂▃▄▅▆▇█"
RULE = "┄"
LEVELS = (Level.WARNING, Level.CALL, Level.CRITICAL)

# one character per alert under the time axis
MARKERS = {
    AlertKind.RAISED: {Level.WARNING: "W", Level.CALL: "C", Level.CRITICAL: "X"},
    AlertKind.REPEAT: {Level.WARNING: "w", Level.CALL: "c", Level.CRITICAL: "x"},
}
OTHER_MARKERS = {AlertKind.RESOLVED: "R", AlertKind.BLIND: "B", AlertKind.RESTORED: "+", AlertKind.ACKNOWLEDGED: "A", AlertKind.UNACKNOWLEDGED: "a"}
LEGEND = {
    "W": "warning", "C": "call", "X": "critical", "w": "warning again", "c": "call again", "x": "critical again",
    "R": "resolved", "B": "blind", "+": "restored", "A": "acknowledged", "a": "acknowledgement removed", "*": "several",
}


def alert_marker(alert: Alert) -> str:
    if alert.kind in MARKERS:
        return MARKERS[alert.kind].get(alert.level, "?")
    return OTHER_MARKERS.get(alert.kind, "?")


def _time_format(span: timedelta) -> str:
    if span < timedelta(hours=1):
        return "%H:%M:%S"
    if span < timedelta(days=2):
        return "%H:%M"
    return "%m-%d %H:%M"


def render_text(
    points: Sequence[tuple[datetime, float]],
    thresholds: Thresholds,
    *,
    markers: Sequence[tuple[datetime, str]] = (),
    width: int = 72,
    height: int = 10,
    top: float = 1.0,
) -> list[str]:
    """Lines of a text chart of `points` (time, margin ratio as a fraction; ∞ allowed), at most
    `width` characters wide. The y axis runs from 0 to `top` (100 % = liquidation; higher
    ratios fill the column and show ▲ above it). Time slots without a point stay blank, so a
    gap in polling shows. `markers` (time, one character) are placed under the time axis;
    several in one slot become "*"."""
    if height < 2:
        raise ValueError("height must be at least 2 rows")
    times = [t for t, _ in points] + [t for t, _ in markers]
    if not times:
        return ["(no data)"]
    start, end = min(times), max(times)
    span = end - start
    labels: dict[int, list[str]] = {}  # row index from the bottom → threshold labels
    values: dict[int, float] = {}  # row → the lowest threshold in it (the left axis label)
    for level in LEVELS:
        value = thresholds.threshold(level)
        row = min(height - 1, max(0, int(value / top * height)))
        labels.setdefault(row, []).append(f"{level.label} {display.ratio(value)}")
        values.setdefault(row, value)
    label_width = max(len(" · ".join(v)) for v in labels.values())
    axis = 6  # "100 %┤"
    cols = max(8, width - axis - 1 - label_width)

    def column(t: datetime) -> int:
        if span.total_seconds() <= 0:
            return 0
        return min(cols - 1, int((t - start) / span * cols))

    worst: list[float | None] = [None] * cols
    for t, ratio in points:
        c = column(t)
        if ratio == ratio:  # NaN: skip
            worst[c] = ratio if worst[c] is None else max(worst[c], ratio)
    times_sorted = sorted(t for t, _ in points)
    gaps = sorted((b - a).total_seconds() for a, b in zip(times_sorted, times_sorted[1:]))
    if gaps and span.total_seconds() > 0:
        carry = 2 * gaps[(len(gaps) - 1) // 2] / span.total_seconds() * cols  # columns a value may span
        last = None
        for c in range(cols):
            if worst[c] is not None:
                last = c
            elif last is not None and c - last <= carry:
                worst[c] = worst[last]

    over = [w is not None and w > top for w in worst]
    lines = []
    if any(over):
        lines.append(" " * axis + "".join("▲" if o else " " for o in over))
    for row in range(height - 1, -1, -1):
        low = top * row / height
        cells = []
        for w in worst:
            if w is None:
                fill = 0.0
            else:
                fill = (min(w, top) - low) / (top / height) if math.isfinite(w) else 1.0
            if fill >= 1:
                cells.append(BLOCKS[-1])
            elif fill > 0:
                cells.append(BLOCKS[max(1, round(fill * 8))])
            else:
                cells.append(RULE if row in labels else " ")
        if row in labels:
            ylabel = f"{display.ratio(values[row]):>{axis - 1}}┤"
        elif row == height - 1:
            ylabel = f"{display.ratio(top):>{axis - 1}}┤"
        else:
            ylabel = " " * (axis - 1) + "│"
        right = " " + " · ".join(labels[row]) if row in labels else ""
        lines.append(f"{ylabel}{''.join(cells)}{right}".rstrip())
    lines.append(f"{display.ratio(0):>{axis - 1}}└" + "─" * cols)
    fmt = _time_format(span)
    left, right = start.strftime(fmt), end.strftime(fmt) + " UTC"
    gap = cols - len(left) - len(right)
    if span.total_seconds() <= 0:
        lines.append(" " * axis + right)
    else:
        lines.append(" " * axis + (left + " " * gap + right if gap >= 1 else left + " → " + right))
    if markers:
        row_chars = [" "] * cols
        for t, ch in markers:
            c = column(t)
            row_chars[c] = ch if row_chars[c] == " " else ("*" if row_chars[c] != ch else ch)
        lines.append(" " * axis + "".join(row_chars).rstrip())
        legend = " " * axis
        for item in (f"{k} {LEGEND[k]}" for k in LEGEND if k in row_chars):
            if len(legend) + 2 + len(item) > width and legend.strip():
                lines.append(legend.rstrip())
                legend = " " * axis
            legend += item + "  "
        lines.append(legend.rstrip())
    return lines


# ---------------------------------------------------------------- PNG

@dataclass(frozen=True)
class Series:
    """One line of the PNG: a scope's ratio over time, with the thresholds that apply to it."""

    label: str
    points: list[tuple[datetime, float]]
    thresholds: Thresholds
    alerts: list[Alert] = field(default_factory=list)


MARKER_SHAPES = {
    AlertKind.RAISED: ("^", "alert raised"), AlertKind.REPEAT: ("^", "alert raised"),
    AlertKind.RESOLVED: ("v", "resolved"), AlertKind.BLIND: ("X", "blind"), AlertKind.RESTORED: ("o", "restored"),
}
LEVEL_COLOURS = {Level.OK: "tab:green", Level.WARNING: "gold", Level.CALL: "darkorange", Level.CRITICAL: "red"}


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def plot_png(series: Sequence[Series], path: str | Path, *, title: str = "margin ratio") -> Path:
    """Write the chart (`chart_figure`) as a PNG. Raises PlotUnavailable without matplotlib."""
    out = Path(path)
    chart_figure(series, title=title).savefig(out, format="png")
    return out


def chart_figure(series: Sequence[Series], *, title: str = "margin ratio"):
    """The matplotlib Figure: one ratio line per series, the thresholds as horizontal lines, each
    alert as a vertical line with a marker, labelled with what it said."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import AutoDateLocator, DateFormatter
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as e:
        raise PlotUnavailable("matplotlib is not installed: pip install 'alerter[plot]'") from e

    finite = [r for s in series for _, r in s.points if math.isfinite(r)]
    ymax = max([1.05, *(r * 1.05 for r in finite)]) if finite else 1.05
    ymax = min(ymax, 2.0)

    fig = Figure(figsize=(11, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    times = [t for s in series for t, _ in s.points] + [a.created_at for s in series for a in s.alerts]
    for s in series:
        if s.points:
            xs = [t for t, _ in s.points]
            ys = [r if math.isfinite(r) else ymax for _, r in s.points]
            ax.plot(xs, ys, linewidth=1.8, label=s.label, marker="o" if len(xs) == 1 else None)

    distinct = list(dict.fromkeys(s.thresholds for s in series))
    for i, th in enumerate(distinct):
        owners = [s.label for s in series if s.thresholds == th]
        suffix = f" ({', '.join(owners)})" if len(distinct) > 1 else ""
        for level in LEVELS:
            value = th.threshold(level)
            ax.axhline(value, color=LEVEL_COLOURS[level], linestyle="--", linewidth=1, alpha=0.9)
            ax.annotate(f"{level.label} {display.ratio(value)}{suffix}", xy=(1.0, value), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=8, color=LEVEL_COLOURS[level])
    ax.axhline(1.0, color="black", linewidth=1, alpha=0.6)
    ax.annotate(f"liquidation {display.ratio(1.0)}", xy=(1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(4, 0),
                textcoords="offset points", va="center", fontsize=8)

    shown: set[str] = set()
    end_at = max(times) if times else None
    span_all = (end_at - min(times)) if times else timedelta(0)
    for s in series:
        for n, alert in enumerate(s.alerts):
            resolved = alert.kind in (AlertKind.RESOLVED, AlertKind.RESTORED)
            colour = "tab:green" if resolved else LEVEL_COLOURS.get(alert.level, "grey")
            ax.axvline(alert.created_at, color=colour, linewidth=0.8, alpha=0.6, linestyle=":")
            ratio = alert.margin_ratio
            y = min(ratio, ymax * 0.97) if ratio is not None and ratio == ratio else ymax * 0.97
            marker, kind = MARKER_SHAPES.get(alert.kind, ("o", str(alert.kind)))
            ax.plot([alert.created_at], [y], marker=marker, markersize=8, color=colour, markeredgecolor="black",
                    linestyle="none", zorder=5, label=kind if kind not in shown else None)
            shown.add(kind)
            text = str(alert.kind) if resolved or alert.kind == AlertKind.BLIND else alert.level.label
            if alert.kind == AlertKind.REPEAT:
                text += " (repeat)"
            # a repeat sits just after its raise: its label goes right, so the two never cover each other
            left = (not resolved and alert.kind != AlertKind.REPEAT) or (end_at is not None and alert.created_at > end_at - span_all * 0.2)
            ax.annotate(text, xy=(alert.created_at, y), xytext=(-8 if left else 8, 10 if n % 2 else -4),
                        textcoords="offset points", ha="right" if left else "left", va="center", fontsize=7, color="black",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "alpha": 0.85})

    ax.set_ylim(0, ymax)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: display.ratio(value)))  # "80 %", as everywhere
    ax.set_ylabel("margin ratio (maintenance ÷ equity)")
    span = (max(times) - min(times)) if times else timedelta(0)
    locator = AutoDateLocator(tz=matplotlib.dates.UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(DateFormatter(_time_format(span), tz=matplotlib.dates.UTC))
    ax.set_xlabel("time (UTC)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if any(s.points or s.alerts for s in series):
        ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
