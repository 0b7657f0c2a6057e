"""The metric catalog: the built-in one, user metrics, and clear errors for bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.detector.embedded import DEMO_SERIES
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
    with pytest.raises(CatalogError, match=expected) as refused:
        load_catalog(path)
    assert "Value error" not in str(refused.value)  # the check's own words, not pydantic's


def metric(measure: str, kind: str = "mean") -> str:
    """A catalog whose second metric, ``m`` (line 5), takes ``measure`` on line 7."""
    first = "  gmv:\n    kind: count\n    measure: {type: order}\n"
    return f"metrics:\n{first}  m:\n    kind: {kind}\n    measure: {measure}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            metric("{type: order, where: {status: paid}, field: amout}"),
            "bad.yaml line 7: metrics.m.measure.field: order events have no field 'amout';"
            " numeric fields: amount",
        ),
        (
            metric("{type: order, field: status}"),
            "bad.yaml line 7: metrics.m.measure.field: 'status' of order events is not a number;"
            " numeric fields: amount",
        ),
        (
            metric("{type: feedback, field: category}", "sum"),
            "metrics.m.measure.field: 'category' of feedback events is not a number;"
            " numeric fields: nps, rating",
        ),
        (
            metric("{field: amout}", "sum"),
            "metrics.m.measure.field: no event type has 'amout';"
            " numeric fields: amount, nps, rating",
        ),
        (
            metric("{type: order, where: {plan: pro}}", "count"),
            "bad.yaml line 7: metrics.m.measure.where.plan: order events have no field 'plan';"
            " fields: amount, channel, currency, event_id, order_id, platform, region, status,"
            " type, user_id",
        ),
        (
            metric("{type: order, where: {attributes: x}}", "count"),
            "metrics.m.measure.where.attributes: order events have no field 'attributes'",
        ),
        (
            metric("{type: order, where: {status: [paid, piad]}}", "count"),
            "metrics.m.measure.where.status: 'piad' is not a status of order events;"
            " choices: cancelled, created, paid, payment_failed, refunded",
        ),
        (
            "metrics:\n  m:\n    kind: ratio\n"
            "    numerator: {type: order, where: {action: login}}\n"
            "    denominator: {type: order}\n",
            "line 4: metrics.m.numerator.where.action: order events have no field 'action'",
        ),
        (
            metric("{type: order}", "count")
            + "  gmv:\n    kind: sum\n    measure: {type: order}\n",
            "bad.yaml line 8: metrics.gmv: given twice (first at line 2): only one can be meant",
        ),
        (
            "metrics:\n  m:\n    kind: count\n    kind: mean\n    measure: {type: order}\n",
            "bad.yaml line 4: metrics.m.kind: given twice (first at line 3)",
        ),
    ],
    ids=[
        "misspelled-field",
        "text-field",
        "choice-field",
        "field-of-no-type",
        "unknown-where-key",
        "where-on-attributes",
        "where-value-not-a-choice",
        "where-key-of-another-type",
        "metric-given-twice",
        "key-given-twice",
    ],
)
def test_a_measure_the_event_contract_cannot_give_is_refused_naming_the_metric_and_choices(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert str(refused.value).startswith(f"{path} line ")
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "text",
    [
        "metrics: &m\n  m:\n    kind: count\n    measure: {type: order}\n    help: [*m]\n",
        "metrics:\n  m:\n    kind: count\n    measure: {type: order}\n"
        "    help: {1: one, '1': the other}\n",
    ],
    ids=["alias-to-itself", "number-and-string-keys"],
)
def test_keys_given_once_are_not_taken_for_twice(tmp_path: Path, text: str) -> None:
    """A YAML alias that repeats its own node, and the keys 1 and "1", are no repeated
    keys: the check ends, and the file is judged on what it says (help is no text)."""
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert "given twice" not in str(refused.value)
    assert "metrics.m.help" in str(refused.value)


def test_the_built_in_catalog_and_the_demo_series_keep_the_event_contract() -> None:
    load_catalog(DEFAULT_CATALOG, DEMO_SERIES)


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


@pytest.mark.parametrize(
    "command", [["replay", "-i", "events", "-o", "alerts"], ["run", "detector"]]
)
def test_a_catalog_measuring_a_field_events_lack_stops_replay_and_the_detector_at_start(
    tmp_path: Path, command: list[str]
) -> None:
    """One line, exit 2, before any event is read (the detector before it reaches Kafka)."""
    path = tmp_path / "bad.yaml"
    path.write_text(metric("{type: order, where: {status: paid}, field: amout}"))
    (tmp_path / "events").write_text('{"type": "order"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *command],
        env={
            **os.environ,
            "OPSWATCH_METRICS_FILE": str(path),
            "OPSWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:9",  # nothing listens: never reached
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"metric catalog error: {path} line 7: metrics.m.measure.field: order events have no"
        " field 'amout'; numeric fields: amount\n"
    )
    assert not (tmp_path / "alerts").exists()


def test_an_appended_files_problem_names_that_file_and_its_line(tmp_path: Path) -> None:
    extra = tmp_path / "series.yaml"
    extra.write_text("metric_events:\n  names:\n    stock: {summary: median}\n")
    with pytest.raises(CatalogError, match=rf"^{extra} line 3: metric_events\.names\.stock"):
        load_catalog(DEFAULT_CATALOG, extra)
    extra.write_text("metrics:\n  x: {}\n")
    with pytest.raises(CatalogError, match=rf"^{extra}: metrics: already in"):
        load_catalog(DEFAULT_CATALOG, extra)
