"""Charts of an alert or an incident: observed against expected and its band, the
anomalous windows shaded, a driver slice's observed as a thin line.

``alert_plot`` and ``incident_plot`` build what is drawn (plain data, tested on
their own); ``render`` draws it to a PNG with matplotlib's Agg canvas, without
pyplot's global state, so charts can be drawn in worker threads.
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.alerting.lifecycle import parse_time
from services.alerting.messages import where

SIZE_IN = (8.0, 4.0)  # 800 x 400 pixels at DPI: readable at Slack's image size
DPI = 100
COLOURS = {"observed": "#1f4e9c", "expected": "#555555", "band": "#b8c7e0", "shade": "#f4b6b0"}


@dataclass(frozen=True)
class Line:
    """A driver slice's observed values, drawn thin."""

    label: str
    times: list[datetime]
    values: list[float]


@dataclass(frozen=True)
class PlotData:
    title: str
    times: list[datetime]  # each window's start, in the business timezone
    observed: list[float]  # NaN where there is no value (a gap in the line)
    expected: list[float]
    low: list[float]
    high: list[float]
    anomalous: list[bool]
    window: timedelta
    drivers: tuple[Line, ...] = ()


def _value(x: Any) -> float:
    return math.nan if x is None else float(x)


def _span(first: datetime, last: datetime) -> str:
    if first.date() == last.date():
        return f"{first:%Y-%m-%d %H:%M}-{last:%H:%M} {last:%Z}"
    return f"{first:%Y-%m-%d %H:%M} - {last:%Y-%m-%d %H:%M} {last:%Z}"


def alert_plot(
    alert: Mapping[str, Any],
    points: Sequence[Sequence[Any]],
    timezone: str,
    drivers: Sequence[Line] = (),
) -> PlotData:
    """What an alert's chart shows: its series (``[window_start, observed, expected,
    low, high, anomalous]`` each) or, without one, the alert's latest window."""
    if not points:
        points = [
            [
                alert["window_start"],
                alert["observed"],
                alert["expected"],
                alert["expected_low"],
                alert["expected_high"],
                alert["status"] != "resolved",
            ]
        ]
    zone = ZoneInfo(timezone)
    times = [parse_time(p[0]).astimezone(zone) for p in points]
    window = parse_time(alert["window_end"]) - parse_time(alert["window_start"])
    started = parse_time(alert["started_at"]).astimezone(zone)
    ended = alert.get("resolved_at") or alert.get("last_seen") or alert["window_end"]
    title = (
        f"{alert['metric']} in {where(alert['slice'])}\n"
        f"{_span(started, parse_time(ended).astimezone(zone))}"
    )
    return PlotData(
        title=title,
        times=times,
        observed=[_value(p[1]) for p in points],
        expected=[_value(p[2]) for p in points],
        low=[_value(p[3]) for p in points],
        high=[_value(p[4]) for p in points],
        anomalous=[bool(p[5]) if len(p) > 5 else False for p in points],
        window=window,
        drivers=tuple(drivers),
    )


Member = tuple[Mapping[str, Any], Sequence[Sequence[Any]]]  # an alert and its series


def lead_of(incident: Mapping[str, Any], members: Sequence[Member]) -> Member:
    """The alert on the incident's own metric and slice, else its first."""
    return next(
        (
            m
            for m in members
            if m[0]["metric"] == incident["metric"] and m[0]["slice"] == incident["slice"]
        ),
        members[0],
    )


def _below(lead: Mapping[str, Any], alert: Mapping[str, Any]) -> bool:
    """Whether the alert's slice is a sub-slice of the lead's (a driver of it)."""
    here, there = lead["slice"], alert["slice"]
    return len(there) > len(here) and all(there.get(d) == v for d, v in here.items())


def incident_plot(
    incident: Mapping[str, Any],
    members: Sequence[Member],
    timezone: str,
) -> PlotData:
    """An incident's chart: its lead alert, with the members of that metric on its
    sub-slices (its drivers) as thin lines."""
    lead = lead_of(incident, members)
    zone = ZoneInfo(timezone)
    drivers = [
        Line(
            where(alert["slice"]),
            [parse_time(p[0]).astimezone(zone) for p in points],
            [_value(p[1]) for p in points],
        )
        for alert, points in members
        if alert["metric"] == lead[0]["metric"] and points and _below(lead[0], alert)
    ]
    data = alert_plot(lead[0], lead[1], timezone, drivers)
    times = data.title.split("\n", 1)[1]
    return replace(data, title=f"{incident['title']}\n{times}")


def _days(times: Sequence[datetime]) -> Any:
    """matplotlib's date axis: days since its epoch, as an array."""
    from matplotlib.dates import date2num

    return date2num(times)  # type: ignore[no-untyped-call]


def render(data: PlotData) -> bytes:
    """The chart as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = _days(data.times)
    width = data.window / timedelta(days=1)  # the axis counts days
    for start, anomalous in zip(x, data.anomalous, strict=True):
        if anomalous:
            ax.axvspan(start, start + width, color=COLOURS["shade"], alpha=0.6, lw=0)
    ax.fill_between(x, data.low, data.high, color=COLOURS["band"], alpha=0.7, lw=0, label="band")
    ax.plot(x, data.expected, color=COLOURS["expected"], ls="--", lw=1.2, label="expected")
    for line in data.drivers:
        ax.plot(_days(line.times), line.values, lw=0.8, alpha=0.8, label=line.label)
    ax.plot(x, data.observed, color=COLOURS["observed"], lw=2, marker="o", ms=3, label="observed")
    tz = data.times[0].tzinfo if data.times else None
    locator = AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    ax.set_title(data.title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


class ChartCache:
    """Rendered charts by version (an alert's or incident's id and update time), the
    most recently used ``size`` kept."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._charts: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        png = self._charts.get(key)
        if png is not None:
            self._charts.move_to_end(key)
        return png

    def put(self, key: Hashable, png: bytes) -> None:
        self._charts[key] = png
        while len(self._charts) > self.size:
            self._charts.popitem(last=False)
