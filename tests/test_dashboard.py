"""contrib/grafana/alerter.json queries only what the daemon exports: every metric name in its
PromQL expressions (panels and template variables) is one of the registry's, with labels that
metric carries; every function is a PromQL function."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alerter.metrics import Metrics
from alerter.models import Health, Level, ScopeState

DASHBOARD = json.loads((Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "alerter.json").read_text())

FUNCTIONS = {  # PromQL's functions and aggregation operators
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "count_values", "delta", "deriv", "floor", "group", "histogram_quantile",
    "idelta", "increase", "irate", "label_replace", "last_over_time", "max", "max_over_time", "min", "min_over_time",
    "quantile", "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "stddev", "stdvar", "sum",
    "sum_over_time", "time", "timestamp", "topk", "vector",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def queries() -> list[tuple[str, str]]:
    """(PromQL expression, legend format) of every panel target and template variable."""
    found = [(t["expr"], t.get("legendFormat", "")) for p in panels(DASHBOARD["panels"]) for t in p.get("targets", [])]
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): the metric's selector, the label kept
            metric, label = re.fullmatch(rf"label_values\(\s*({IDENT})\s*,\s*(\w+)\s*\)", variable["query"]["query"]).groups()
            found.append((f"group by ({label}) ({metric})", f"{{{{{label}}}}}"))
    return found


def expressions() -> list[str]:
    return [expr for expr, _ in queries()]


def parse(expr: str) -> tuple[list[tuple[str, set[str]]], set[str], set[str]]:
    """(selectors as (metric, matcher labels), grouping labels, functions) of a PromQL expression."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals (matcher values)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors ([5m], [$__rate_interval])
    grouping: set[str] = set()

    def group(match):
        grouping.update(label.strip() for label in match.group(2).split(",") if label.strip())
        return " "

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", group, text)
    selectors = []

    def selector(match):
        labels = {m.group(1) for m in re.finditer(rf"({IDENT})\s*(=~|!~|!=|=)", match.group(2))}
        selectors.append((match.group(1), labels))
        return " "

    text = re.sub(rf"({IDENT})\s*\{{([^}}]*)\}}", selector, text)
    functions = set(re.findall(rf"({IDENT})\s*\(", text))
    text = re.sub(rf"({IDENT})\s*\(", "(", text)
    for name in re.findall(rf"(?<![\w.]){IDENT}", text):
        if name not in KEYWORDS:
            selectors.append((name, set()))
    return selectors, grouping, functions


def exported() -> dict[str, set[str]]:
    """Every series name the daemon's registry exports → the labels it carries, from a registry
    that has seen one of everything (names also from the bare registry: no metric is missed)."""
    m = Metrics()
    names = {}
    for family in m.registry.collect():
        names[family.name + ("_total" if family.type == "counter" else "")] = set()
    health = Health(account="a", exchange="binanceusdm", scope="account", margin_ratio=0.5, equity=1.0, maintenance_margin=0.5,
                    deposit_needed=0.0, liquidation_move=None)
    m.observe_poll("a", [health], {"account": ScopeState("a", "account", level=Level.WARNING)})
    m.observe_poll_error("a", "transient")
    m.observe_delivery("c", True)
    m.observe_heartbeat(True)
    m.observe_stream("binanceusdm", "prices", "", True, age=lambda: 1.0)
    for family in m.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_the_parser_reads_selectors_groupings_and_functions():
    selectors, grouping, functions = parse(
        'sum by (account, kind) (increase(alerter_poll_errors_total{account=~"$account", kind!="x{y}"}[$__rate_interval])) / time()')
    assert selectors == [("alerter_poll_errors_total", {"account", "kind"})]
    assert grouping == {"account", "kind"} and functions == {"sum", "increase", "time"}
    assert parse("time() - (alerter_last_heartbeat_success_timestamp_seconds > 0)")[0] == [("alerter_last_heartbeat_success_timestamp_seconds", set())]


@pytest.mark.parametrize("expr, legend", queries())
def test_every_query_uses_exported_metrics_and_their_labels(expr, legend):
    metrics = exported()
    selectors, grouping, functions = parse(expr)
    assert selectors, f"no metric in {expr!r}"
    assert functions <= FUNCTIONS, f"not PromQL functions: {functions - FUNCTIONS}"
    labels: set[str] = set()
    for name, matched in selectors:
        assert name in metrics, f"{name} is not exported by the daemon (exported: {sorted(metrics)})"
        assert matched <= metrics[name], f"{name} has no label {matched - metrics[name]}"
        labels |= metrics[name]
    assert grouping <= labels, f"grouped by labels none of its metrics has: {grouping - labels}"
    shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    assert shown <= (grouping or labels), f"the legend {legend!r} names labels the result does not have"


def test_the_dashboard_covers_ratio_level_polls_deliveries_and_heartbeat():
    used = {name for expr in expressions() for name, _ in parse(expr)[0]}
    assert used >= {"alerter_margin_ratio", "alerter_level", "alerter_last_poll_success_timestamp_seconds",
                    "alerter_poll_errors_total", "alerter_deliveries_total", "alerter_heartbeats_total",
                    "alerter_last_heartbeat_success_timestamp_seconds"}
    ids = [p["id"] for p in panels(DASHBOARD["panels"])]
    assert len(ids) == len(set(ids))
    ratio = next(p for p in panels(DASHBOARD["panels"]) if p["title"] == "Margin ratio per scope")
    bands = [s["value"] for s in ratio["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    from alerter.models import Thresholds

    assert bands == [None, Thresholds.warning, Thresholds.call, Thresholds.critical]  # the defaults, as docs/operations.md says
    level = next(p for p in panels(DASHBOARD["panels"]) if p["type"] == "state-timeline")
    texts = {k: v["text"] for k, v in level["fieldConfig"]["defaults"]["mappings"][0]["options"].items()}
    assert texts == {str(int(lv)): lv.label for lv in Level}
