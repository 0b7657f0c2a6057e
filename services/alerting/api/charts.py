"""Charts as PNG: /v1/alerts/{id}/chart.png and /v1/incidents/{id}/chart.png.

Drawn in a worker thread (matplotlib is slow and blocking), cached per version:
an alert's or incident's id, update time and status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from services.alerting.api.deps import IncidentReadAuth, PathId, ReadAuth, StoreDep
from services.alerting.charts import ChartCache, PlotData, alert_plot, incident_plot, render
from services.common.problems import ProblemError, problem_responses

router = APIRouter(tags=["charts"])
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "The chart, 800 x 400 pixels"}
}


async def _png(request: Request, key: tuple[str, ...], data: PlotData) -> Response:
    cache: ChartCache = request.app.state.charts
    png = cache.get(key)
    if png is None:
        png = await run_in_threadpool(render, data)
        cache.put(key, png)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def _version(body: dict[str, Any]) -> tuple[str, str, str]:
    return (body["id"], body["updated_at"], body["status"])


@router.get(
    "/v1/alerts/{alert_id}/chart.png",
    dependencies=[ReadAuth],
    response_class=Response,
    responses={**PNG, **problem_responses(401, 404, 422)},
)
async def alert_chart(alert_id: PathId, request: Request, store: StoreDep) -> Response:
    """The alert's windows: observed against expected and its band, the anomalous
    windows shaded, times in the business timezone (OPSWATCH_TIMEZONE)."""
    body = await run_in_threadpool(store.get, alert_id)
    if body is None:
        raise ProblemError(404, "Alert not found", f"no alert with id {alert_id!r}")
    points = await run_in_threadpool(store.series, alert_id)
    data = alert_plot(body, points, request.app.state.timezone)
    return await _png(request, ("alert", *_version(body)), data)


@router.get(
    "/v1/incidents/{incident_id}/chart.png",
    dependencies=[IncidentReadAuth],
    response_class=Response,
    responses={**PNG, **problem_responses(401, 404, 422)},
)
async def incident_chart(incident_id: PathId, request: Request, store: StoreDep) -> Response:
    """The incident's alert on its own metric and slice, with the other alerts of
    that metric (its driver slices) as thin lines. Opens with the read token, or
    with a signed link's ``expires`` and ``signature`` (as Slack fetches it); a bad
    or expired signature is 401."""
    incident = await run_in_threadpool(store.get_incident, incident_id)
    if incident is None:
        raise ProblemError(404, "Incident not found", f"no incident with id {incident_id!r}")
    members = await run_in_threadpool(store.members, incident)
    data = incident_plot(incident, members, request.app.state.timezone)
    return await _png(request, ("incident", *_version(incident)), data)
