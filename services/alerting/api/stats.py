"""/v1/stats: alert counts and the precision people's labels give."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.alerting.api.deps import ReadAuth, StoreDep
from services.alerting.metrics import precision
from services.common.problems import problem_responses

router = APIRouter(prefix="/v1/stats", tags=["stats"])


class Stats(BaseModel):
    alerts_by_status: dict[str, int]
    alerts_by_severity: dict[str, int]
    labels: dict[str, int] = Field(description="labelled alerts by label; 'none' unlabelled")
    labelled: int
    precision: float | None = Field(
        description="(true_positive + expected) / labelled alerts; null before any label"
    )
    outbox_depth: int


@router.get("", response_model=Stats, dependencies=[ReadAuth], responses=problem_responses(401))
def stats(store: StoreDep) -> Stats:
    counts = store.counts()
    labels = dict(counts.by_label)
    return Stats(
        alerts_by_status=counts.by_status,
        alerts_by_severity=counts.by_severity,
        labels=labels,
        labelled=sum(n for k, n in labels.items() if k != "none"),
        precision=precision(labels),
        outbox_depth=store.outbox_depth(),
    )
