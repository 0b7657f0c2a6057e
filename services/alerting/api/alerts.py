"""/v1/alerts: list, get one, and people's actions on one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from services.alerting.api.deps import BookDep, PathId, QueryText, ReadAuth, StoreDep, WriteAuth
from services.alerting.book import NotFoundError
from services.alerting.lifecycle import IllegalTransitionError
from services.alerting.store import PAGE_TOKEN, AlertFilter
from services.common.contracts import Alert, Timestamp
from services.common.problems import ProblemError, problem_responses

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
WRITE_ERRORS = problem_responses(400, 401, 404, 409, 422)


class AlertPage(BaseModel):
    items: list[Alert]
    next_page_token: str | None


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Timestamp | None = Field(
        None, description="when the snooze ends; leave out to snooze until the alert resolves"
    )


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Literal["true_positive", "false_positive", "expected"]


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.get(
    "",
    response_model=AlertPage,
    dependencies=[ReadAuth],
    responses=problem_responses(401, 422),
)
def list_alerts(
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved"] | None = None,
    severity: Literal["critical", "warning", "info"] | None = None,
    metric: QueryText = None,
    region: QueryText = None,
    channel: QueryText = None,
    platform: QueryText = None,
    incident_id: QueryText = None,
    label: Literal["true_positive", "false_positive", "expected"] | None = None,
    since: Annotated[Timestamp | None, Query(description="updated at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="started at or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[
        str | None, Query(pattern=PAGE_TOKEN, description="next_page_token of the page before")
    ] = None,
) -> AlertPage:
    """Alerts, newest first. A slice dimension filter matches alerts of slices that fix
    that dimension to the value (region=eu finds eu, eu/web, eu/web/ios, ...)."""
    flt = AlertFilter(
        status,
        severity,
        metric,
        region,
        channel,
        platform,
        iso(since),
        iso(until),
        incident_id,
        label,
    )
    items, token = store.list_alerts(flt, limit, page_token)
    return AlertPage(items=[Alert.model_validate(i) for i in items], next_page_token=token)


@router.get(
    "/{alert_id}",
    response_model=Alert,
    dependencies=[ReadAuth],
    responses=problem_responses(401, 404, 422),
)
def get_alert(alert_id: PathId, store: StoreDep) -> Alert:
    body = store.get(alert_id)
    if body is None:
        raise ProblemError(404, "Alert not found", f"no alert with id {alert_id!r}")
    return Alert.model_validate(body)


def _act(book: BookDep, alert_id: str, action: str, **kwargs: object) -> Alert:
    try:
        body = book.act(alert_id, action, **kwargs)  # type: ignore[arg-type]
    except NotFoundError:
        raise ProblemError(404, "Alert not found", f"no alert with id {alert_id!r}") from None
    except IllegalTransitionError as exc:
        raise ProblemError(409, "Illegal transition", str(exc)) from None
    return Alert.model_validate(body)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=Alert,
    dependencies=[WriteAuth],
    responses=WRITE_ERRORS,
)
def acknowledge(alert_id: PathId, book: BookDep) -> Alert:
    """Someone is on it: stops reminders; 409 if the alert is resolved."""
    return _act(book, alert_id, "acknowledge")


@router.post(
    "/{alert_id}/resolve",
    response_model=Alert,
    dependencies=[WriteAuth],
    responses=WRITE_ERRORS,
)
def resolve(alert_id: PathId, book: BookDep) -> Alert:
    """Close the alert by hand; 409 if it is resolved already."""
    return _act(book, alert_id, "resolve")


@router.post(
    "/{alert_id}/snooze",
    response_model=Alert,
    dependencies=[WriteAuth],
    responses=WRITE_ERRORS,
)
def snooze(alert_id: PathId, book: BookDep, request: SnoozeRequest | None = None) -> Alert:
    """No notifications until ``until`` (or until the alert resolves, whose resolve is
    still announced); 409 if resolved or if ``until`` is not in the future."""
    return _act(book, alert_id, "snooze", until=request.until if request else None)


@router.post(
    "/{alert_id}/label",
    response_model=Alert,
    dependencies=[WriteAuth],
    responses=WRITE_ERRORS,
)
def label(alert_id: PathId, request: LabelRequest, book: BookDep) -> Alert:
    """Whether the alert was right: feeds the precision in /v1/stats and the metrics."""
    return _act(book, alert_id, "label", label=request.label)
