"""Where simulated (or any) events go: an NDJSON file, the ingest API, or Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson

from .connection import KafkaConnection
from .events import Topics, partition_key
from .kafka import producer


def batched(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(events)
    while chunk := list(islice(it, size)):
        yield chunk


def to_file(events: Iterable[dict[str, Any]], path: Path) -> int:
    n = 0
    with path.open("wb") as fh:
        for event in events:
            fh.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


class IngestError(RuntimeError):
    pass


def to_ingest(
    events: Iterable[dict[str, Any]], base_url: str, batch: int = 500, retries: int = 10
) -> int:
    """POST batches as NDJSON; retry 503s and connection errors with backoff (about
    30 s in all); IngestError in one line when ingest cannot be reached at
    ``base_url`` or refuses a batch."""
    n = 0
    url = base_url.rstrip("/") + "/v1/events"
    with httpx.Client(timeout=30.0) as client:
        for chunk in batched(events, batch):
            body = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in chunk)
            for attempt in range(retries + 1):
                try:
                    resp = client.post(
                        url, content=body, headers={"content-type": "application/x-ndjson"}
                    )
                except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                    raise IngestError(f"{base_url} is not an ingest URL: {exc}") from None
                except httpx.TransportError as exc:
                    if attempt == retries:
                        raise IngestError(
                            f"ingest could not be reached at {base_url} "
                            f"({attempt + 1} tries): {exc or type(exc).__name__}"
                        ) from None
                    time.sleep(min(2**attempt * 0.2, 5.0))
                    continue
                if resp.status_code == 503 and attempt < retries:
                    time.sleep(float(resp.headers.get("retry-after", "1")))
                    continue
                if resp.status_code != 202:
                    answer = " ".join(resp.text.split())[:300]
                    raise IngestError(f"ingest at {base_url} answered {resp.status_code}: {answer}")
                result = resp.json()
                if result["rejected"]:
                    raise IngestError(f"ingest rejected events: {result['errors'][:3]}")
                n += result["accepted"]
                break
    return n


def to_kafka(
    events: Iterable[dict[str, Any]], kafka: KafkaConnection, topics: Topics, batch: int = 500
) -> int:
    names = topics.events
    prod = producer(kafka, "opswatch-simulate")
    n = 0
    try:
        for chunk in batched(events, batch):
            for event in chunk:
                prod.send(names[event["type"]], key=partition_key(event), value=orjson.dumps(event))
            n += len(chunk)
        prod.flush()
    finally:
        prod.close()
    return n
