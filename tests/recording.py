"""A local HTTP server that records what it is sent and answers as scripted:
the stand-in for Slack, PagerDuty and webhook receivers, which cannot be
reached from tests."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: dict[str, deque[tuple[int, bytes, dict[str, str]]]] = defaultdict(deque)
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self.url = ""
        self.delay_s = 0.0  # how long each answer takes
        self.in_flight = 0  # requests received and not answered yet

    def answer(
        self,
        path: str,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests to ``path`` get this answer instead of success."""
        for _ in range(times):
            self._script[path].append((status, body, headers or {}))

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def kept(self) -> list[Recorded]:
        """What a receiver that honours Idempotency-Key keeps: the first request of
        each key (and every request without one)."""
        seen: set[str] = set()
        out = []
        for r in self.requests:
            key = next((v for k, v in r.headers.items() if k.lower() == "idempotency-key"), None)
            if key is None or key not in seen:
                out.append(r)
            if key is not None:
                seen.add(key)
        return out

    def _respond(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            if self._script[path]:
                return self._script[path].popleft()
        if path.endswith("chat.postMessage"):
            ts = f"1700000000.{next(self._ts):06d}"
            return 200, orjson.dumps({"ok": True, "channel": "C0OPS", "ts": ts}), {}
        if path.startswith("/api/"):
            return 200, orjson.dumps({"ok": True}), {}
        return 200, b"ok", {}


@contextmanager
def recording_server(port: int = 0) -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with recorder._lock:
                recorder.requests.append(Recorded(self.path, dict(self.headers), body))
                recorder.in_flight += 1
            time.sleep(recorder.delay_s)
            status, answer, headers = recorder._respond(self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            with recorder._lock:
                recorder.in_flight -= 1

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
