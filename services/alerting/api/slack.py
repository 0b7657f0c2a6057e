"""POST /v1/slack/interactions: the Acknowledge, Snooze and False alarm buttons.

Slack signs every request (v0: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with
the app's signing secret); a request without a valid signature, or with a
timestamp more than five minutes off, is refused before anything is parsed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from slack_sdk.signature import Clock, SignatureVerifier

from services.alerting.book import AlertBook, NotFoundError
from services.common.problems import ProblemError, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/slack", tags=["slack"])
SNOOZE = timedelta(hours=1)


ACTIONS = ("acknowledge", "snooze", "false_alarm")


def _take(book: AlertBook, name: str, incident_id: str) -> int:
    """The button's action on every open alert of the incident (the database, off the
    event loop); how many alerts it moved."""
    if name == "acknowledge":
        return book.act_on_incident(incident_id, "acknowledge")
    if name == "snooze":
        return book.act_on_incident(incident_id, "snooze", until=book.clock() + SNOOZE)
    book.act_on_incident(incident_id, "label", label="false_positive")
    return book.act_on_incident(incident_id, "resolve")


class _Clock(Clock):
    def __init__(self, book: AlertBook) -> None:
        self.book = book

    def now(self) -> float:
        return self.book.clock().timestamp()


@router.post(
    "/interactions",
    responses={
        200: {"description": "the action was taken (or there was nothing to do)"},
        **problem_responses(400, 401, 404, 503),
    },
)
async def interactions(request: Request) -> JSONResponse:
    book: AlertBook = request.app.state.book
    secret = request.app.state.slack_signing_secret
    if secret is None:
        raise ProblemError(503, "Slack interactivity is off", "set OPSWATCH_SLACK_SIGNING_SECRET")
    body = await request.body()
    verifier = SignatureVerifier(secret.get_secret_value(), clock=_Clock(book))
    stamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not (stamp.isdigit() and verifier.is_valid(body, stamp, signature)):
        raise ProblemError(401, "Bad signature", "the request is not signed by Slack")
    try:
        payload = orjson.loads(parse_qs(body.decode())["payload"][0])
        action = payload["actions"][0]
        name, incident_id = action["action_id"], action["value"]
        user = payload.get("user", {}).get("username") or payload.get("user", {}).get("id")
    except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
        raise ProblemError(400, "Not an interaction", "expected a block_actions payload") from None
    if name not in ACTIONS:
        raise ProblemError(400, "Unknown action", f"no action {name!r}")
    try:
        moved = await run_in_threadpool(_take, book, name, incident_id)
    except NotFoundError:
        raise ProblemError(404, "Incident not found", f"no incident {incident_id!r}") from None
    log.info("slack action", extra={"action": name, "incident": incident_id, "user": user})
    return JSONResponse({"ok": True, "action": name, "alerts": moved})
