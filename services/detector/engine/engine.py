"""The engine in one process: the three stages back to back, for replay and embedded mode.

Kafka mode runs the same stages in separate Faust agents with partial windows
and window reports travelling through topics; here they are handed over in
memory, with a single source, which yields the same windows and so the same
alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .aggregate import Aggregator
from .calendar import Calendar
from .catalog import Catalog
from .evaluate import EngineSettings, Evaluator, Report
from .explain import AlertBook
from .slices import Leaf

LOCAL_SOURCE = "local"


class Engine:
    def __init__(
        self, catalog: Catalog, settings: EngineSettings, calendar: Calendar | None = None
    ) -> None:
        self.settings = settings
        self.aggregator = Aggregator(catalog, settings.window_s, settings.lateness_s)
        self.evaluator = Evaluator(
            catalog, settings, (LOCAL_SOURCE,), calendar=calendar or Calendar()
        )
        self.book = AlertBook(settings, (LOCAL_SOURCE,), catalog.version)

    def effects(self) -> list[dict[str, Any]]:
        """The observed effects of the calendar entries that ended since the last call."""
        return self.evaluator.ended_effects()

    def add(self, event: Mapping[str, Any], ts: float, leaf: Leaf) -> bool:
        return self.aggregator.add(event, ts, leaf)

    def poll(self) -> list[dict[str, Any]]:
        """Alerts from every window the watermark has closed since the last call."""
        return self._hand_over(flush=False)

    def flush(self) -> list[dict[str, Any]]:
        """End of input: close and judge every open window."""
        alerts = self._hand_over(flush=True)
        return alerts + self._decide(self.evaluator.flush()) + self.book.flush()

    def _hand_over(self, flush: bool) -> list[dict[str, Any]]:
        closed = self.aggregator.advance(flush=flush)
        for window in closed:
            for key, acc in window.partials.items():
                self.evaluator.add_partial(window.start, key, acc)
        wm = self.aggregator.watermark
        if wm is None or not closed:
            return []
        return self._decide(self.evaluator.advance(LOCAL_SOURCE, wm, began=self.aggregator.began))

    @property
    def incomplete(self) -> int:
        """The windows the input covered only in part, at its start and its end."""
        return self.aggregator.stats.incomplete + self.evaluator.incomplete

    def _decide(self, reports: list[Report]) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for report in reports:
            alerts += self.book.add(LOCAL_SOURCE, report)
        return alerts

    def snapshot(self) -> dict[str, Any]:
        return {
            "aggregator": self.aggregator.snapshot(),
            "evaluator": self.evaluator.snapshot(),
            "book": self.book.snapshot(),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.aggregator.restore(snap["aggregator"])
        self.evaluator.restore(snap["evaluator"])
        self.book.restore(snap["book"])
