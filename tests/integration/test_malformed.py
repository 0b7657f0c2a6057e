"""A corpus of malformed events against the real ingest service: each one answered
with a clear error at its index and counted, the valid ones around them produced,
and the service still up."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from numpy.random import default_rng

from tests.factories import event
from tests.integration.conftest import Stack

WRONG: list[Any] = [123, 1.5, True, None, [], {}, "", "x" * 300]
REQUIRED = {
    "order": ["type", "event_id", "ts", "user_id", "order_id", "status", "amount", "currency"],
    "activity": ["type", "event_id", "ts", "user_id", "session_id", "action"],
    "feedback": ["type", "event_id", "ts", "user_id", "rating"],
}


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"x": doc}
    return doc


def corpus() -> list[bytes]:
    """NDJSON lines, each one a malformed event, of every kind the issue names."""
    bad: list[Any] = []
    for kind, fields in REQUIRED.items():
        for field in fields:
            missing = event(kind)
            del missing[field]
            bad.append(missing)
            for value in WRONG:
                if (field == "type" and value == "") or (
                    field == "amount" and type(value) in (int, float)
                ):
                    continue  # not wrong after all
                wrong = event(kind)
                wrong[field] = value
                if wrong[field] != event(kind)[field] or field == "event_id":
                    bad.append(wrong)
    bad += [event(type=t) for t in ("refund", "ORDER", "Activity", "click", "feedbacks")]
    bad += [event(region=v) for v in (7, "", "r" * 65, ["eu"])]
    bad += [event(attributes=v) for v in ([1], "a", 3)]
    bad += [event("order", amount=v) for v in (-1, "10", [10])]
    bad += [event("order", status=v) for v in ("shipped", "PAID")]
    bad += [event("feedback", rating=v) for v in (0, 6, 2.5)]
    bad += [event(action=v) for v in ("jump", "LOGIN")]
    bad += [event(attributes={"note": "y" * n}) for n in (8193, 20_000, 100_000)]
    bad += [event(user_id="u" * 257), event(event_id="e" * 129)]
    bad += [event(attributes=_nested(depth)) for depth in (8, 12, 40)]
    far = ["1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]
    ahead = datetime.now(UTC) + timedelta(days=2)
    far += ["3000-01-01T00:00:00Z", ahead.isoformat().replace("+00:00", "Z")]
    bad += [event(ts=ts) for ts in far]
    lines = [orjson.dumps(b) for b in bad]
    lines += [b'{"type": "order", "event_id": "\xff\xfe", "ts": "2026-03-02T10:00:00Z"}'] * 3
    lines += [b"{not json", b"[1, 2", b'"just a string"', b"42", b"null"]
    return lines


def test_a_corpus_of_malformed_events_is_answered_event_by_event(stack: Stack) -> None:
    ingest = stack.start("ingest", "/readyz")
    bad = corpus()
    good = [event("order"), event("activity"), event("feedback")]
    duplicate = copy.deepcopy(good[0])
    rng = default_rng(11)
    lines = [orjson.dumps(g) for g in good] + bad + [orjson.dumps(duplicate)]
    order = [0, 1, 2, *(3 + rng.permutation(len(bad))), len(lines) - 1]
    body = b"\n".join(lines[i] for i in order)
    assert len(bad) + 1 >= 200
    before = httpx.get(ingest.url + "/metrics").text
    resp = httpx.post(
        ingest.url + "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert resp.status_code == 202, resp.text
    result = resp.json()
    assert (result["accepted"], result["rejected"]) == (3, len(bad) + 1)
    rejected = {e["index"] for e in result["errors"]}
    assert rejected == set(range(3, len(order)))
    assert all(e["message"] for e in result["errors"])
    last = next(e for e in result["errors"] if e["index"] == len(order) - 1)
    assert last["field"] == "event_id" and "the same as event 0" in last["message"]
    after = httpx.get(ingest.url + "/metrics").text
    assert _rejected(after) - _rejected(before) == len(bad) + 1
    assert httpx.get(ingest.url + "/healthz").status_code == 200


def _rejected(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("opswatch_ingest_events_rejected_total{")
    )
