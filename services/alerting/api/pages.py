"""The incident pages for people: GET /incidents and GET /incidents/{id} (HTML).

Reads honour OPSWATCH_API_READ_TOKEN as the API does, as a bearer token or a
cookie; an incident's page also opens with a signed link (``expires`` and
``signature``, as notifications carry it), which sets a cookie so that the page's
chart loads too."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.alerting.api.deps import (
    READ_COOKIE,
    SEARCH,
    PathId,
    StoreDep,
    incident_access,
    may_read,
)
from services.alerting.links import LINK_COOKIE, Grant
from services.alerting.messages import duration, num, where
from services.alerting.pages import local, timeline
from services.alerting.review import similar_to
from services.alerting.store import AlertStore, IncidentFilter
from services.common.problems import ProblemError

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")
RECENT = 50


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


def _refused(status: int, why: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>opswatch</title><p>{escape(why)}</p>", status_code=status
    )


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    grant: tuple[str, Grant] | None = None,
) -> Response:
    """The page; ``grant``: an incident's id and the signed link that opened it, kept
    in a cookie until the link expires."""
    tz: str = request.app.state.timezone

    def local_time(value: str | None) -> str:
        return local(value, tz)

    def local_dt(value: datetime) -> str:
        return local(value.isoformat(), tz)

    context |= {
        "local": local_time,
        "local_dt": local_dt,
        "where": where,
        "num": num,
        "duration": duration,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status)
    if grant is not None:
        incident_id, link = grant
        response.set_cookie(
            LINK_COOKIE + incident_id,
            link.cookie(),
            expires=datetime.fromtimestamp(link.expires, UTC),
            httponly=True,
            samesite="lax",
        )
    return response


def _incident_page(store: AlertStore, incident_id: str) -> dict[str, Any] | None:
    incident = store.get_incident(incident_id)
    if incident is None:
        return None
    alerts = [body for body, _ in store.members(incident)]
    events = timeline(alerts, store.notifications(incident_id), incident["notes"])
    like = similar_to(store, incident)
    return {"incident": incident, "alerts": alerts, "timeline": events, "similar": like}


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(
    incident_id: PathId,
    request: Request,
    store: StoreDep,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    """One incident: its chart, alerts and drivers, timeline, labels and notes."""
    try:
        link = incident_access(request, incident_id, _bearer(request), expires, signature)
    except ProblemError as exc:
        return _refused(exc.status, f"{exc.title}: {exc.detail}")
    context = await run_in_threadpool(_incident_page, store, incident_id)
    if context is None:
        return _render(request, "missing.html", {"incident_id": incident_id}, status=404)
    return _render(request, "incident.html", context, grant=(incident_id, link) if link else None)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(
    request: Request,
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved", ""] = "",
    severity: Literal["critical", "warning", "info", ""] = "",
    q: Annotated[str, SEARCH] = "",
) -> Response:
    """Open incidents and the most recent ones, filtered by status, severity and text."""
    given = _bearer(request)
    if not may_read(request.app.state.auth, given or request.cookies.get(READ_COOKIE, "")):
        return _refused(401, "The list of incidents needs the read token.")

    def listed(wanted: str | None) -> list[dict[str, Any]]:
        flt = IncidentFilter(wanted, severity or None, q=q or None)
        return store.list_incidents(flt, RECENT)[0]

    def open_and_recent() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        shown = [s for s in ("firing", "acknowledged") if status in ("", s)]
        opened = sorted(
            (i for s in shown for i in listed(s)), key=lambda i: i["opened_at"], reverse=True
        )
        return opened, listed(status or None)

    opened, recent = await run_in_threadpool(open_and_recent)
    context = {
        "open": opened,
        "recent": recent,
        "status": status,
        "severity": severity,
        "q": q,
    }
    return _render(request, "incidents.html", context)
