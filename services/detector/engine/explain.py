"""Stage three: from candidates across slices to alerts on-call can act on.

Per metric and window it

1. controls the false discovery rate across the slices tested
   (Benjamini-Hochberg at ``fdr``); sustained shifts flagged by a CUSUM have
   their own false-alarm control and pass as they are;
2. picks the level that explains the change: a slice whose deviation one
   flagged sub-slice accounts for (``explain_share`` of its excess) gives way
   to that sub-slice; a flagged slice with a flagged ancestor left standing
   becomes a driver of it, with its share of the ancestor's excess (a metric
   event series does not add up across slices: each slice flagged alerts);
3. for a ratio, splits the change of the alerting slice between rates within
   its sub-slices and the traffic mix across them (``breakdown``), from every
   sub-slice's denominator and baseline;
4. keeps the lifecycle: one alert per fingerprint (metric + slice), updated
   while it fires, resolved after ``resolve_after`` windows without it; an
   alert's first update carries the slice's recent windows (``series``).

Alert ids derive from the fingerprint and the window the anomaly started in,
so reprocessing the same events gives the same ids. Windows are decided only
once every stage-two source has judged them, in event-time order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .evaluate import EngineSettings, Report
from .marks import Marks
from .slices import DIMENSIONS, parse_slice_key


def fingerprint(metric: str, slice_key: str) -> str:
    return hashlib.blake2b(f"{metric}|{slice_key}".encode(), digest_size=8).hexdigest()


def alert_id(fp: str, started_at: int) -> str:
    return hashlib.blake2b(f"{fp}|{started_at}".encode(), digest_size=16).hexdigest()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class OpenAlert:
    alert_id: str
    started_at: int
    windows: int
    peak_score: float
    last: dict[str, Any]  # the latest candidate, for the resolve message
    normal_streak: int = 0


def benjamini_hochberg(
    candidates: list[dict[str, Any]], tests: int, q: float
) -> list[dict[str, Any]]:
    ranked = sorted(candidates, key=lambda c: (c["p"], c["slice"]))
    keep = 0
    for rank, cand in enumerate(ranked, start=1):
        if cand["p"] <= q * rank / max(tests, 1):
            keep = rank
    return [c for i, c in enumerate(ranked) if i < keep or c["sustained"]]


def _is_ancestor(parent: dict[str, str], child: dict[str, str]) -> bool:
    return len(parent) < len(child) and all(child.get(k) == v for k, v in parent.items())


def breakdown(
    cand: Mapping[str, Any], census: Mapping[str, tuple[float, float]]
) -> dict[str, Any] | None:
    """How a ratio's excess numerator splits, along the dimension that shows it
    best: ``mix`` is what the sub-slices' own baselines expect of this window's
    traffic beyond what the slice's baseline expects of it (traffic moved
    between sub-slices of different rates); ``within_rates`` is the rest (the
    rates moved inside the sub-slices). None when the sub-slices are unknown."""
    here = parse_slice_key(cand["slice"])
    n, observed, expected = cand["n"], cand["observed"] * cand["n"], cand["expected"] * cand["n"]
    # sub-slices one dimension below, in key order: the sums must not depend on
    # which partition reported first
    below: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(census):
        there = parse_slice_key(key)
        if len(there) == len(here) + 1 and _is_ancestor(here, there):
            (dim,) = there.keys() - here.keys()
            below.setdefault(dim, []).append(census[key])
    best: dict[str, Any] | None = None
    for dim in DIMENSIONS:
        children = below.get(dim, [])
        covered = sum(c[0] for c in children)
        if not children or abs(covered - n) > 0.01 * max(n, 1.0):
            continue  # a sub-slice not tracked: the split would not add up
        mix = sum(c[1] for c in children) - expected
        within = observed - expected - mix
        if best is None or abs(mix) > abs(best["mix"]):
            best = {"dimension": dim, "within_rates": round(within, 6), "mix": round(mix, 6)}
    if best is not None:
        excess = observed - expected
        best["cause"] = "mix" if best["mix"] * excess > 0.5 * excess * excess else "rates"
    return best


def explain(
    flagged: list[dict[str, Any]], share: float
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The candidates to alert on, each with the flagged sub-slices that drive it."""
    dims = {c["slice"]: parse_slice_key(c["slice"]) for c in flagged}

    def descendants(c: dict[str, Any]) -> list[dict[str, Any]]:
        return [d for d in flagged if _is_ancestor(dims[c["slice"]], dims[d["slice"]])]

    def explained_by_one(c: dict[str, Any]) -> bool:
        total = c["excess"]
        return total != 0 and any(d["excess"] / total >= share for d in descendants(c))

    standing = [c for c in flagged if not explained_by_one(c)]
    roots = [
        c
        for c in standing
        if not any(_is_ancestor(dims[a["slice"]], dims[c["slice"]]) for a in standing)
    ]
    out = []
    for root in sorted(roots, key=lambda c: c["slice"]):
        drivers = sorted(descendants(root), key=lambda d: -abs(d["excess"]))
        out.append((root, drivers))
    return out


@dataclass
class AlertBook:
    settings: EngineSettings
    sources: tuple[str, ...]
    config_version: str
    pending: dict[int, list[Report]] = field(default_factory=dict)
    marks: Marks = field(default_factory=Marks)
    open: dict[str, OpenAlert] = field(default_factory=dict)  # "metric|slice" -> alert

    def add(self, source: str, report: Report) -> list[dict[str, Any]]:
        if report.start is not None:
            self.pending.setdefault(report.start, []).append(report)
        self.marks.advance(source, report.until)
        return self._decide_complete()

    def mark_idle(self, source: str) -> list[dict[str, Any]]:
        self.marks.mark_idle(source)
        return self._decide_complete()

    def flush(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for start in sorted(self.pending):
            alerts += self._decide(start, self.pending.pop(start))
        return alerts

    def _decide_complete(self) -> list[dict[str, Any]]:
        complete = self.marks.low(self.sources)
        if complete is None:
            return []
        alerts: list[dict[str, Any]] = []
        for start in sorted(self.pending):
            if start + self.settings.window_s > complete:
                break
            alerts += self._decide(start, self.pending.pop(start))
        return alerts

    def _decide(self, start: int, reports: list[Report]) -> list[dict[str, Any]]:
        tests: dict[str, int] = defaultdict(int)
        by_metric: dict[str, list[dict[str, Any]]] = defaultdict(list)
        census: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        sampled: set[str] = set()
        for report in reports:
            sampled.update(report.sampled)
            for metric, count in report.tests.items():
                tests[metric] += count
            for metric, slices in report.census.items():
                census[metric].update(slices)
            for cand in report.candidates:
                by_metric[cand["metric"]].append(cand)
        firing: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for metric in sorted(by_metric):
            flagged = benjamini_hochberg(by_metric[metric], tests[metric], self.settings.fdr)
            if any(c.get("alone") for c in flagged):  # a metric event series: no roll-up
                for found in flagged:
                    firing[f"{metric}|{found['slice']}"] = (found, [])
                continue
            for found, found_drivers in explain(flagged, self.settings.explain_share):
                root, drivers = self._stick(metric, found, found_drivers, flagged)
                firing[f"{metric}|{root['slice']}"] = (root, drivers)
        end = start + self.settings.window_s
        alerts = []
        for key in sorted(set(firing) | set(self.open)):
            current = self.open.get(key)
            if key in firing:
                cand, drivers = firing[key]
                metric, slice_key = key.split("|", 1)
                if current is None:
                    fp = fingerprint(metric, slice_key)
                    current = OpenAlert(alert_id(fp, start), start, 1, cand["score"], cand)
                else:
                    current = OpenAlert(
                        current.alert_id,
                        current.started_at,
                        current.windows + 1,
                        max(current.peak_score, cand["score"]),
                        cand,
                    )
                self.open[key] = current
                alert = self._alert(current, cand, drivers, start, "firing", None)
                if metric in census:
                    split = breakdown(cand, census[metric])
                    if split is not None:
                        alert["breakdown"] = split
                alerts.append(alert)
                continue
            assert current is not None
            if current.last.get("alone") and key not in sampled:
                continue  # a series without samples in this window says nothing
            current = replace(current, normal_streak=current.normal_streak + 1)
            if current.normal_streak < self.settings.resolve_after:
                self.open[key] = current
                continue
            del self.open[key]
            alerts.append(self._alert(current, current.last, [], start, "resolved", iso(end)))
        return alerts

    def _stick(
        self,
        metric: str,
        root: dict[str, Any],
        drivers: list[dict[str, Any]],
        flagged: list[dict[str, Any]],
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Keep an incident on the slice it was first raised for while that slice is
        still flagged, rather than hopping between levels as the noise moves."""
        here = parse_slice_key(root["slice"])
        for cand in flagged:
            if f"{metric}|{cand['slice']}" not in self.open or cand is root:
                continue
            there = parse_slice_key(cand["slice"])
            if _is_ancestor(there, here):
                return cand, [root, *drivers]
            if _is_ancestor(here, there):
                return cand, [d for d in drivers if d is not cand]
        return root, drivers

    def _alert(
        self,
        current: OpenAlert,
        cand: Mapping[str, Any],
        drivers: list[dict[str, Any]],
        start: int,
        status: str,
        resolved_at: str | None,
    ) -> dict[str, Any]:
        end = start + self.settings.window_s
        alert: dict[str, Any] = {
            "id": current.alert_id,
            "fingerprint": fingerprint(cand["metric"], cand["slice"]),
            "metric": cand["metric"],
            "slice": parse_slice_key(cand["slice"]),
            "window_start": iso(start),
            "window_end": iso(end),
            "direction": "up" if cand["observed"] >= cand["expected"] else "down",
            "observed": cand["observed"],
            "expected": cand["expected"],
            "expected_low": cand["low"],
            "expected_high": cand["high"],
            "n": cand["n"],
            "p_value": cand["p"],
            "score": cand["score"],
            "severity": cand["severity"],
            "status": status,
            "started_at": iso(current.started_at),
            "updated_at": iso(end),
            "resolved_at": resolved_at,
            "windows": current.windows,
            "baseline": cand["baseline"],
            "config_version": self.config_version,
        }
        if cand.get("calendar"):
            alert["calendar"] = cand["calendar"]
        if status == "firing" and current.windows == 1 and cand.get("series"):
            # the recent windows up to this one: later updates carry their own window
            alert["series"] = [[iso(p[0]), *p[1:]] for p in cand["series"]]
        if drivers:
            total = cand["excess"] or 1.0
            alert["drivers"] = [
                {
                    "slice": parse_slice_key(d["slice"]),
                    "observed": d["observed"],
                    "expected": d["expected"],
                    "contribution": d["excess"] / total,
                }
                for d in drivers
            ]
        return alert

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": {str(s): [r.to_json() for r in rs] for s, rs in self.pending.items()},
            "marks": self.marks.to_json(),
            "open": {k: a.__dict__ for k, a in self.open.items()},
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.pending = {
            int(s): [Report.from_json(r) for r in rs] for s, rs in snap["pending"].items()
        }
        self.marks = Marks.from_json(snap["marks"])
        self.open = {k: OpenAlert(**a) for k, a in snap["open"].items()}
