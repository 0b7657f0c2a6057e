"""Logging, configured once by the command line."""

from __future__ import annotations

import logging


class _ContextFormatter(logging.Formatter):
    """Appends the ``extra=`` context of a record as key=value pairs."""

    _plain = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in self._plain}
        if not extra:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
