"""Reading events: JSON bytes to validated dicts, event time and leaf slice."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from orjson import dumps
from pydantic import ValidationError

from .bulk import conforms
from .contracts import EVENT_ADAPTER, UNKNOWN, rfc3339, this_millennium, whole

EVENT_TOPIC_SUFFIX: dict[str, str] = {
    "order": "orders",
    "activity": "activity",
    "feedback": "feedback",
    "metric": "metrics",
}


@dataclass(frozen=True)
class Topics:
    """opswatch's topic names; a namespace other than ``opswatch`` lets several
    installations (or test runs) share one Kafka cluster."""

    namespace: str = "opswatch"

    @property
    def events(self) -> dict[str, str]:
        return {t: f"{self.namespace}.events.{s}" for t, s in EVENT_TOPIC_SUFFIX.items()}

    @property
    def partials(self) -> str:
        return f"{self.namespace}.partials"

    @property
    def reports(self) -> str:
        """Stage two to stage three: one partition, candidates only."""
        return f"{self.namespace}.reports"

    @property
    def alerts(self) -> str:
        return f"{self.namespace}.alerts"

    @property
    def deadletter(self) -> str:
        return f"{self.namespace}.deadletter"

    @property
    def calendar(self) -> str:
        """Calendar entries added through the alert API: compacted, one partition."""
        return f"{self.namespace}.calendar"

    def all(self) -> list[str]:
        return [
            *self.events.values(),
            self.partials,
            self.reports,
            self.alerts,
            self.deadletter,
            self.calendar,
        ]


class EventError(ValueError):
    """An event that breaks the contract: where (field) and why (message)."""

    def __init__(self, field: str, message: str, reason: str = "schema") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.reason = reason  # schema, limits (too deep, too long), json or metric_names


FUTURE_S = 86_400.0  # an event further ahead of the wall clock has a wrong clock
MAX_DEPTH = 8  # objects and arrays nested in one event (attributes are free-form)
MAX_STRING = 8192  # characters of any one string in an event


def _check_limits(value: Any, where: str, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise EventError(
                where, f"a string of {len(value)} characters; at most {MAX_STRING}", "limits"
            )
        return
    if not isinstance(value, dict | list):
        return
    if depth > MAX_DEPTH:
        raise EventError(where, f"nested deeper than {MAX_DEPTH} levels", "limits")
    if isinstance(value, dict):
        if value and max(map(len, value)) > MAX_STRING:
            key = next(k for k in value if len(k) > MAX_STRING)
            raise EventError(
                where, f"a key of {len(key)} characters; at most {MAX_STRING}", "limits"
            )
        items: Iterable[tuple[Any, Any]] = value.items()
    else:
        items = enumerate(value)
    # most values are short strings and numbers: looked at here, without a call
    for key, sub in items:
        kind = type(sub)
        if (kind is str and len(sub) > MAX_STRING) or kind is dict or kind is list:
            _check_limits(sub, f"{where}.{key}" if where else str(key), depth + 1)


def validate(raw: Any) -> dict[str, Any]:
    """Check one decoded event against the contract and the size limits (nesting,
    string length); return it as a plain dict."""
    _check_limits(raw, "", 1)
    try:
        EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in EVENT_TOPIC_SUFFIX:
            loc = loc[1:]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["type"]
        raise EventError(".".join(loc), err["msg"]) from None
    return raw  # type: ignore[no-any-return]


_FLAT = frozenset({str, int, float, bool, type(None)})


def _flat_and_short(raw: dict[str, Any]) -> bool:
    """Nothing nested, and too short to hold a string over the limit: within the
    limits without a walk."""
    if not _FLAT.issuperset(map(type, raw.values())):
        return False
    try:
        return len(dumps(raw)) <= MAX_STRING
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return False


def all_valid(raws: list[Any]) -> bool:
    """Whether every decoded event of ``raws`` keeps the contract, checked in bulk
    (see ``bulk``). True is final; False: at least one may not."""
    if not conforms(raws):
        return False
    try:
        for raw in raws:
            if not _flat_and_short(raw):
                _check_limits(raw, "", 1)
            this_millennium(rfc3339(raw["ts"]))
            if raw["type"] == "feedback":
                nps = raw.get("nps")
                if not (whole(raw["rating"]) and (nps is None or whole(nps))):
                    return False
    except (EventError, ValueError):
        return False
    return True


def validate_all(raws: list[Any]) -> list[dict[str, Any] | EventError]:
    """Each decoded event checked as ``validate`` checks it, or its error, in order:
    a batch of valid events in one call, any other event by event."""
    if all_valid(raws):
        return raws
    out: list[dict[str, Any] | EventError] = []
    for raw in raws:
        try:
            out.append(validate(raw))
        except EventError as exc:
            out.append(exc)
    return out


def refuse_future(event: Mapping[str, Any], now: float, clock: str = "this server's clock") -> None:
    """A check against a clock for the edges (ingest and a dead-letter replay read the
    wall clock; the detector reads a record's timestamp); the engine itself never
    reads a clock."""
    if event_time(event) > now + FUTURE_S:
        raise EventError("ts", f"more than a day ahead of {clock}", "future")


METRIC_NAMES_REASON = "metric_names"


def reserved_name(name: str) -> EventError:
    """The error of a metric event named as a catalog metric (alerts name either by it)."""
    return EventError("name", f"{name} is a catalog metric's name")


@dataclass
class MetricNames:
    """The distinct names of metric events taken so far, at most ``limit``: an event
    of one more name is refused, so that the series a producer can open stay bounded.
    Which names are taken follows from the order the events come in."""

    limit: int
    # the catalog's metrics' names: alerts name a metric by it, so no series may take one
    reserved: frozenset[str] = frozenset()
    names: set[str] = field(default_factory=set)

    def admit(self, event: Mapping[str, Any]) -> None:
        """Take the event's name (other event types pass); EventError beyond the limit
        or for a catalog metric's name."""
        if event["type"] != "metric" or event["name"] in self.names:
            return
        if event["name"] in self.reserved:
            raise reserved_name(event["name"])
        if len(self.names) >= self.limit:
            raise EventError(
                "name",
                f"{self.limit} metric names are taken already (OPSWATCH_MAX_METRIC_NAMES)",
                METRIC_NAMES_REASON,
            )
        self.names.add(event["name"])


def deadletter_headers(
    source: str, reason: str, field: str, message: str, **origin: str
) -> list[tuple[str, bytes]]:
    """The headers every dead letter carries: who refused it, why, and where from."""
    values = {"reason": reason, "field": field, "message": message[:1000], "source": source}
    return [(key, value.encode()) for key, value in {**values, **origin}.items()]


def decode(data: bytes) -> dict[str, Any]:
    """Bytes of one JSON event to a validated dict (EventError when unusable)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventError("", f"not valid JSON: {exc}", "json") from None
    return validate(raw)


@dataclass(frozen=True)
class Refused:
    """An event of a record that breaks the contract: its own bytes, and why."""

    raw: bytes
    error: EventError
    index: int | None = None  # its place in a batch record


def read_record(
    data: bytes, written_at: float | None = None
) -> tuple[list[dict[str, Any]], list[Refused]]:
    """The events of one event-topic record: a JSON object is one event, a JSON
    array a batch of them (what ingest writes). Valid events in order, and the
    refused ones: a record that is not JSON is refused whole, and an event more
    than a day ahead of ``written_at`` (its record's timestamp, in seconds: the
    same for every reader of the record) is refused as ingest refuses one ahead
    of its clock, so that a producer's wrong clock cannot move the watermark."""

    def ahead(event: dict[str, Any]) -> EventError | None:
        if written_at is None or written_at <= 0:  # a record without a timestamp
            return None
        try:
            refuse_future(event, written_at, "the time its record was written")
        except EventError as exc:
            return exc
        return None

    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return [], [Refused(data, EventError("", f"not valid JSON: {exc}", "json"))]
    if not isinstance(raw, list):
        try:
            event = validate(raw)
        except EventError as exc:
            return [], [Refused(data, exc)]
        error = ahead(event)
        return ([], [Refused(data, error)]) if error is not None else ([event], [])
    if not raw:
        return [], [Refused(data, EventError("", "an empty batch: no event to take"))]
    events: list[dict[str, Any]] = []
    refused: list[Refused] = []
    for index, (item, checked) in enumerate(zip(raw, validate_all(raw), strict=True)):
        error = checked if isinstance(checked, EventError) else ahead(checked)
        if error is not None:
            refused.append(Refused(orjson.dumps(item), error, index))
        elif not isinstance(checked, EventError):
            events.append(checked)
    return events, refused


BATCH_BYTES = 256 * 1024  # of one batch record: well under a broker's 1 MB
BATCH_EVENTS = 1000


def batches(values: Sequence[bytes]) -> Iterator[bytes]:
    """Serialized events as JSON arrays of at most BATCH_EVENTS events and about
    BATCH_BYTES each (an event larger than that travels alone), in order."""
    start, size = 0, 0
    for end, value in enumerate(values):
        if end > start and (size + len(value) > BATCH_BYTES or end - start >= BATCH_EVENTS):
            yield b"[" + b",".join(values[start:end]) + b"]"
            start, size = end, 0
        size += len(value) + 1
    if start < len(values):
        yield b"[" + b",".join(values[start:]) + b"]"


def event_time(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"].upper().replace(" ", "T")).timestamp()


def leaf_of(event: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        event.get("region") or UNKNOWN,
        event.get("channel") or UNKNOWN,
        event.get("platform") or UNKNOWN,
    )


def partition_key(event: Mapping[str, Any]) -> bytes:
    """Kafka key of an event: its leaf slice, so a slice lives on one partition."""
    return "|".join(leaf_of(event)).encode()
