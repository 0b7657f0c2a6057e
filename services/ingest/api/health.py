"""GET /readyz: ready when Kafka is reachable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from services.common.problems import ProblemError, problem_responses

router = APIRouter(tags=["health"])


@router.get("/readyz", responses=problem_responses(503))
async def readyz(request: Request) -> dict[str, str]:
    if not await run_in_threadpool(request.app.state.sink.ready):
        raise ProblemError(503, "Not ready", "Kafka is not reachable")
    return {"status": "ready"}
