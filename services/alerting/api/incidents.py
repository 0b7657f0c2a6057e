"""/v1/incidents: alerts that share a cause, listed and one by one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from services.alerting.api.alerts import iso, page_error
from services.alerting.api.deps import ReadAuth, StoreDep
from services.alerting.store import CursorError, IncidentFilter
from services.common.contracts import Incident
from services.common.problems import ProblemError, problem_responses

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


class IncidentPage(BaseModel):
    items: list[Incident]
    next_page_token: str | None


@router.get(
    "",
    response_model=IncidentPage,
    dependencies=[ReadAuth],
    responses=problem_responses(400, 401, 422),
)
def list_incidents(
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved"] | None = None,
    severity: Literal["critical", "warning", "info"] | None = None,
    family: str | None = None,
    since: Annotated[AwareDatetime | None, Query(description="updated at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="opened at or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str | None = None,
) -> IncidentPage:
    """Incidents, newest first."""
    flt = IncidentFilter(status, severity, family, iso(since), iso(until))
    try:
        items, token = store.list_incidents(flt, limit, page_token)
    except CursorError as exc:
        raise page_error(exc) from None
    return IncidentPage(items=[Incident.model_validate(i) for i in items], next_page_token=token)


@router.get(
    "/{incident_id}",
    response_model=Incident,
    dependencies=[ReadAuth],
    responses=problem_responses(401, 404, 422),
)
def get_incident(incident_id: str, store: StoreDep) -> Incident:
    body = store.get_incident(incident_id)
    if body is None:
        raise ProblemError(404, "Incident not found", f"no incident with id {incident_id!r}")
    return Incident.model_validate(body)
