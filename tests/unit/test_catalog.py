"""The metric catalog: the built-in one, user metrics, and clear errors for bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.detector.engine.catalog import DEFAULT_CATALOG, CatalogError, load_catalog

DESIGN_METRICS = {
    "conversion_rate",
    "checkout_conversion",
    "payment_failure_rate",
    "order_count",
    "gmv",
    "avg_order_value",
    "cancel_rate",
    "active_users",
    "returning_user_rate",
    "churn_actions",
    "lapsed_users",
    "avg_rating",
    "negative_feedback_rate",
    "complaint_rate",
}


def test_the_built_in_catalog_has_the_design_metrics() -> None:
    assert set(load_catalog().names) >= DESIGN_METRICS


def test_a_user_metric_is_added_without_code(tmp_path: Path) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(
        DEFAULT_CATALOG.read_text() + "  refund_rate:\n    kind: ratio\n    alert_on: up\n"
        "    numerator: {type: order, where: {status: refunded}}\n"
        "    denominator: {type: order, where: {status: paid}}\n"
    )
    catalog = load_catalog(path)
    assert "refund_rate" in catalog.names
    assert catalog.version != load_catalog().version


def test_metric_events_take_their_names_declarations_or_the_default(tmp_path: Path) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(
        DEFAULT_CATALOG.read_text() + "metric_events:\n"
        "  default: {summary: last, severity: info}\n"
        "  names:\n"
        "    stock_level: {alert_on: down, unit: items, severity: critical}\n"
        "    delivery_minutes: {summary: max, alert_on: up, unit: min}\n"
    )
    series = load_catalog(path).series
    stock, delivery, other = (series.of(n) for n in ("stock_level", "delivery_minutes", "x"))
    assert (stock.summary, stock.alert_on, stock.unit, stock.severity) == (
        "last",
        "down",
        "items",
        "critical",
    )
    assert (delivery.summary, delivery.alert_on, delivery.severity) == ("max", "up", "info")
    assert (other.summary, other.alert_on, other.unit) == ("last", "both", "")
    # without the section (the built-in catalog), every name: the mean, both directions
    built_in = load_catalog().series.of("stock_level")
    assert (built_in.summary, built_in.alert_on, built_in.severity) == ("mean", "both", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics:\n  m:\n    kind: median\n    measure: {type: order}\n", "line 3"),
        ("metrics:\n  m:\n    kind: ratio\n    numerator: {type: order}\n", "denominator"),
        ("metrics:\n  m:\n    kind: sum\n    measure: {type: order}\n", "needs 'field'"),
        ("metrics: [\n", "not valid YAML"),
        ("metrics: {}\n", "metrics"),
        (
            "metrics:\n  m:\n    kind: count\n    measure: {distinct: user_id, lapsed_after: 2w}\n",
            "not a duration like",
        ),
        ("metrics:\n  m:\n    kind: count\n    measure: {seen_within: 1d}\n", "need 'distinct"),
        (
            "metrics:\n  m:\n    kind: count\n    measure: {type: order}\n"
            "metric_events:\n  names:\n    stock_level: {summary: median}\n",
            "line 7: metric_events.names.stock_level.summary",
        ),
        (
            "metrics:\n  m:\n    kind: count\n    measure: {type: order}\n"
            "metric_events:\n  names:\n    Stock-Level: {summary: last}\n",
            "should match pattern",
        ),
        (
            "metrics:\n  m:\n    kind: count\n    measure: {type: order}\n"
            "metric_events:\n  default: {alert_on: sideways}\n",
            "line 6: metric_events.default.alert_on",
        ),
        (
            "metrics:\n  m:\n    kind: count\n    measure: {type: order}\n"
            "metric_events:\n  names:\n    m: {summary: last}\n",
            "cannot be a catalog metric's too",
        ),
    ],
    ids=[
        "unknown-kind",
        "ratio-without-denominator",
        "sum-without-field",
        "bad-yaml",
        "empty",
        "bad-duration",
        "history-without-distinct",
        "unknown-summary",
        "bad-series-name",
        "bad-default-direction",
        "series-named-as-a-metric",
    ],
)
def test_bad_files_are_refused_with_a_message_naming_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=expected):
        load_catalog(path)


def test_a_bad_catalog_stops_the_command_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("metrics:\n  m:\n    kind: median\n    measure: {type: order}\n")
    events = tmp_path / "events.ndjson"
    events.write_text("")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "replay",
            "-i",
            str(events),
            "-o",
            str(tmp_path / "o"),
        ],
        env={**os.environ, "OPSWATCH_METRICS_FILE": str(path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "bad.yaml line 3" in done.stderr


def test_a_catalog_that_is_not_utf8_stops_the_command_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("metrics:\n  m:\n    help: Café\n".encode("latin-1"))
    events = tmp_path / "events.ndjson"
    events.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", "-i", str(events), "-o", "o"],
        env={**os.environ, "OPSWATCH_METRICS_FILE": str(path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == f"metric catalog error: {path} line 3: the metric catalog is not UTF-8 text\n"
    )


def test_an_appended_files_problem_names_that_file_and_its_line(tmp_path: Path) -> None:
    extra = tmp_path / "series.yaml"
    extra.write_text("metric_events:\n  names:\n    stock: {summary: median}\n")
    with pytest.raises(CatalogError, match=rf"^{extra} line 3: metric_events\.names\.stock"):
        load_catalog(DEFAULT_CATALOG, extra)
    extra.write_text("metrics:\n  x: {}\n")
    with pytest.raises(CatalogError, match=rf"^{extra}: metrics: already in"):
        load_catalog(DEFAULT_CATALOG, extra)
