"""The HTTP services' OpenAPI documents declare every error they give, as problem+json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.runtime import wall_clock
from services.alerting.store import AlertStore

PLAIN = {"/healthz", "/metrics"}


def alerting_operations(tmp_path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    book = AlertBook(
        AlertStore(f"sqlite:///{tmp_path / 'a.db'}"), {}, Routing(AlertingConfig(), {}), wall_clock
    )
    spec = create_app(book, CollectorRegistry()).openapi()
    return [
        (method, path, op)
        for path, ops in spec["paths"].items()
        if path not in PLAIN
        for method, op in ops.items()
    ]


def test_every_alerting_error_is_declared_as_problem_json(tmp_path: Path) -> None:
    operations = alerting_operations(tmp_path)
    assert len(operations) == 17
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        errors = {c: r for c, r in op["responses"].items() if c.startswith(("4", "5"))}
        assert "401" in errors, f"{where} does not declare 401"
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in errors, f"{where} takes input but does not declare 422"
        for code, response in errors.items():
            assert "application/problem+json" in response["content"], f"{where} {code}"


@pytest.mark.parametrize("action", ["acknowledge", "resolve", "snooze", "label"])
def test_writes_declare_conflict_and_require_the_bearer_scheme(tmp_path: Path, action: str) -> None:
    [op] = [
        op
        for method, path, op in alerting_operations(tmp_path)
        if method == "post" and path.endswith(f"/{action}")
    ]
    assert {"404", "409"} <= set(op["responses"])
    assert op["security"] == [{"HTTPBearer": []}]
