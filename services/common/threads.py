"""A loop in a daemon thread of its own, stopped on request."""

from __future__ import annotations

import threading


class Background:
    """Runs ``_run`` in a daemon thread from ``start()``; ``_run`` loops until
    ``self._stop`` is set, which ``stop()`` does before it waits for the thread."""

    def __init__(self, name: str, join_timeout_s: float = 10.0) -> None:
        self._join_timeout_s = join_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._join_timeout_s)

    def _run(self) -> None:
        raise NotImplementedError
