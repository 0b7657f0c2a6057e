"""The Numenta Anomaly Benchmark: run a detector over the corpus and score it.

The scoring follows NAB's published rules: the first min(floor(0.15 N), 750)
rows of a file are probationary and not scored; a row is a detection when its
score reaches the threshold; inside a window only the first detection counts,
worth A_TP * sigma(y) / sigma(-1) with y its relative position in the window;
a window without one costs A_FN; every detection outside windows costs
A_FP * sigma(y), y its distance past the previous window relative to that
window's width (a flat A_FP where none precedes it). The threshold is chosen
per profile to maximise the sum over the corpus, and the result normalised
between the null detector (0.5 everywhere, its own best threshold) and the
perfect one (each window detected at its first row).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.detector.engine.univariate import UnivariateDetector

DETECTOR_NAME = "opswatch"


def sigma(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class Series:
    name: str  # category/file.csv
    timestamps: list[str]
    values: list[float]
    windows: list[tuple[int, int]]  # inclusive row indices

    @property
    def probation(self) -> int:
        return min(math.floor(0.15 * len(self.values)), 750)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.strip())


def _read_rows(path: Path, name: str) -> tuple[list[str], list[float], dict[datetime, int]]:
    """Timestamps, values and row index by time; a bad row is named (rows count from 1)."""
    stamps: list[str] = []
    values: list[float] = []
    index: dict[datetime, int] = {}
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            try:
                index[_parse(row["timestamp"])] = i
                value = float(row["value"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{name} row {i + 1}: not a timestamp,value row ({exc})") from None
            if not math.isfinite(value):
                raise ValueError(f"{name} row {i + 1}: the value {row['value']!r} is not finite")
            stamps.append(row["timestamp"])
            values.append(value)
    if not values:
        raise ValueError(f"{name}: no rows")
    return stamps, values, index


def load_corpus(root: Path) -> list[Series]:
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    corpus = []
    for path in sorted((root / "data").glob("*/*.csv")):
        name = f"{path.parent.name}/{path.name}"
        stamps, values, index = _read_rows(path, name)
        windows = []
        for start, end in labels.get(name, []):
            try:
                windows.append((index[_parse(start)], index[_parse(end)]))
            except KeyError as exc:
                raise ValueError(f"{name}: window bound {exc} is not a row's timestamp") from None
        corpus.append(Series(name, stamps, values, windows))
    if not corpus:
        raise ValueError(f"no data/<category>/<file>.csv under {root}")
    return corpus


def load_profiles(root: Path) -> list[Profile]:
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return [
        Profile(
            name,
            c["CostMatrix"]["tpWeight"],
            c["CostMatrix"]["fpWeight"],
            c["CostMatrix"]["fnWeight"],
        )
        for name, c in raw.items()
    ]


def detect(series: Series, detector: UnivariateDetector, streaming: bool = False) -> list[float]:
    """The detector's score for every row. By default set up as NAB's runner
    does for every detector: the input range is the file's minimum and maximum,
    the rest after a detection a fifth of the probationary period (both known
    only once the file is whole). ``streaming`` gives it neither, as a live
    series would: it learns the range as the values come and rests a share of
    the rows seen so far, so each score depends on that row and those before."""
    values = series.values
    if streaming:
        state = detector.init_state()
    else:
        state = detector.init_state(max(1, series.probation // 5), min(values), max(values))
    return [detector.step(state, value) for value in values]


@dataclass(frozen=True)
class _Row:
    score: float
    file: int
    index: int


def best_score(
    corpus: Sequence[Series], scores: Sequence[Sequence[float]], profile: Profile
) -> tuple[float, float]:
    """(best raw score, its threshold): a sweep from the highest score down."""
    window_of: list[dict[int, int]] = []  # file -> row -> window number
    windows: list[tuple[int, int, int]] = []  # (file, left, right)
    fp_cost: list[dict[int, float]] = []
    for f, series in enumerate(corpus):
        inside: dict[int, int] = {}
        costs: dict[int, float] = {}
        for left, right in series.windows:
            for i in range(left, right + 1):
                inside[i] = len(windows)
            windows.append((f, left, right))
        previous: tuple[int, int] | None = None
        bounds = sorted(series.windows)
        w = 0
        for i in range(series.probation, len(series.values)):
            while w < len(bounds) and bounds[w][1] < i:
                previous = bounds[w]
                w += 1
            if i in inside:
                continue
            if previous is None:
                costs[i] = -profile.fp
            else:
                width = previous[1] - previous[0] + 1
                costs[i] = profile.fp * sigma((i - previous[1]) / width)
        window_of.append(inside)
        fp_cost.append(costs)

    def tp_value(window: int, i: int) -> float:
        _, left, right = windows[window]
        width = right - left + 1
        return profile.tp * sigma(-(right - i + 1) / width) / sigma(-1.0)

    rows = sorted(
        (
            _Row(s, f, i)
            for f, series in enumerate(corpus)
            for i, s in enumerate(scores[f])
            if i >= series.probation
        ),
        key=lambda r: -r.score,
    )
    earliest: list[int | None] = [None] * len(windows)
    total = -profile.fn * len(windows)
    best, best_threshold = total, math.inf
    for k, row in enumerate(rows):
        window = window_of[row.file].get(row.index)
        if window is None:
            total += fp_cost[row.file][row.index]
        else:
            first = earliest[window]
            if first is None or row.index < first:
                total -= -profile.fn if first is None else tp_value(window, first)
                total += tp_value(window, row.index)
                earliest[window] = row.index
        last_of_its_score = k + 1 == len(rows) or rows[k + 1].score != row.score
        if last_of_its_score and total > best:
            best, best_threshold = total, row.score
    return best, best_threshold


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    score: float
    raw: float
    threshold: float


def evaluate(
    corpus: Sequence[Series], scores: Sequence[Sequence[float]], profiles: Iterable[Profile]
) -> list[ProfileResult]:
    null = [[0.5] * len(s.values) for s in corpus]
    results = []
    for profile in profiles:
        raw, threshold = best_score(corpus, scores, profile)
        null_raw, _ = best_score(corpus, null, profile)
        perfect = profile.tp * sum(len(s.windows) for s in corpus)
        normalised = 100.0 * (raw - null_raw) / (perfect - null_raw)
        results.append(ProfileResult(profile.name, normalised, raw, threshold))
    return results


def write_results(out: Path, corpus: Sequence[Series], scores: Sequence[Sequence[float]]) -> None:
    """NAB's layout: results/<detector>/<category>/<detector>_<file>.csv."""
    for series, file_scores in zip(corpus, scores, strict=True):
        category, filename = series.name.split("/")
        path = out / DETECTOR_NAME / category / f"{DETECTOR_NAME}_{filename}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["timestamp", "value", "anomaly_score"])
            for ts, value, score in zip(series.timestamps, series.values, file_scores, strict=True):
                writer.writerow([ts, repr(value), f"{score:.6f}"])


SUBSETS = ("all", "even", "odd")


def subset(corpus: Sequence[Series], which: str) -> list[Series]:
    """The whole corpus, or the files at even (0, 2, ...) or odd positions in name
    order: one half to choose a parameter on, the other to check it."""
    if which not in SUBSETS:
        raise ValueError(f"no subset {which!r}: one of {', '.join(SUBSETS)}")
    chosen = list(corpus) if which == "all" else list(corpus[SUBSETS.index(which) - 1 :: 2])
    if not chosen:
        raise ValueError(f"no files in the {which} half of the corpus")
    return chosen


def run(
    root: Path,
    out: Path,
    detector: UnivariateDetector | None = None,
    progress: Callable[[str], None] | None = None,
    streaming: bool = False,
    files: str = "all",
) -> list[ProfileResult]:
    corpus = subset(load_corpus(root), files)
    detector = detector or UnivariateDetector()
    scores = []
    for series in corpus:
        scores.append(detect(series, detector, streaming))
        if progress is not None:
            progress(series.name)
    write_results(out, corpus, scores)
    return evaluate(corpus, scores, load_profiles(root))
