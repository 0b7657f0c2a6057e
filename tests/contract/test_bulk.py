"""The bulk check (msgspec) and the reference (pydantic) agree on every event: the
malformed corpus ingest is tested with, and a generated one of valid events with
one field broken or left out, many at the edge of a rule."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from numpy.random import default_rng

from services.common.events import EventError, all_valid, validate, validate_all
from tests.factories import event, traffic
from tests.integration.test_malformed import corpus

FIELDS = [
    "type", "event_id", "ts", "user_id", "region", "channel", "platform", "attributes",
    "order_id", "status", "amount", "currency", "session_id", "action",
    "rating", "category", "nps", "text", "name", "value", "unit", "extra",
]  # fmt: skip
EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 4, 4.0, 2.5, 5, 6, 10, 11, 1e12, 1e12 + 1, 10**30, "",
    "x", "4", "eu\n", "EUR", "EUR\n", "eur", "EU", "EURO", [], [1], {}, {"a": {"b": [1]}},
    "paid", "refunded", "shipped", "session_start", "LOGIN", "complaint", "order",
    "activity", "feedback", "metric", "stock_level", "Stock", "a-b", "_a", "a1_", -1e15,
    1e15, -1e15 - 1e3, 1e15 + 1e3, "2026-03-02T10:00:00Z", "2026-03-02t10:00:00z",
    "2026-03-02 10:00:00+01:00", "2026-03-02T10:00:00", "2026-03-02T10:00:00.123456Z",
    "2026-02-30T10:00:00Z", "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-03-02T10:00:00Z\n",
    "2026-03-02T25:00:00Z",
]  # fmt: skip
LENGTHS = [63, 64, 65, 127, 128, 129, 255, 256, 257, 3999, 4000, 4001, 8192, 8193]


def reference_accepts(raw: Any) -> bool:
    try:
        validate(raw)
    except EventError:
        return False
    return True


def generated(count: int, seed: int = 5) -> list[Any]:
    rng = default_rng(seed)
    bases = [event(kind) for kind in ("order", "activity", "feedback")] + traffic(1, seed=seed)
    metric = event("metric")
    values = EDGES + ["s" * n for n in LENGTHS]
    out = []
    for _ in range(count):
        doc = copy.deepcopy(metric if rng.random() < 0.2 else bases[rng.integers(len(bases))])
        for _ in range(1 + int(rng.integers(2))):
            own = rng.random() < 0.6  # mostly the event's own fields, near their value
            fields = list(doc) if own else FIELDS
            field = fields[rng.integers(len(fields))]
            value = doc.get(field)
            near = [value, f"{value}\n", f" {value}", f"{value}".upper(), f"{value}"[:-1]]
            if rng.random() < 0.2:
                doc.pop(field, None)
            elif own and isinstance(value, str):
                doc[field] = near[rng.integers(1, len(near))]
            else:
                doc[field] = copy.deepcopy(values[rng.integers(len(values))])
        out.append(doc)
    return out


def test_the_malformed_corpus_is_refused_by_both() -> None:
    decoded = []
    for line in corpus():
        try:
            decoded.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    assert len(decoded) > 150
    for raw in decoded:
        if not reference_accepts(raw):  # a future timestamp is an edge rule, not the contract's
            assert not all_valid([raw]), raw


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_generated_events_get_the_same_verdict_from_both(seed: int) -> None:
    docs = generated(3000, seed)
    verdicts = [(reference_accepts(d), all_valid([d])) for d in docs]
    differ = [d for d, (ref, bulk) in zip(docs, verdicts, strict=True) if ref != bulk]
    assert not differ, f"{len(differ)} differ, e.g. {differ[:3]}"
    accepted = sum(ref for ref, _ in verdicts)
    assert 0.1 * len(docs) < accepted < 0.9 * len(docs)  # both verdicts are well represented
    metrics = [ref for d, (ref, _) in zip(docs, verdicts, strict=True) if d.get("type") == "metric"]
    assert 0 < sum(metrics) < len(metrics)  # metric events among both verdicts


def test_a_batch_with_one_bad_event_is_checked_event_by_event() -> None:
    batch = traffic(1, seed=3)[:200]
    assert all_valid(batch) and validate_all(batch) == batch
    bad = [*batch[:50], {**batch[50], "ts": "1999-01-01T00:00:00Z"}, *batch[51:]]
    assert not all_valid(bad)
    checked = validate_all(bad)
    assert isinstance(checked[50], EventError) and checked[50].field == "ts"
    assert [c for i, c in enumerate(checked) if i != 50] == [*batch[:50], *batch[51:]]
