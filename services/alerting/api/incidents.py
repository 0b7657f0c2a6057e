"""/v1/incidents: alerts that share a cause, listed and one by one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from services.alerting.api.alerts import iso
from services.alerting.api.deps import (
    SEARCH,
    BookDep,
    PathId,
    QueryText,
    ReadAuth,
    StoreDep,
    WriteAuth,
)
from services.alerting.review import review, similar_to
from services.alerting.store import PAGE_TOKEN, IncidentFilter
from services.common.contracts import Incident, Note, NoteRequest, Timestamp
from services.common.problems import ProblemError, problem_responses

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


class IncidentPage(BaseModel):
    items: list[Incident]
    next_page_token: str | None


@router.get(
    "",
    response_model=IncidentPage,
    dependencies=[ReadAuth],
    responses=problem_responses(401, 422),
)
def list_incidents(
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved"] | None = None,
    severity: Literal["critical", "warning", "info"] | None = None,
    family: QueryText = None,
    since: Annotated[Timestamp | None, Query(description="updated at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="opened at or before")] = None,
    q: Annotated[str | None, SEARCH] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[
        str | None, Query(pattern=PAGE_TOKEN, description="next_page_token of the page before")
    ] = None,
) -> IncidentPage:
    """Incidents, newest first, each with its notes."""
    flt = IncidentFilter(status, severity, family, iso(since), iso(until), q)
    items, token = store.list_incidents(flt, limit, page_token)
    return IncidentPage(items=[Incident.model_validate(i) for i in items], next_page_token=token)


@router.get(
    "/{incident_id}",
    response_model=Incident,
    dependencies=[ReadAuth],
    responses=problem_responses(401, 404, 422),
)
def get_incident(incident_id: PathId, store: StoreDep) -> Incident:
    """The incident with its notes and up to three resolved incidents like it (the
    same metric family on a related slice, the most dimension values shared first,
    then the most recent), with their label, time to resolve and notes."""
    body = store.get_incident(incident_id)
    if body is None:
        raise ProblemError(404, "Incident not found", f"no incident with id {incident_id!r}")
    return Incident.model_validate({**body, "similar": similar_to(store, body)})


@router.get(
    "/{incident_id}/review",
    dependencies=[ReadAuth],
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/markdown": {}}, "description": "The review"},
        **problem_responses(401, 404, 422),
    },
)
def get_review(incident_id: PathId, request: Request, store: StoreDep) -> PlainTextResponse:
    """The post-incident review in Markdown: summary, timeline, impact, chart, notes,
    label and similar past incidents."""
    chart = str(request.url_for("incident_chart", incident_id=incident_id))
    text = review(store, incident_id, request.app.state.timezone, chart)
    if text is None:
        raise ProblemError(404, "Incident not found", f"no incident with id {incident_id!r}")
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.post(
    "/{incident_id}/notes",
    response_model=Note,
    status_code=201,
    dependencies=[WriteAuth],
    responses=problem_responses(400, 401, 404, 422),
)
def add_note(incident_id: PathId, request: NoteRequest, book: BookDep) -> Note:
    """What was learned: the cause, an action taken, or a lesson for next time."""
    note = book.store.add_note(
        incident_id, request.author, request.kind, request.text, book.clock()
    )
    if note is None:
        raise ProblemError(404, "Incident not found", f"no incident with id {incident_id!r}")
    return Note.model_validate(note)
