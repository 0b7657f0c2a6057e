"""Many events checked against the contract in one call.

The pydantic models in ``contracts`` are the contract's reference; checking an
event with them costs about 15 µs, half of stage one's time per event. Here
the same rules are msgspec Structs, which check a whole batch of decoded events
in C (about 3 µs an event); ``events.validate_all`` adds the rules that are
Python functions in the reference too (a timestamp that parses, the year 2000
or later, whole-number ratings, the size limits). A batch that passes is valid
as it stands; one that does not goes to the reference event by event, for its
exact messages: so nothing the reference accepts is refused, and the contract
test (tests/contract/test_bulk.py) shows that nothing it refuses passes here,
over the malformed corpus and a generated one.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .contracts import (
    METRIC_NAME,
    METRIC_NAME_CHARS,
    METRIC_VALUE_MAX,
    Action,
    FeedbackCategory,
    OrderStatus,
)

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Dimension = Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None


class _Base(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: _Text
    ts: str  # RFC 3339 and the year: checked by the reference's own functions
    region: _Dimension = None
    channel: _Dimension = None
    platform: _Dimension = None
    attributes: dict[str, Any] | None = None


class _Event(_Base):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _Order(_Event, tag="order"):
    order_id: _Text
    status: OrderStatus
    amount: Annotated[float, msgspec.Meta(ge=0, le=1e12)]
    # \Z, not $: Python's $ also matches before a final newline, the reference's does not
    currency: Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z]{3}\Z")]


class _Activity(_Event, tag="activity"):
    session_id: _Text
    action: Action


class _Feedback(_Event, tag="feedback"):
    rating: Annotated[float, msgspec.Meta(ge=1, le=5)]  # whole: checked after
    category: FeedbackCategory | None = None
    nps: Annotated[float, msgspec.Meta(ge=0, le=10)] | None = None
    text: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class _Metric(_Base, tag="metric"):
    # \Z, not $ (see currency); NaN and infinities fail the bounds
    name: Annotated[
        str,
        msgspec.Meta(pattern=r"\A" + METRIC_NAME[1:-1] + r"\Z", max_length=METRIC_NAME_CHARS),
    ]
    value: Annotated[float, msgspec.Meta(ge=-METRIC_VALUE_MAX, le=METRIC_VALUE_MAX)]
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None


_Events = list[_Order | _Activity | _Feedback | _Metric]


def conforms(raws: list[Any]) -> bool:
    """Whether every decoded event of ``raws`` keeps the contract's Struct rules (the
    rest: ``events.validate_all``). False: at least one may not."""
    try:
        msgspec.convert(raws, _Events)
    except msgspec.ValidationError:
        return False
    return True
