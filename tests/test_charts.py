"""The text chart (pure) and the PNG (real matplotlib, into tmp_path)."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter.charts import BLOCKS, Series, alert_marker, plot_png, render_text
from alerter.models import Alert, AlertKind, Level, Thresholds

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def crash(t: float) -> float:
    """The demo's shape: 31 % → 91 % over 90 s, held, back to 32 % by 150 s."""
    if t <= 10:
        return 0.31
    if t <= 100:
        return 0.31 + 0.60 * (t - 10) / 90
    if t <= 110:
        return 0.91
    return max(0.32, 0.91 - 0.59 * (t - 110) / 40)


POINTS = [(T0 + timedelta(seconds=s), crash(s)) for s in range(0, 151, 2)]
ALERTS = [
    Alert(AlertKind.RAISED, Level.WARNING, "demo", "account", T0 + timedelta(seconds=70), margin_ratio=0.51),
    Alert(AlertKind.RAISED, Level.CALL, "demo", "account", T0 + timedelta(seconds=90), margin_ratio=0.71),
    Alert(AlertKind.RAISED, Level.CRITICAL, "demo", "account", T0 + timedelta(seconds=98), margin_ratio=0.86),
    Alert(AlertKind.REPEAT, Level.CRITICAL, "demo", "account", T0 + timedelta(seconds=104), margin_ratio=0.91),
    Alert(AlertKind.RESOLVED, Level.CRITICAL, "demo", "account", T0 + timedelta(seconds=138), margin_ratio=0.40),
    Alert(AlertKind.BLIND, Level.OK, "demo", "account", T0 + timedelta(seconds=150), reason="transient: timeout"),
]


def test_text_chart_of_the_crash():
    lines = render_text(POINTS, Thresholds(), markers=[(a.created_at, alert_marker(a)) for a in ALERTS])
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 72
    rows = {line.split("┤")[0].strip(): line for line in lines if "┤" in line}
    assert rows["85 %"].endswith("critical 85 %") and rows["70 %"].endswith("call 70 %") and rows["50 %"].endswith("warning 50 %")
    assert "100 %" in rows
    # the peak reaches the critical row; the start and end stay below the warning row
    cols = next(line for line in lines if "└" in line).count("─")  # the plot's width, the labels take the rest
    plot = [line[6:6 + cols] for line in lines if "┤" in line or "│" in line]
    critical = plot[1]
    assert "█" in critical and critical[0] == "┄" and critical[-1] == "┄"
    assert "12:00:00" in text and "12:02:30 UTC" in text
    axis = next(i for i, line in enumerate(lines) if "└" in line)
    marker_row = lines[axis + 2].strip()
    assert marker_row.replace(" ", "") == "WCXxRB"
    legend = " ".join(lines[axis + 3:])
    assert "W warning" in legend and "x critical again" in legend and "R resolved" in legend and "B blind" in legend


def test_text_chart_gaps_and_infinity():
    points = [(T0, 0.2), (T0 + timedelta(minutes=1), 0.3), (T0 + timedelta(minutes=10), math.inf)]
    lines = render_text(points, Thresholds(), width=60, height=10)
    assert lines[0].strip() == "▲"  # the infinite ratio overflows the top
    bottom = [line for line in lines if line.startswith("     │")][-1]  # 0–10 %
    cells = bottom[6:]
    assert cells[0] == "█" and " " in cells.strip()  # the polls stopped in between: a gap
    assert max(len(line) for line in lines) <= 60


def test_text_chart_close_thresholds_share_a_row():
    lines = render_text(POINTS, Thresholds(warning=0.5, call=0.8, critical=0.85))
    assert any(line.endswith("call 80 % · critical 85 %") for line in lines)


def test_text_chart_empty_and_single_point():
    assert render_text([], Thresholds()) == ["(no data)"]
    lines = render_text([(T0, 0.6)], Thresholds())
    assert any("█" in line for line in lines)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.floats(min_value=0, max_value=5) | st.just(math.inf)), min_size=1, max_size=60),
       st.integers(40, 120), st.integers(2, 20))
def test_text_chart_never_exceeds_its_width(points, width, height):
    pts = [(T0 + timedelta(seconds=s), r) for s, r in points]
    lines = render_text(pts, Thresholds(), width=width, height=height)
    # (at the least: the axis, 8 columns and the labels, all three on one row when it is very short)
    assert max(len(line) for line in lines) <= max(width, 6 + 8 + 1 + len("warning 50 % · call 70 % · critical 85 %"))
    assert sum(1 for line in lines if "┤" in line or "│" in line) == height
    assert set("".join(lines)) <= set(BLOCKS + "┄┤│└─▲→ %0123456789:.UTC-·abcdefghijklmnopqrstuvwxyz")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def drawn(fig) -> dict:
    """What the chart shows, read back from the figure: the ratio lines (label → (times, ratios)),
    the horizontal lines (their y), the alert markers (shape, time, y) and the texts."""
    from matplotlib.dates import num2date

    [ax] = fig.axes
    series, horizontal, markers = {}, [], []
    for line in ax.get_lines():
        xs, ys = list(line.get_xdata()), list(line.get_ydata())
        if line.get_linestyle() == "--" or (len(ys) == 2 and xs == [0, 1]):
            horizontal.append(round(float(ys[0]), 6))
        elif line.get_linestyle() in ("None", "none", "") and len(xs) == 1:
            at = xs[0] if isinstance(xs[0], datetime) else num2date(xs[0])
            markers.append((line.get_marker(), at, float(ys[0])))
        elif line.get_linestyle() == "-" and not line.get_label().startswith("_"):
            series[line.get_label()] = (xs, [float(y) for y in ys])
    return {"series": series, "horizontal": sorted(horizontal), "markers": markers,
            "texts": [t.get_text() for t in ax.texts], "ylim": ax.get_ylim(), "title": ax.get_title(),
            "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []}


def test_chart_shows_the_ratio_the_thresholds_and_every_alert():
    from alerter.charts import chart_figure

    shown = drawn(chart_figure([Series("demo · account", POINTS, Thresholds(), ALERTS)], title="demo crash"))
    assert shown["title"] == "demo crash"
    [(label, (xs, ys))] = shown["series"].items()
    assert label == "demo · account"
    assert xs == [t for t, _ in POINTS] and ys == pytest.approx([r for _, r in POINTS])
    # warning, call, critical as dashed lines; liquidation at 100 %
    assert shown["horizontal"] == [0.5, 0.7, 0.85, 1.0]
    assert {"warning 50 %", "call 70 %", "critical 85 %", "liquidation 100 %"} <= set(shown["texts"])
    # one marker per alert, at its time and ratio: raised ▲, resolved ▼, blind ✕
    assert [(m, at) for m, at, _ in shown["markers"]] == [
        ("^", ALERTS[0].created_at), ("^", ALERTS[1].created_at), ("^", ALERTS[2].created_at),
        ("^", ALERTS[3].created_at), ("v", ALERTS[4].created_at), ("X", ALERTS[5].created_at),
    ]
    assert [y for *_, y in shown["markers"][:5]] == pytest.approx([0.51, 0.71, 0.86, 0.91, 0.40])
    assert ["warning", "call", "critical", "critical (repeat)", "resolved", "blind"] == [
        t for t in shown["texts"] if t in ("warning", "call", "critical", "critical (repeat)", "resolved", "blind")]
    assert shown["legend"] == ["demo · account", "alert raised", "resolved", "blind"]
    assert shown["ylim"] == pytest.approx((0, 1.05))


def test_chart_of_several_series_names_whose_thresholds_are_whose():
    from alerter.charts import chart_figure

    other = [(t, r / 2) for t, r in POINTS]
    shown = drawn(chart_figure([Series("a · account", POINTS, Thresholds(), ALERTS[:2]),
                                Series("b · account", other, Thresholds(call=0.65), [])]))
    assert set(shown["series"]) == {"a · account", "b · account"}
    assert shown["series"]["b · account"][1] == pytest.approx([r / 2 for _, r in POINTS])
    assert shown["horizontal"] == [0.5, 0.5, 0.65, 0.7, 0.85, 0.85, 1.0]
    assert "call 65 % (b · account)" in shown["texts"] and "call 70 % (a · account)" in shown["texts"]
    assert len(shown["markers"]) == 2


def test_chart_draws_an_infinite_ratio_at_the_top():
    from alerter.charts import chart_figure

    points = [(T0, 0.4), (T0 + timedelta(minutes=1), math.inf)]
    shown = drawn(chart_figure([Series("x", points, Thresholds())]))
    top = shown["ylim"][1]
    assert shown["series"]["x"][1] == [0.4, top]


def test_png_of_the_crash_is_written(tmp_path):
    path = plot_png([Series("demo · account", POINTS, Thresholds(), ALERTS)], tmp_path / "crash.png", title="demo crash")
    assert png_size(path) == (1320, 660)


def test_png_unavailable_without_matplotlib(tmp_path, monkeypatch):
    import sys

    from alerter.charts import PlotUnavailable

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match=r"pip install 'alerter\[plot\]'"):
        plot_png([Series("x", POINTS, Thresholds())], tmp_path / "x.png")
