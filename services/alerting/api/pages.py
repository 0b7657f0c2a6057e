"""The incident pages for people: GET /incidents and GET /incidents/{id} (HTML).

Reads honour OPSWATCH_API_READ_TOKEN as the API does: a bearer token, the cookie
these pages set, or ``?token=`` on a link (which sets the cookie)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.alerting.api.deps import READ_COOKIE, StoreDep, may_read
from services.alerting.messages import num, where
from services.alerting.pages import local, timeline
from services.alerting.review import duration, similar_to
from services.alerting.store import AlertStore, IncidentFilter

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")
RECENT = 50


def _given(request: Request, token: str | None) -> str:
    header = request.headers.get("authorization", "")
    if token is not None:
        return token
    if header.lower().startswith("bearer "):
        return header[7:]
    return request.cookies.get(READ_COOKIE, "")


def _render(
    request: Request, token: str | None, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    given = _given(request, token)
    if not may_read(request.app.state.auth, given):
        return HTMLResponse(
            "<!doctype html><title>opswatch</title><p>This page needs the read token: "
            "open the link from the notification, or add <code>?token=</code>.</p>",
            status_code=401,
        )
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
    if token is not None:
        response.set_cookie(READ_COOKIE, token, httponly=True, samesite="lax")
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
    incident_id: str, request: Request, store: StoreDep, token: str | None = None
) -> Response:
    """One incident: its chart, alerts and drivers, timeline, labels and notes."""
    context = await run_in_threadpool(_incident_page, store, incident_id)
    if context is None:
        return _render(request, token, "missing.html", {"incident_id": incident_id}, status=404)
    return _render(request, token, "incident.html", context)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(
    request: Request,
    store: StoreDep,
    status: Literal["firing", "acknowledged", "resolved", ""] = "",
    severity: Literal["critical", "warning", "info", ""] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    token: str | None = None,
) -> Response:
    """Open incidents and the most recent ones, filtered by status, severity and text."""

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
    return _render(request, token, "incidents.html", context)
