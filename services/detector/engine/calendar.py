"""The calendar: campaigns and holidays the team tells the detector about.

An entry covers a span of time (once, or repeated every year or week) and some
slices (``{}`` is all-up and every slice below it, ``{region: eu}`` that slice
and its sub-slices), with one effect on the windows that start inside it:

- ``expect``: each metric the entry names is judged against its baseline
  scaled by the entry's factor (a ratio's rate, a count's or a sum's level, a
  mean's value), and the window is not learned as normal; the metrics it does
  not name are judged and learned as usual;
- ``exclude``: windows are neither judged nor learned from;
- ``mute``: judged and learned as usual; the alerts are recorded, not notified.

Where entries overlap, ``exclude`` wins over an ``expect`` that names the
metric, which wins over ``mute``, then over an ``expect`` that does not name
it; among entries of one effect, the first listed. The calendar is a plain
value: the evaluator asks it which entry applies to a window, a slice and a
metric, and an alert inside an entry carries ``calendar: {name, effect,
factor}``.
"""

from __future__ import annotations

import calendar as gregorian
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .yamlfile import Loc, first_error, line_of, read_yaml

Effect = Literal["expect", "exclude", "mute"]
Dimension = Literal["region", "channel", "platform"]
RANK = {"exclude": 0, "expect": 1, "mute": 2}  # an expect that does not name the metric: 3


class CalendarError(ValueError):
    """The calendar file or entry is unusable; the message names which entry and field."""


class EntrySpec(BaseModel):
    """One calendar entry, as the file and the alert API give it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    start: datetime
    end: datetime
    timezone: str | None = None
    every: Literal["year", "week"] | None = None
    slices: Annotated[
        list[dict[Dimension, Annotated[str, Field(min_length=1)]]], Field(min_length=1)
    ]
    effect: Effect
    expect: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EntrySpec:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        for field in ("start", "end"):
            aware = getattr(self, field).tzinfo is not None
            if aware == (self.timezone is not None):
                raise ValueError(
                    f"{field}: give an RFC 3339 time with an offset, or a local time"
                    " with `timezone:` (not both, not neither)"
                )
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        longest = {"year": timedelta(days=365), "week": timedelta(days=7)}
        if self.every is not None and self.end - self.start > longest[self.every]:
            raise ValueError(f"end: an entry repeated every {self.every} must not outlast it")
        if self.effect == "expect" and not self.expect:
            raise ValueError("expect: an `expect` entry names at least one metric and its factor")
        if self.effect != "expect" and self.expect is not None:
            raise ValueError(f"expect: only for effect `expect`, not `{self.effect}`")
        return self


class CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[EntrySpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """A compiled entry: spans in its zone's wall time, slices as sorted pairs."""

    spec: EntrySpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def effect(self) -> str:
        return self.spec.effect

    def _zone(self) -> Any:
        return ZoneInfo(self.spec.timezone) if self.spec.timezone else UTC

    def _wall(self) -> tuple[datetime, datetime]:
        """Start and end as naive wall times in the entry's zone."""
        zone = self._zone()
        start, end = self.spec.start, self.spec.end
        if start.tzinfo is not None:
            start, end = start.astimezone(zone), end.astimezone(zone)
        return start.replace(tzinfo=None), end.replace(tzinfo=None)

    def occurrence(self, t: float) -> tuple[float, float] | None:
        """The span (epoch seconds) of the occurrence that covers ``t``, if any."""
        zone = self._zone()
        start, end = self._wall()
        length = end - start
        local = datetime.fromtimestamp(t, zone).replace(tzinfo=None)
        if self.spec.every == "week":
            weeks = math.floor((local - start) / timedelta(days=7))
            candidates = [start + timedelta(days=7 * weeks)]
        elif self.spec.every == "year":
            candidates = [_same_day(start, year) for year in (local.year - 1, local.year)]
        else:
            candidates = [start]
        for begin in candidates:
            if begin <= local < begin + length:
                return (
                    begin.replace(tzinfo=zone).timestamp(),
                    (begin + length).replace(tzinfo=zone).timestamp(),
                )
        return None

    def covers(self, dims: Mapping[str, str]) -> bool:
        """Whether the slice ``dims`` is one of the entry's slices or below one."""
        return any(all(dims.get(k) == v for k, v in want.items()) for want in self.spec.slices)

    def factor(self, metric: str) -> float | None:
        return (self.spec.expect or {}).get(metric)

    def to_json(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json", exclude_none=True)


def _same_day(start: datetime, year: int) -> datetime:
    """``start`` moved to ``year``; 29 February becomes the 28th in other years."""
    day = min(start.day, gregorian.monthrange(year, start.month)[1])
    return start.replace(year=year, day=day)


@dataclass(frozen=True)
class Applied:
    """The entry that applies to one (window, slice, metric), and its factor there."""

    entry: Entry
    factor: float | None

    @property
    def effect(self) -> str:
        return self.entry.effect

    @property
    def scales(self) -> bool:
        """An ``expect`` entry that names the metric: judged scaled, not learned."""
        return self.factor is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.entry.name, "effect": self.entry.effect, "factor": self.factor}


@dataclass(frozen=True)
class Calendar:
    entries: tuple[Entry, ...] = ()

    @classmethod
    def of(cls, specs: Sequence[EntrySpec]) -> Calendar:
        return cls(tuple(Entry(spec) for spec in specs))

    def at(self, t: float) -> tuple[Entry, ...]:
        """The entries with an occurrence covering ``t``, in order."""
        return tuple(e for e in self.entries if e.occurrence(t) is not None)

    @staticmethod
    def applies(active: Sequence[Entry], dims: Mapping[str, str], metric: str) -> Applied | None:
        """Which of the ``active`` entries applies to a slice and a metric (see above)."""
        best: tuple[int, Applied] | None = None
        for entry in active:
            if not entry.covers(dims):
                continue
            factor = entry.factor(metric)
            rank = 3 if entry.effect == "expect" and factor is None else RANK[entry.effect]
            if best is None or rank < best[0]:
                best = (rank, Applied(entry, factor))
        return None if best is None else best[1]

    def check(self, metrics: Collection[str]) -> None:
        """Every metric an entry names must be in the catalog."""
        for i, entry in enumerate(self.entries):
            for name in entry.spec.expect or {}:
                if name not in metrics:
                    raise CalendarError(
                        f"events.{i} ({entry.name}): expect.{name}: no such metric in the catalog"
                    )

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.entries]


def describe(where: Loc, message: str, specs: Sequence[Any]) -> str:
    """``events.1 (Winter sale): end: must be after start`` from a validation error."""
    loc = [str(p) for p in where]
    if len(loc) >= 2 and loc[0] == "events" and loc[1].isdigit():
        index = int(loc[1])
        raw = specs[index] if index < len(specs) else None
        name = raw.get("name") if isinstance(raw, Mapping) else None
        head = f"events.{index}" + (f" ({name})" if name else "")
        field = ".".join(loc[2:])
        return f"{head}: {field}: {message}" if field else f"{head}: {message}"
    return f"{'.'.join(loc) or '(top level)'}: {message}"


def parse_entry(raw: Any) -> EntrySpec:
    """One entry from JSON (the alert API, the calendar topic); CalendarError if bad."""
    try:
        return EntrySpec.model_validate(raw)
    except ValidationError as exc:
        loc, message = first_error(exc)
        where = ".".join(map(str, loc))
        raise CalendarError(f"{where}: {message}" if where else message) from None


def load_calendar(path: Path, metrics: Collection[str]) -> Calendar:
    """Read and validate a calendar file; raise CalendarError naming entry, field and line."""
    text, raw = read_yaml(path, "calendar", CalendarError)
    raw = raw or {}
    try:
        spec = CalendarFile.model_validate(raw)
    except ValidationError as exc:
        loc, message = first_error(exc)
        events = raw.get("events") if isinstance(raw, Mapping) else None
        line_no = line_of(text, loc)
        at = f" line {line_no}" if line_no else ""
        raise CalendarError(f"{path}{at}: {describe(loc, message, events or [])}") from None
    calendar = Calendar.of(spec.events)
    try:
        calendar.check(metrics)
    except CalendarError as exc:
        raise CalendarError(f"{path}: {exc}") from None
    return calendar
