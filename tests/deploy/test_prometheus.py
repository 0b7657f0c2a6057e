"""Dashboards proven against a real Prometheus: the three services run an incident
through Kafka while Prometheus (Debian's package) scrapes them every second; then
every panel's and annotation's query of the shipped dashboards, its template
variables filled in, must return data. And every /metrics passes promtool."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.bench.services import free_port
from services.common.sinks import to_ingest
from tests.factories import T0, outage, traffic
from tests.integration.conftest import REPO, Stack
from tests.integration.test_alerting import configure_slack_only, evidence
from tests.integration.test_end_to_end import processed
from tests.recording import recording_server

PROMETHEUS = REPO / "deploy" / "local" / "prometheus.sh"
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every panel target and annotation of a dashboard."""
    out = [
        (f"{dashboard['uid']} / {panel['title']} / {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    out += [
        (f"{dashboard['uid']} / annotation {a['name']}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if "expr" in a
    ]
    return out


def fill(expr: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, f"a template variable is left in {expr!r}"
    return expr


@pytest.fixture
def prometheus(stack: Stack) -> Iterator[tuple[str, list[str]]]:
    """A real Prometheus; its targets are filled in by the test before ``up``."""
    port = free_port()
    targets: list[str] = []
    env = {**os.environ, "PROMETHEUS_PORT": str(port)}
    yield f"http://127.0.0.1:{port}", targets
    subprocess.run(["bash", str(PROMETHEUS), "down"], env=env, check=False, timeout=60)


def start_prometheus(url: str, targets: list[str]) -> None:
    env = {**os.environ, "PROMETHEUS_PORT": url.rsplit(":", 1)[1]}
    env["PROMETHEUS_TARGETS"] = ",".join(targets)
    subprocess.run(["bash", str(PROMETHEUS), "up"], env=env, check=True, timeout=600)


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = resp.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    stack: Stack, prometheus: tuple[str, list[str]]
) -> None:
    prom_url, targets = prometheus
    with recording_server() as slack:
        configure_slack_only(stack, f"{slack.url}/services/T0/B0/secret")
        alerting = stack.start("alerting")
        detector = stack.start("detector", health=None)
        ingest = stack.start("ingest", "/readyz")
        targets += [f"127.0.0.1:{s.port}" for s in (ingest, detector, alerting)]
        start_prometheus(prom_url, targets)
        start = T0 + timedelta(hours=12)
        incident = outage(
            {"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=2)
        )
        events = traffic(7, rate=100, start=start, incidents=[incident])
        sent = to_ingest(events, ingest.url, batch=1000)
        stack.wait(lambda: processed(detector.url) >= sent, 300)

        def firing() -> list[dict[str, Any]]:
            resp = httpx.get(f"{alerting.url}/v1/alerts", params={"status": "firing"}, timeout=5)
            return resp.json()["items"]  # type: ignore[no-any-return]

        stack.wait(lambda: bool(firing()), 120)
        stack.wait(lambda: bool(slack.requests), 60)
        variables = {"metric": firing()[0]["metric"], "slice": ".*"}
        stack.wait(
            lambda: (
                len(instant(prom_url, 'up{job="opswatch"} == 1')) == 3
                and bool(instant(prom_url, "opswatch_alerting_alerts"))
            ),
            60,
        )

        counts: dict[str, int] = {}
        empty: list[str] = []
        for path in DASHBOARDS:
            for where, expr in queries(json.loads(path.read_text())):
                n = len(instant(prom_url, fill(expr, variables)))
                counts[where] = n
                if n == 0:
                    empty.append(f"{where}: {fill(expr, variables)}")
        evidence("dashboard-panels.json", {"variables": variables, "series": counts})
        assert not empty, "queries without data:\n" + "\n".join(empty)

        for service in (ingest, detector, alerting):
            text = httpx.get(service.url + "/metrics", timeout=5).text
            check = subprocess.run(
                ["bash", str(PROMETHEUS), "promtool", "check", "metrics"],
                input=text,
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert check.returncode == 0, f"{service.name}: {check.stdout}{check.stderr}"
