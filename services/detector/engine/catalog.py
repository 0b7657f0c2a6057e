"""The metric catalog: metrics declared in YAML, compiled into accumulator slots.

Each metric is built from *measures* over events: a count or a sum of a field
over the events of one type that match a predicate, or the number of distinct
users. A window keeps one number per count/sum measure and one set per
distinct measure, all of which merge by addition or union, so partial windows
from many workers combine exactly.

A distinct measure can also look at each user's history in the slice (kept by
stage one beside the leaf slice): ``seen_within`` keeps the window's users who
were also active in that long before it (returning users), ``lapsed_after``
counts the users whose inactivity reaches that long in the window (lapsed
users). Durations are written ``90s``, ``30m``, ``12h`` or ``7d``.

A measure is checked against the event contract when the catalog is loaded: its
field must be a number of the event types it reads, its ``where`` keys their
fields, and its ``where`` values among a field's listed values. A sum or mean of a
field an event may lack (``nps``) reads the events that carry it: their count is a
slot of its own, laid after every other, so that a catalog of required fields keeps
the layout of versions before it and their snapshots and partials are read.

Metric events (a number another system measures, under a name of its own) are
not measures of these metrics: the optional ``metric_events`` section says, by
default and per name, how a window summarises such a series (the last value,
the mean, the sum or the maximum of its samples), which direction hurts, its
unit and the severity of its alerts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from services.common.contracts import USER_EVENTS

from .yamlfile import Loc, first_error, line_of, located, read_yaml

DEFAULT_CATALOG = Path(__file__).with_name("metrics.yaml")

Scalar = str | int | float | bool
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    """``"7d"`` -> 604800; numbers are seconds; anything else is left to fail validation."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration like 30m, 12h or 7d")
        return int(match[1]) * _UNITS[match[2]]
    return value


Duration = Annotated[int, BeforeValidator(_seconds), Field(gt=0)]


class Measure(BaseModel):
    """Events of ``type`` (any type when omitted) matching ``where``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["order", "activity", "feedback"] | None = None
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    field: str | None = None
    distinct: Literal["user_id"] | None = None
    seen_within: Duration | None = None
    lapsed_after: Duration | None = None

    @model_validator(mode="after")
    def _one_aggregate(self) -> Measure:
        if self.field and self.distinct:
            raise ValueError("a measure sums a field or counts distinct users, not both")
        if (self.seen_within or self.lapsed_after) and not self.distinct:
            raise ValueError("seen_within and lapsed_after need 'distinct: user_id'")
        if self.seen_within and self.lapsed_after:
            raise ValueError("a measure takes seen_within or lapsed_after, not both")
        return self

    def identity(self) -> str:
        where = ",".join(f"{k}={self.where[k]}" for k in sorted(self.where))
        history = f"|seen<{self.seen_within}" if self.seen_within else ""
        history += f"|lapsed>{self.lapsed_after}" if self.lapsed_after else ""
        return f"{self.type or '*'}|{where}|{self.field or ''}|{self.distinct or ''}{history}"

    def base(self) -> Measure:
        """The same users without the history condition: who is active in the window."""
        return self.model_copy(update={"seen_within": None, "lapsed_after": None})


class MetricDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ratio", "count", "sum", "mean"]
    family: Literal["conversion", "orders", "churn", "feedback", "custom"] = "custom"
    alert_on: Literal["up", "down", "both"] = "both"
    numerator: Measure | None = None
    denominator: Measure | None = None
    measure: Measure | None = None
    description: str = ""

    @model_validator(mode="after")
    def _shape(self) -> MetricDef:
        if self.kind == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("a ratio metric needs 'numerator' and 'denominator'")
            if self.measure is not None:
                raise ValueError("a ratio metric takes 'numerator'/'denominator', not 'measure'")
        else:
            if self.measure is None:
                raise ValueError(f"a {self.kind} metric needs 'measure'")
            if self.numerator is not None or self.denominator is not None:
                raise ValueError(f"a {self.kind} metric takes 'measure' only")
            if self.kind in ("sum", "mean") and not self.measure.field:
                raise ValueError(f"a {self.kind} metric's measure needs 'field'")
            if self.kind == "mean" and self.measure.distinct:
                raise ValueError("a mean metric cannot count distinct users")
        return self


SERIES_TYPE = "metric"  # the event type whose events are series of their own


def feeds_catalog(event_type: str) -> bool:
    """Whether events of this type are measured by the catalog's metrics. Metric
    events are not: they are series of their own, so their topic's silence leaves
    no catalog metric unjudged, and nothing need wait for it until it speaks."""
    return event_type != SERIES_TYPE


Severity = Literal["critical", "warning", "info"]
Summary = Literal["last", "mean", "sum", "max"]
SUMMARIES: tuple[str, ...] = get_args(Summary)  # how a window sums up a series
SeriesName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class SeriesDef(BaseModel):
    """How the series of a metric event's name is judged. ``severity``: that of every
    alert of the name (none: from effect size and evidence, as for the metrics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: Summary = "mean"
    alert_on: Literal["up", "down", "both"] = "both"
    unit: Annotated[str, Field(max_length=32)] = ""
    severity: Severity | None = None


class SeriesOverride(BaseModel):
    """A name's own declarations; what it leaves out comes from the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: Summary | None = None
    alert_on: Literal["up", "down", "both"] | None = None
    unit: Annotated[str, Field(max_length=32)] | None = None
    severity: Severity | None = None


class MetricEventsDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: SeriesDef = Field(default_factory=SeriesDef)
    names: dict[SeriesName, SeriesOverride] = Field(default_factory=dict)


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    metrics: Annotated[dict[str, MetricDef], Field(min_length=1)]
    metric_events: MetricEventsDef = Field(default_factory=MetricEventsDef)

    @model_validator(mode="after")
    def _names_apart(self) -> CatalogFile:
        both = sorted(self.metrics.keys() & self.metric_events.names.keys())
        if both:
            raise ValueError(
                f"{', '.join(both)}: a metric event's name cannot be a catalog metric's too"
                " (alerts name either by it)"
            )
        return self


class CatalogError(ValueError):
    """The metric catalog file is unusable; the message names where and why."""


@dataclass(frozen=True)
class CountSlot:
    """Sum over matching events that carry ``field`` of ``field ** power`` (power 0: a
    count; without a field, of every matching event)."""

    type: str | None
    where: tuple[tuple[str, frozenset[Scalar]], ...]
    field: str | None
    power: int
    # a count of the events carrying an optional field: versions before counted every
    # matching event in its stead, in slot ``older`` (their windows have no slot of this)
    older: int | None = None


@dataclass(frozen=True)
class DistinctSlot:
    """Distinct users of matching events; with a history condition, filled when the
    window closes from the users of the ``base`` slot (the same predicate)."""

    type: str | None
    where: tuple[tuple[str, frozenset[Scalar]], ...]
    base: int | None = None  # history slots: index of the plain slot they filter
    seen_within: int | None = None
    lapsed_after: int | None = None


@dataclass(frozen=True)
class CompiledMetric:
    name: str
    kind: str
    family: str
    alert_on: str
    num: int  # index into counts, or into distinct sets when num_distinct
    num_distinct: bool
    den: int | None = None  # ratio denominator
    den_distinct: bool = False
    sumsq: int | None = None  # sum, mean: sum of squares slot
    n: int | None = None  # sum, mean: count slot
    history_s: int = 0  # how much user history the metric needs before it means anything
    reads: frozenset[str] = frozenset()  # the event types its measures count ("*": any)


@dataclass(frozen=True)
class SeriesCatalog:
    """The declarations of metric events' series: each name's, or the default."""

    default: SeriesDef = field(default_factory=SeriesDef)
    names: Mapping[str, SeriesDef] = field(default_factory=dict)

    def of(self, name: str) -> SeriesDef:
        return self.names.get(name, self.default)


@dataclass(frozen=True)
class Catalog:
    metrics: tuple[CompiledMetric, ...]
    count_slots: tuple[CountSlot, ...]
    distinct_slots: tuple[DistinctSlot, ...]
    version: str
    series: SeriesCatalog = field(default_factory=SeriesCatalog)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


def _where(measure: Measure) -> tuple[tuple[str, frozenset[Scalar]], ...]:
    items = []
    for key in sorted(measure.where):
        value = measure.where[key]
        allowed = frozenset(value) if isinstance(value, list) else frozenset([value])
        items.append((key, allowed))
    return tuple(items)


@dataclass(frozen=True)
class _Field:
    """What the event contract says of one field of an event type."""

    required: bool
    numeric: bool  # an integer or a number (not a boolean)
    scalar: bool  # a string, number or boolean: what ``where`` can compare
    choices: frozenset[Scalar] | None  # the values it may take, when the contract lists them


def _field_of(info: FieldInfo) -> _Field:
    kinds = get_args(info.annotation)
    if get_origin(info.annotation) not in (Union, UnionType):
        kinds = (info.annotation,)
    kinds = tuple(
        get_args(k)[0] if get_origin(k) is Annotated else k for k in kinds if k is not type(None)
    )
    listed = all(get_origin(k) is Literal for k in kinds)
    return _Field(
        info.is_required(),
        all(k in (int, float) for k in kinds),
        listed or all(k in (str, int, float, bool) for k in kinds),
        frozenset(v for k in kinds for v in get_args(k)) if listed else None,
    )


@cache
def _fields(event_type: str) -> dict[str, _Field]:
    return {name: _field_of(info) for name, info in USER_EVENTS[event_type].model_fields.items()}


def _reads(measure: Measure) -> tuple[str, ...]:
    return (measure.type,) if measure.type else tuple(USER_EVENTS)


def _optional(measure: Measure) -> bool:
    """Whether an event the measure reads may lack its field (it is counted apart)."""
    assert measure.field is not None
    return any(
        measure.field not in _fields(t) or not _fields(t)[measure.field].required
        for t in _reads(measure)
    )


def _measures(spec: CatalogFile) -> Iterator[tuple[tuple[str, ...], Measure]]:
    for name, metric in spec.metrics.items():
        for role in ("numerator", "denominator", "measure"):
            measure = getattr(metric, role)
            if measure is not None:
                yield ("metrics", name, role), measure


def _against_contract(spec: CatalogFile) -> tuple[tuple[str, ...], str] | None:
    """The first measure that reads a field its event types do not have (or that is no
    number, for ``field``), or a ``where`` value outside the field's choices: where, why."""
    for loc, measure in _measures(spec):
        types = _reads(measure)
        of = f"{measure.type} events" if measure.type else "any event type"
        lacks = f"{measure.type} events have no field" if measure.type else "no event type has"
        for key, value in measure.where.items():
            having = [_fields(t)[key] for t in types if key in _fields(t)]
            if not any(f.scalar for f in having):
                known = sorted({k for t in types for k, f in _fields(t).items() if f.scalar})
                return (*loc, "where", key), f"{lacks} {key!r}; fields: {', '.join(known)}"
            choices: set[Scalar] = set()
            for f in having:
                choices.update(f.choices or ())
            if all(f.choices is not None for f in having):
                for v in value if isinstance(value, list) else [value]:
                    if v not in choices:
                        listed = ", ".join(sorted(map(str, choices)))
                        why = f"{v!r} is not a {key} of {of}; choices: {listed}"
                        return (*loc, "where", key), why
        if measure.field:
            numeric = ", ".join(
                sorted({k for t in types for k, f in _fields(t).items() if f.numeric})
            )
            having = [_fields(t)[measure.field] for t in types if measure.field in _fields(t)]
            if not having:
                return (*loc, "field"), f"{lacks} {measure.field!r}; numeric fields: {numeric}"
            if not all(f.numeric for f in having):
                why = f"{measure.field!r} of {of} is not a number; numeric fields: {numeric}"
                return (*loc, "field"), why
    return None


def compile_catalog(spec: CatalogFile, version: str) -> Catalog:
    counts: dict[tuple[Any, ...], int] = {}
    count_slots: list[CountSlot] = []
    distincts: dict[str, int] = {}
    distinct_slots: list[DistinctSlot] = []

    def distinct(measure: Measure) -> int:
        key = measure.identity()
        if key not in distincts:
            base = None
            if measure.seen_within or measure.lapsed_after:
                base = distinct(measure.base())
            distincts[key] = len(distinct_slots)
            distinct_slots.append(
                DistinctSlot(
                    measure.type,
                    _where(measure),
                    base,
                    measure.seen_within,
                    measure.lapsed_after,
                )
            )
        return distincts[key]

    def slot(measure: Measure, power: int) -> tuple[int, bool]:
        if measure.distinct:
            return distinct(measure), True
        field = measure.field if power else None
        ckey = (measure.type or "*", _where(measure), field, power)
        if ckey not in counts:
            counts[ckey] = len(count_slots)
            count_slots.append(CountSlot(measure.type, _where(measure), field, power))
        return counts[ckey], False

    def plain(measure: Measure) -> tuple[int, bool]:
        return slot(measure, 1 if measure.field else 0)

    compiled: list[CompiledMetric] = []
    carried: list[tuple[int, Measure, int]] = []  # (metric, its measure, its events' count)
    for name, m in spec.metrics.items():
        head = (name, m.kind, m.family, m.alert_on)
        measures = [x for x in (m.numerator, m.denominator, m.measure) if x is not None]
        history = max((x.seen_within or x.lapsed_after or 0) for x in measures)
        reads = frozenset(x.type or "*" for x in measures)
        if m.kind == "ratio":
            assert m.numerator is not None and m.denominator is not None
            num, num_d = plain(m.numerator)
            den, den_d = plain(m.denominator)
            compiled.append(
                CompiledMetric(*head, num, num_d, den, den_d, history_s=history, reads=reads)
            )
        elif m.kind in ("sum", "mean"):
            assert m.measure is not None
            num, _ = slot(m.measure, 1)
            sq, _ = slot(m.measure, 2)
            n, _ = slot(m.measure, 0)
            if _optional(m.measure):
                carried.append((len(compiled), m.measure, n))
            compiled.append(CompiledMetric(*head, num, False, sumsq=sq, n=n, reads=reads))
        else:
            assert m.measure is not None
            num, num_d = plain(m.measure)
            compiled.append(CompiledMetric(*head, num, num_d, history_s=history, reads=reads))
    # a sum or mean of an optional field counts the events that carry it, in slots
    # after every other: the slots before are laid out as versions before laid them
    # out, so their snapshots and partials are read with this one's count filled in
    for at, measure, every in carried:
        ckey = (measure.type or "*", _where(measure), measure.field, 0)
        if ckey not in counts:
            counts[ckey] = len(count_slots)
            count_slots.append(CountSlot(measure.type, _where(measure), measure.field, 0, every))
        compiled[at] = replace(compiled[at], n=counts[ckey])
    events = spec.metric_events
    series = SeriesCatalog(
        events.default,
        {
            name: events.default.model_copy(update=own.model_dump(exclude_none=True))
            for name, own in events.names.items()
        },
    )
    return Catalog(tuple(compiled), tuple(count_slots), tuple(distinct_slots), version, series)


def load_catalog(path: Path = DEFAULT_CATALOG, appended: Path | None = None) -> Catalog:
    """Read and validate a catalog file, with the sections of ``appended`` (which it
    must not have) after its own if given; raise CatalogError naming the problem
    and the file it is in."""
    text, raw = read_yaml(path, "metric catalog", CatalogError)
    own_lines = text.count("\n")
    if appended is not None:
        more, more_raw = read_yaml(appended, "metric catalog", CatalogError)
        if both := sorted(raw.keys() & more_raw.keys()):
            raise CatalogError(f"{appended}: {', '.join(both)}: already in {path}")
        text, raw = text + more, {**raw, **more_raw}

    def refused(loc: Loc, message: str) -> CatalogError:
        where, line_no = path, line_of(text, loc)
        if appended is not None and line_no is not None and line_no > own_lines:
            where, line_no = appended, line_no - own_lines
        return CatalogError(located(where, line_no, loc, message))

    try:
        spec = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise refused(*first_error(exc)) from None
    if (wrong := _against_contract(spec)) is not None:
        raise refused(*wrong)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return compile_catalog(spec, version)
