"""POST /v1/events: validate a batch, produce the valid events, dead-letter the rest."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from services.common.events import (
    EVENT_TOPIC_SUFFIX,
    EventError,
    MetricNames,
    Topics,
    partition_key,
    refuse_future,
    validate,
)
from services.common.problems import ProblemError, problem_responses
from services.ingest.keys import AnswerBook
from services.ingest.metrics import Metrics
from services.ingest.sink import (
    MAX_EVENT_BYTES,
    Record,
    Sink,
    SinkRefusedError,
    SinkUnavailableError,
    deadletter,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")  # ASCII text is UTF-8 text


class Rejection(BaseModel):
    index: int
    field: str
    message: str


class IngestResult(BaseModel):
    accepted: int
    rejected: int
    errors: list[Rejection]


def get_sink(request: Request) -> Sink:
    return request.app.state.sink  # type: ignore[no-any-return]


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def get_topics(request: Request) -> Topics:
    return request.app.state.topics  # type: ignore[no-any-return]


def get_max_events(request: Request) -> int:
    return request.app.state.max_events  # type: ignore[no-any-return]


class InFlight:
    """Requests being read or produced now, at most ``limit`` (the event loop is the
    only writer, so a counter is enough)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.now = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.now >= self.limit:
            raise ProblemError(
                503,
                "Too many requests in flight",
                f"{self.limit} requests are being produced already; retry shortly",
                headers={"Retry-After": "1"},
            )
        self.now += 1
        try:
            yield
        finally:
            self.now -= 1


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and
    with 408 when no byte of it came for ``timeout_s`` (a stalled upload must not hold
    its in-flight slot for ever; a slow one that keeps sending is read)."""
    declared = request.headers.get("content-length", "")
    too_big = ProblemError(413, "Request too large", f"at most {limit} bytes per request")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    try:
        while True:
            async with asyncio.timeout(timeout_s):
                chunk = await anext(stream, None)
            if chunk is None:
                break
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:
        log.info("a client went away after %d bytes of its body (of %s)", size, declared or "?")
        raise ProblemError(400, "Request body incomplete", "the client went away") from None
    except TimeoutError:
        raise ProblemError(
            408,
            "Request body too slow",
            f"no byte of the body came for {timeout_s:g} s ({size} bytes came before)",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


SinkDep = Annotated[Sink, Depends(get_sink)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
MaxEventsDep = Annotated[int, Depends(get_max_events)]
TopicsDep = Annotated[Topics, Depends(get_topics)]


def _identity(encoding: str) -> None:
    """415 for a body in any Content-Encoding but identity (none is decoded)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    unsupported = [c for c in codings if c != "identity"]
    if unsupported:
        raise ProblemError(
            415,
            "Unsupported content encoding",
            f"send the body unencoded (identity), not {', '.join(unsupported)}",
            headers={"Accept-Encoding": "identity"},
        )


def _too_many(count: int, max_events: int) -> None:
    if count > max_events:
        raise ProblemError(
            413, "Too many events", f"at most {max_events} events per request, got {count}"
        )


def _written(item: Any) -> bytes:
    """An element of a JSON array as bytes of its own; none for one nested deeper than
    orjson writes (254 levels; it reads 1024), which validation refuses (limits)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return b""


def _media(content_type: str) -> str:
    """The request's media type, lower case without parameters; 415 for one that is
    neither JSON nor NDJSON, or a charset other than UTF-8."""
    media, *params = (part.strip() for part in content_type.split(";"))
    media = media.lower()
    if media not in JSON_TYPES + NDJSON_TYPES:
        raise ProblemError(
            415,
            "Unsupported media type",
            f"send application/json (an array of events) or application/x-ndjson, not {media!r}",
        )
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in UTF8_CHARSETS:
            raise ProblemError(415, "Unsupported charset", f"only UTF-8, not {charset!r}")
    return media


def _split(body: bytes, media: str, max_events: int) -> list[tuple[bytes, Any]]:
    """The request's events as (raw bytes, decoded value or the decode error); 413
    before any of them is decoded or serialised again when there are too many."""
    if media in NDJSON_TYPES:
        lines = [line for line in body.splitlines() if line.strip()]
        _too_many(len(lines), max_events)
        items: list[tuple[bytes, Any]] = []
        for line in lines:
            try:
                items.append((line, orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                items.append((line, EventError("", f"not valid JSON: {exc}")))
        return items
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Body is not JSON", str(exc)) from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise ProblemError(400, "Body must be a JSON array of events or one event")
    _too_many(len(doc), max_events)
    return [(_written(item), item) for item in doc]


@router.post(
    "/events",
    status_code=202,
    response_model=IngestResult,
    responses=problem_responses(400, 408, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [{"type": "array"}, {"type": "object"}],
                        "description": "an array of events, or one event; each element"
                        " that is not a valid event is rejected on its own, with its index",
                    }
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def post_events(
    request: Request,
    response: Response,
    sink: SinkDep,
    metrics: MetricsDep,
    max_events: MaxEventsDep,
    topics: TopicsDep,
) -> IngestResult:
    """Validate each event; produce the valid ones keyed by slice and dead-letter the rest.

    Answers 202 with the accepted and rejected counts and, per rejected event,
    its index in the request, the field at fault and why.
    """
    with request.app.state.inflight.slot():
        return await _post_events(request, response, sink, metrics, max_events, topics)


async def _post_events(
    request: Request,
    response: Response,
    sink: Sink,
    metrics: Metrics,
    max_events: int,
    topics: Topics,
) -> IngestResult:
    started = time.perf_counter()
    metric_names: MetricNames = request.app.state.metric_names
    _identity(request.headers.get("content-encoding", ""))
    media = _media(request.headers.get("content-type", "application/json"))
    body = await read_body(request, request.app.state.max_bytes, request.app.state.body_timeout_s)
    key = request.headers.get("idempotency-key")
    if key is None:
        return await _ingest(body, media, sink, metrics, max_events, topics, started, metric_names)
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ProblemError(400, "Bad Idempotency-Key", "1 to 255 printable characters")
    replays: AnswerBook = request.app.state.replays
    digest = hashlib.sha256(media.encode() + b"\0" + body).digest()
    claim = await replays.claim(key, digest)
    if claim.answer is not None:
        response.headers["Idempotent-Replayed"] = "true"
        return IngestResult.model_validate_json(claim.answer)
    answer = None
    try:
        result = await _ingest(
            body,
            media,
            sink,
            metrics,
            max_events,
            topics,
            started,
            metric_names,
            key,
            claim.resume_since,
        )
        answer = result.model_dump_json().encode()
        return result
    finally:
        await replays.release(key, answer)


async def _ingest(
    body: bytes,
    media: str,
    sink: Sink,
    metrics: Metrics,
    max_events: int,
    topics: Topics,
    started: float,
    metric_names: MetricNames,
    key: str | None = None,
    resume_since: float | None = None,
) -> IngestResult:
    items = _split(body, media, max_events)
    records: list[Record] = []
    errors: list[Rejection] = []
    names = topics.events
    accepted_types: list[str] = []
    seen: dict[str, int] = {}  # event id -> index of its first occurrence
    for index, (raw, value) in enumerate(items):
        etype = value.get("type") if isinstance(value, dict) else None
        if not isinstance(etype, str):  # a list or an object there must not take us down
            etype = None
        try:
            if isinstance(value, EventError):
                raise value
            if len(raw) > MAX_EVENT_BYTES:
                raise EventError("", f"{len(raw)} bytes; at most {MAX_EVENT_BYTES}", "limits")
            event = validate(value)
            refuse_future(event, time.time())
            first = seen.setdefault(event["event_id"], index)
            if first != index:
                raise EventError(
                    "event_id", f"the same as event {first}'s in this request", "duplicate"
                )
            metric_names.admit(event)
        except EventError as exc:
            reason = "json" if isinstance(value, EventError) else exc.reason
            if etype not in EVENT_TOPIC_SUFFIX:
                reason = "unknown_type" if reason == "schema" and exc.field == "type" else reason
                etype = "invalid"
            metrics.rejected.labels(etype, reason).inc()
            errors.append(Rejection(index=index, field=exc.field, message=exc.message))
            records.append(deadletter(topics.deadletter, raw, reason, exc.field, exc.message))
            continue
        records.append(Record(names[event["type"]], partition_key(event), raw))
        accepted_types.append(event["type"])
    if records:
        produce_started = time.perf_counter()
        try:
            await run_in_threadpool(sink.send, records, key, resume_since)
        except SinkUnavailableError:
            raise ProblemError(
                503,
                "Event store unavailable",
                "Kafka did not acknowledge the events; nothing was accepted, retry later",
                headers={"Retry-After": "5"},
            ) from None
        except SinkRefusedError as exc:
            raise ProblemError(
                413,
                "Record too large for the event store",
                f"Kafka refused a record of this request as too large ({exc}); records of"
                " it before that one may be stored: send it again in smaller events with"
                " the same event ids (a repeated event id is dropped in its window)",
            ) from None
        metrics.produce_latency.observe(time.perf_counter() - produce_started)
    for t in accepted_types:
        metrics.received.labels(t).inc()
    metrics.deadlettered.inc(len(errors))
    metrics.request_duration.observe(time.perf_counter() - started)
    return IngestResult(accepted=len(accepted_types), rejected=len(errors), errors=errors)
