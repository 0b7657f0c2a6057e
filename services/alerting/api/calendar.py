"""/v1/calendar: the calendar in force; entries added and deleted at runtime.

Entries posted here go to the compacted calendar topic (Kafka mode), which the
detector's workers and every replica of this API read, or straight to the
engine's calendar (embedded mode). The file's entries (OPSWATCH_CALENDAR_FILE)
are listed too, and cannot be deleted here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.alerting.api.deps import PathId, ReadAuth, WriteAuth
from services.common.calendars import CalendarFeed, Publish, entry_id
from services.common.problems import ProblemError, problem_responses
from services.detector.engine.calendar import Calendar, CalendarError, EntrySpec

router = APIRouter(prefix="/v1/calendar", tags=["calendar"])


@dataclass
class CalendarDesk:
    """What the API needs: the feed it lists and adds to, the catalog's metric names
    an entry's factors must name, and where new entries are published (None: the
    feed is the engine's own, in embedded mode)."""

    feed: CalendarFeed
    metrics: Collection[str]
    publish: Publish | None = None

    def add(self, spec: EntrySpec) -> str:
        try:
            Calendar.of([spec]).check(self.metrics)
        except CalendarError as exc:
            raise ProblemError(422, "Invalid calendar entry", str(exc).split(": ", 1)[1]) from None
        ident = entry_id(spec)
        if self.publish is not None:
            self.publish(ident, spec)
        self.feed.put(ident, spec)
        return ident

    def remove(self, ident: str) -> None:
        if self.feed.from_file(ident):
            raise ProblemError(
                409, "Entry from the calendar file", "change OPSWATCH_CALENDAR_FILE to remove it"
            )
        if not any(e["id"] == ident for e in self.feed.listing()):
            raise ProblemError(404, "No such calendar entry", f"no entry with id {ident!r}")
        if self.publish is not None:
            self.publish(ident, None)
        self.feed.delete(ident)


def get_desk(request: Request) -> CalendarDesk:
    return request.app.state.calendar  # type: ignore[no-any-return]


DeskDep = Annotated[CalendarDesk, Depends(get_desk)]


class CalendarList(BaseModel):
    items: list[dict[str, Any]]
    effects: list[dict[str, Any]] = Field(
        description="entries that ended: per family head slice and metric, observed and "
        "the ordinary baseline's expectation (sums over the entry's windows), factor_set"
    )


@router.get(
    "", response_model=CalendarList, dependencies=[ReadAuth], responses=problem_responses(401)
)
def list_entries(desk: DeskDep) -> CalendarList:
    """Every entry in force: the file's (``source: file``), then those added here."""
    return CalendarList(items=desk.feed.listing(), effects=desk.feed.effects())


@router.post(
    "",
    status_code=201,
    dependencies=[WriteAuth],
    responses=problem_responses(400, 401, 422),
)
def add_entry(desk: DeskDep, entry: EntrySpec) -> dict[str, Any]:
    """Add an entry (the file's format, as JSON); the same entry twice is added once."""
    ident = desk.add(entry)
    return {"id": ident, "source": "api", **entry.model_dump(mode="json", exclude_none=True)}


@router.delete(
    "/{entry_id}",
    status_code=204,
    dependencies=[WriteAuth],
    responses=problem_responses(401, 404, 409, 422),
)
def delete_entry(desk: DeskDep, entry_id: PathId) -> Response:
    desk.remove(entry_id)
    return Response(status_code=204)
