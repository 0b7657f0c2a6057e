"""POST /v1/slack/interactions: the Acknowledge, Snooze, False alarm and Add note
buttons, and the submission of the note's modal.

Slack signs every request (v0: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with
the app's signing secret); a request without a valid signature, or with a
timestamp more than five minutes off, is refused before anything is parsed.

Add note opens a modal (``views.open`` with a slack_bot receiver's token); its
submission (``view_submission``) stores the note, as POST
/v1/incidents/{id}/notes does, and replies with it in the incident's thread of
every bot receiver that posted the incident.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier

from services.alerting import messages
from services.alerting.book import AlertBook, NotFoundError
from services.alerting.notify import SlackBotSender
from services.common.contracts import NoteRequest, unix_seconds
from services.common.problems import ProblemError, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/slack", tags=["slack"])
SNOOZE = timedelta(hours=1)


ACTIONS = ("acknowledge", "snooze", "false_alarm")
NOTE = "add_note"
SLACK_FAILURES = (SlackApiError, URLError, TimeoutError, ConnectionError)


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


def _who(payload: Mapping[str, Any]) -> str:
    user = payload.get("user")
    if not isinstance(user, dict):
        return "slack"
    return str(user.get("username") or user.get("name") or user.get("id") or "slack")[:100]


def _signed(verifier: SignatureVerifier, body: bytes, stamp: str, signature: str) -> str | None:
    """The body as text if Slack signed it, else None: also when the timestamp is not
    Unix seconds, the body not UTF-8 or the signature not ASCII (which the verifier
    would fail on rather than refuse)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    if unix_seconds(stamp) is None or not signature.isascii():
        return None
    return text if verifier.is_valid(text, stamp, signature) else None


def _bots(request: Request) -> dict[str, SlackBotSender]:
    bots: dict[str, SlackBotSender] = request.app.state.slack_bots
    if not bots:
        raise ProblemError(
            503,
            "Notes from Slack are off",
            "Add note needs a slack_bot receiver: its token opens the modal and replies in threads",
        )
    return bots


def _open_note(
    book: AlertBook, bots: Mapping[str, SlackBotSender], incident_id: str, trigger: str
) -> None:
    incident = book.store.get_incident(incident_id)
    if incident is None:
        raise NotFoundError(incident_id)
    told = [b for name, b in bots.items() if book.store.delivery(name, incident_id) is not None]
    (told or list(bots.values()))[0].open_view(trigger, messages.note_modal(incident))


def _save_note(
    book: AlertBook, bots: Mapping[str, SlackBotSender], incident_id: str, note: NoteRequest
) -> bool:
    """Store the note and reply with it in the incident's threads; False when there
    is no such incident. A thread that cannot be reached is logged: the note stays."""
    saved = book.store.add_note(incident_id, note.author, note.kind, note.text, book.clock())
    if saved is None:
        return False
    for name, bot in bots.items():
        ref = book.store.delivery(name, incident_id)
        if ref is None:
            continue
        try:
            bot.reply(ref, messages.note_reply(saved))
        except SLACK_FAILURES as exc:
            log.warning("a note could not be posted in the thread of %s: %s", name, exc)
    return True


def _errors(errors: dict[str, str]) -> JSONResponse:
    """Slack shows these under the modal's fields and keeps it open."""
    return JSONResponse({"response_action": "errors", "errors": errors})


async def _submitted(request: Request, payload: Mapping[str, Any]) -> Response:
    try:
        view = payload["view"]
        if view["callback_id"] != "add_note":
            raise ProblemError(400, "Unknown view", f"no view {view['callback_id']!r}")
        incident_id = str(view["private_metadata"])
        values = view["state"]["values"]
        kind = (values["kind"]["kind"].get("selected_option") or {}).get("value")
        text = values["text"]["text"].get("value") or ""
        if not isinstance(text, str):
            raise TypeError(text)
    except (KeyError, TypeError, AttributeError):
        raise ProblemError(400, "Not a note", "expected the Add note modal's submission") from None
    try:
        note = NoteRequest(author=_who(payload), text=text, kind=kind)
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        return _errors({"kind" if field == "kind" else "text": exc.errors()[0]["msg"]})
    bots = _bots(request)
    if not await run_in_threadpool(_save_note, request.app.state.book, bots, incident_id, note):
        return _errors({"text": f"no incident {incident_id!r} any more"})
    log.info("slack note", extra={"incident": incident_id, "user": note.author})
    return Response(status_code=200)


@router.post(
    "/interactions",
    responses={
        200: {"description": "the action was taken (or there was nothing to do)"},
        **problem_responses(400, 401, 404, 502, 503),
    },
)
async def interactions(request: Request) -> Response:
    book: AlertBook = request.app.state.book
    secret = request.app.state.slack_signing_secret
    if secret is None:
        raise ProblemError(503, "Slack interactivity is off", "set OPSWATCH_SLACK_SIGNING_SECRET")
    body = await request.body()
    verifier = SignatureVerifier(secret.get_secret_value(), clock=_Clock(book))
    stamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    text = _signed(verifier, body, stamp, signature)
    if text is None:
        raise ProblemError(401, "Bad signature", "the request is not signed by Slack")
    try:
        payload = orjson.loads(parse_qs(text)["payload"][0])
        if payload.get("type") == "view_submission":
            return await _submitted(request, payload)
        action = payload["actions"][0]
        name, incident_id = action["action_id"], action["value"]
        if not (isinstance(name, str) and isinstance(incident_id, str)):
            raise TypeError(action)
        user = _who(payload)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise ProblemError(400, "Not an interaction", "expected a block_actions payload") from None
    if name not in (*ACTIONS, NOTE):
        raise ProblemError(400, "Unknown action", f"no action {name!r}")
    try:
        if name == NOTE:
            trigger = str(payload.get("trigger_id", ""))
            await run_in_threadpool(_open_note, book, _bots(request), incident_id, trigger)
            return JSONResponse({"ok": True, "action": name})
        moved = await run_in_threadpool(_take, book, name, incident_id)
    except NotFoundError:
        raise ProblemError(404, "Incident not found", f"no incident {incident_id!r}") from None
    except SLACK_FAILURES as exc:
        raise ProblemError(502, "Slack refused the modal", str(exc)[:200]) from None
    log.info("slack action", extra={"action": name, "incident": incident_id, "user": user})
    return JSONResponse({"ok": True, "action": name, "alerts": moved})
