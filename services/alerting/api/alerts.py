"""GET /v1/alerts and GET /v1/alerts/{id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel

from services.alerting.store import AlertFilter, AlertStore, CursorError
from services.common.contracts import Alert
from services.common.problems import ProblemError, problem_responses

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class AlertPage(BaseModel):
    items: list[Alert]
    next_page_token: str | None


def get_store(request: Request) -> AlertStore:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[AlertStore, Depends(get_store)]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.get("", response_model=AlertPage, responses=problem_responses(400, 422))
def list_alerts(
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved"] | None = None,
    severity: Literal["critical", "warning", "info"] | None = None,
    metric: str | None = None,
    region: str | None = None,
    channel: str | None = None,
    platform: str | None = None,
    since: Annotated[AwareDatetime | None, Query(description="updated at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="started at or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> AlertPage:
    """Alerts, newest first. A slice dimension filter matches alerts of slices that fix
    that dimension to the value (region=eu finds eu, eu/web, eu/web/ios, ...)."""
    flt = AlertFilter(status, severity, metric, region, channel, platform, _iso(since), _iso(until))
    try:
        items, token = store.list(flt, limit, page_token)
    except CursorError as exc:
        raise ProblemError(400, "Invalid page token", str(exc)) from None
    return AlertPage(items=[Alert.model_validate(i) for i in items], next_page_token=token)


@router.get("/{alert_id}", response_model=Alert, responses=problem_responses(404))
def get_alert(alert_id: str, store: StoreDep) -> Alert:
    body = store.get(alert_id)
    if body is None:
        raise ProblemError(404, "Alert not found", f"no alert with id {alert_id!r}")
    return Alert.model_validate(body)
