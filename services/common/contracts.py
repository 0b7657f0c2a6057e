"""The public contracts: events in, alerts out (mirrors schemas/*.json).

The JSON Schema files are the published contract; these pydantic models are the
same rules in Python, and tests/contract proves the two agree on every example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    field_validator,
)

DIMENSIONS: tuple[str, ...] = ("region", "channel", "platform")
ALL_UP = "all-up"


def slice_label(slice_: Mapping[str, str | None]) -> str:
    """A slice as metrics and dashboards name it: ``region=eu,channel=web``, or all-up."""
    return ",".join(f"{d}={slice_[d]}" for d in DIMENSIONS if slice_.get(d)) or ALL_UP


UNKNOWN = "unknown"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def rfc3339(value: object) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-03-02T10:15:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace(" ", "T"))
        parsed.astimezone(UTC)  # an offset that leaves the calendar (year 1 or 9999)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"is not a valid date or time: {exc}") from None
    return parsed


_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def unix_seconds(text: str) -> int | None:
    """``text`` as Unix seconds, if it is that: ASCII digits, at most 12 (str.isdigit
    also takes "²", which int() refuses, and a longer number overflows a float)."""
    return int(text) if _UNIX_SECONDS.fullmatch(text) else None


FIRST_YEAR = 2000  # of an event's time: one before is a clock's or a default value


def this_millennium(value: datetime) -> datetime:
    if value.year < FIRST_YEAR:
        raise ValueError(
            f"is before the year {FIRST_YEAR}: a clock or a default value, not an event"
        )
    return value


def whole(value: object) -> bool:
    """Whether a number is an integer as JSON Schema counts them (4 and 4.0, not 4.5)."""
    return isinstance(integral(value), int) and not isinstance(value, bool)


Timestamp = Annotated[datetime, BeforeValidator(rfc3339)]

# no C0 or C1 control character (a NUL, which PostgreSQL text cannot hold; an escape), as the
# API document declares it; a note's text may hold line breaks and tabs
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
NO_LINE_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


Dimension = Annotated[str, Field(min_length=1, max_length=64)]


def integral(value: object) -> object:
    """JSON Schema's integer: 4 and 4.0 are integers, 4.5, "4" and true are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integral = Annotated[StrictInt, BeforeValidator(integral)]


OrderStatus = Literal["created", "paid", "payment_failed", "cancelled", "refunded"]
Action = Literal[
    "session_start",
    "page_view",
    "add_to_cart",
    "checkout_start",
    "login",
    "signup",
    "subscription_cancel",
    "account_close",
]
FeedbackCategory = Literal["complaint", "bug", "question", "praise", "other"]


class _Base(BaseModel):
    """Fields beyond the contract's are carried, not interpreted (extra="allow")."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    ts: Timestamp
    region: Dimension | None = None
    channel: Dimension | None = None
    platform: Dimension | None = None
    attributes: dict[str, Any] | None = None

    @field_validator("ts")
    @classmethod
    def _this_millennium(cls, value: datetime) -> datetime:
        return this_millennium(value)


class _Event(_Base):
    """What a user did: an order, an activity, feedback."""

    user_id: Annotated[str, Field(min_length=1, max_length=256)]

    def leaf_slice(self) -> tuple[str, str, str]:
        return (self.region or UNKNOWN, self.channel or UNKNOWN, self.platform or UNKNOWN)


class OrderEvent(_Event):
    type: Literal["order"]
    order_id: Annotated[str, Field(min_length=1, max_length=128)]
    status: OrderStatus
    amount: Annotated[StrictFloat, Field(ge=0, le=1e12)]
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]


class ActivityEvent(_Event):
    type: Literal["activity"]
    session_id: Annotated[str, Field(min_length=1, max_length=128)]
    action: Action


class FeedbackEvent(_Event):
    type: Literal["feedback"]
    rating: Annotated[Integral, Field(ge=1, le=5)]
    category: FeedbackCategory | None = None
    nps: Annotated[Integral, Field(ge=0, le=10)] | None = None
    text: Annotated[str, Field(max_length=4000)] | None = None


METRIC_NAME = r"^[a-z][a-z0-9_]*$"
METRIC_NAME_CHARS = 64
METRIC_VALUE_MAX = 1e15  # in magnitude: a window's sums stay exact enough and finite


class MetricEvent(_Base):
    """A number any other system measures (a stock level, a delivery time), for the
    slice its dimensions name; no user behind it."""

    type: Literal["metric"]
    name: Annotated[str, Field(pattern=METRIC_NAME, max_length=METRIC_NAME_CHARS)]
    value: Annotated[
        StrictFloat, Field(allow_inf_nan=False, ge=-METRIC_VALUE_MAX, le=METRIC_VALUE_MAX)
    ]
    unit: Annotated[str, Field(min_length=1, max_length=32)] | None = None


AnyEvent = OrderEvent | ActivityEvent | FeedbackEvent | MetricEvent
Event = Annotated[AnyEvent, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = ("order", "activity", "feedback", "metric")
# what a user did, by type: the events the metric catalog measures
USER_EVENTS: dict[str, type[_Event]] = {
    "order": OrderEvent,
    "activity": ActivityEvent,
    "feedback": FeedbackEvent,
}


class Driver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slice: dict[str, str]
    observed: float | None = None
    expected: float | None = None
    contribution: float | None = None


SERIES_WINDOWS = 48
SeriesValue = StrictFloat | None
SeriesPoint = tuple[Timestamp, SeriesValue, SeriesValue, SeriesValue, SeriesValue]

AlertSlice = dict[Literal["region", "channel", "platform"], str]


class Breakdown(BaseModel):
    """A ratio's excess numerator split along one dimension's sub-slices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dimension: Literal["region", "channel", "platform"]
    within_rates: float
    mix: float
    cause: Literal["rates", "mix"]


class CalendarMark(BaseModel):
    """The calendar entry an alert's window is inside: its effect and, for an
    ``expect`` entry that names the metric, the factor the baseline was scaled by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1)]
    effect: Literal["expect", "exclude", "mute"]
    factor: Annotated[float, Field(gt=0)] | None = None


class Alert(BaseModel):
    """One alert as published on opswatch.alerts and served by GET /v1/alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    metric: Annotated[str, Field(min_length=1)]
    slice: AlertSlice
    window_start: Timestamp
    window_end: Timestamp
    direction: Literal["up", "down"]
    observed: float
    expected: float
    expected_low: float
    expected_high: float
    n: Annotated[float, Field(ge=0)] | None = None
    p_value: Annotated[float, Field(ge=0, le=1)] | None = None
    score: Annotated[float, Field(ge=0, le=1)]
    severity: Literal["critical", "warning", "info"]
    status: Literal["firing", "acknowledged", "resolved"]
    started_at: Timestamp
    updated_at: Timestamp
    resolved_at: Timestamp | None
    windows: Annotated[int, Field(ge=1)] | None = None
    baseline: str | None = None
    config_version: str | None = None
    drivers: list[Driver] | None = None
    breakdown: Breakdown | None = None
    calendar: CalendarMark | None = None
    # the first update's recent windows: [window_start, observed, expected, low, high]
    series: Annotated[list[SeriesPoint], Field(max_length=SERIES_WINDOWS)] | None = None
    # the lifecycle, as the alert API serves an alert (the detector leaves them out)
    last_seen: Timestamp | None = None
    peak_score: Annotated[float, Field(ge=0, le=1)] | None = None
    peak_severity: Literal["critical", "warning", "info"] | None = None
    acknowledged_at: Timestamp | None = None
    snoozed_until: Timestamp | None = None
    snoozed_until_resolved: bool | None = None
    label: Literal["true_positive", "false_positive", "expected"] | None = None
    flapping: bool | None = None
    reopens: Annotated[int, Field(ge=0)] | None = None
    incident_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None


NoteKind = Literal["cause", "action", "lesson"]


class NoteRequest(BaseModel):
    """A note on an incident, as POST /v1/incidents/{id}/notes and the Slack modal take
    it: author and text without the whitespace around them, neither empty."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    author: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL)]
    text: Annotated[str, Field(min_length=1, max_length=4000, pattern=NO_LINE_CONTROL)]
    kind: NoteKind


class Note(BaseModel):
    """A stored note, as it was taken (the rules of NoteRequest may have grown since)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    author: str
    text: str
    kind: NoteKind
    id: int
    created_at: Timestamp


class SimilarIncident(BaseModel):
    """A resolved incident of the same metric family on a related slice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    slice: AlertSlice
    opened_at: Timestamp
    resolved_at: Timestamp | None
    resolve_s: int | None = Field(description="seconds from its start to its resolve")
    label: Literal["true_positive", "false_positive", "expected"] | None
    notes: list[Note]


class Incident(BaseModel):
    """Alerts that share a cause, as GET /v1/incidents serves them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    family: str
    status: Literal["firing", "acknowledged", "resolved"]
    severity: Literal["critical", "warning", "info"]
    title: str
    metric: str
    slice: AlertSlice
    alert_ids: list[str]
    alerts: Annotated[int, Field(ge=1)]
    opened_at: Timestamp
    started_at: Timestamp
    updated_at: Timestamp
    acknowledged_at: Timestamp | None
    resolved_at: Timestamp | None
    snoozed: bool
    flapping: bool
    notified_status: Literal["firing", "acknowledged", "resolved"] | None
    notes: list[Note] = Field(default_factory=list)  # oldest first
    # GET /v1/incidents/{id}: up to three resolved incidents like it, the closest first
    similar: list[SimilarIncident] | None = None
