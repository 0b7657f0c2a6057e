"""opswatch replay on files it did not write: an independent generator, rough ordering."""

from __future__ import annotations

import gzip
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from services.common.events import batches, read_record
from services.detector.engine.catalog import load_catalog
from services.detector.engine.evaluate import EngineSettings
from services.detector.stages import StageOne, StageThree, StageTwo

START = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday
OUTAGE = (START + timedelta(days=4, hours=15), START + timedelta(days=4, hours=17))
REPLAY = (sys.executable, "-m", "services.cli", "replay")
CONVERSION = {"conversion_rate", "checkout_conversion", "payment_failure_rate"}


def independent_events(outage: bool, seed: int = 3) -> list[dict[str, Any]]:
    """Sessions and orders from a generator that shares nothing with opswatch's simulator."""
    rng = np.random.default_rng(seed)
    regions = {"north": 0.4, "south": 0.3, "east": 0.2, "west": 0.1}
    channels = {"web": 0.6, "app": 0.3, "store": 0.1}
    platforms = {"ios": 0.5, "android": 0.5}
    events: list[dict[str, Any]] = []
    minute = 0
    end = int((OUTAGE[1] - START).total_seconds() // 60) + 6 * 60
    while minute < end:
        t0 = START.timestamp() + minute * 60
        hour = (minute / 60) % 24
        rate = 30 * (0.6 + 0.4 * math.sin((hour - 9) / 24 * 2 * math.pi))
        k = int(rng.poisson(rate))
        picks = zip(
            rng.choice(list(regions), size=k, p=list(regions.values())),
            rng.choice(list(channels), size=k, p=list(channels.values())),
            rng.choice(list(platforms), size=k, p=list(platforms.values())),
            t0 + rng.uniform(0, 60, size=k),
            rng.integers(0, 20000, size=k),
            rng.random(size=k),
            rng.random(size=k),
            strict=True,
        )
        for region, channel, platform, at, uid, checkout, pay in picks:
            user = f"user{uid}"
            dims = {"region": str(region), "channel": str(channel), "platform": str(platform)}
            sid = f"sess{len(events)}"
            events.append(
                dict(
                    type="activity",
                    action="session_start",
                    session_id=sid,
                    ts=at,
                    user_id=user,
                    **dims,
                )
            )
            if checkout < 0.12:
                events.append(
                    dict(
                        type="activity",
                        action="checkout_start",
                        session_id=sid,
                        ts=at + 40,
                        user_id=user,
                        **dims,
                    )
                )
                down = (
                    outage
                    and region == "south"
                    and channel == "web"
                    and OUTAGE[0].timestamp() <= at < OUTAGE[1].timestamp()
                )
                ok = pay < (0.03 if down else 0.92)
                events.append(
                    dict(
                        type="order",
                        order_id=f"ord{len(events)}",
                        status="paid" if ok else "payment_failed",
                        amount=round(float(at % 97) + 5, 2),
                        currency="EUR",
                        ts=at + 55,
                        user_id=user,
                        **dims,
                    )
                )
        minute += 1
    for i, e in enumerate(events):
        e["event_id"] = f"ev-{i}"
        jitter = rng.uniform(0, 180)  # exported a little out of order
        e["_order"] = e["ts"] + jitter
        e["ts"] = datetime.fromtimestamp(e["ts"], UTC).isoformat()
    events.sort(key=lambda e: e.pop("_order"))
    return events


def replay(tmp_path: Path, events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    src = tmp_path / f"{name}.ndjson"
    dst = tmp_path / f"{name}.alerts.ndjson"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "replay",
            "--input",
            str(src),
            "--output",
            str(dst),
            "--stats",
        ],
        capture_output=True,
        text=True,
        timeout=600,  # about 110 s on a quiet 2-core machine: a guard against a hang
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "events/s" in done.stdout
    return [orjson.loads(line) for line in dst.read_bytes().splitlines()]


def about_the_outage(alert: dict[str, Any]) -> bool:
    s = alert["slice"]
    return (
        alert["metric"] in CONVERSION
        and s.get("region", "south") == "south"
        and s.get("channel", "web") == "web"
        and alert["status"] == "firing"
        and OUTAGE[0].isoformat()
        <= alert["window_start"].replace("Z", "+00:00")
        < OUTAGE[1].isoformat()
    )


@pytest.mark.seconds(215)
@pytest.mark.timeout(1500)  # two replays of up to 600 s each
def test_payment_outage_in_an_independent_file_is_caught_and_its_absence_is_quiet(
    tmp_path: Path,
) -> None:
    with_outage = replay(tmp_path, independent_events(outage=True), "outage")
    caught = [a for a in with_outage if about_the_outage(a)]
    assert caught, "no conversion alert for south/web during the outage"
    assert any(a["slice"] == {"region": "south", "channel": "web"} for a in caught)
    events = independent_events(outage=False)
    clean = replay(tmp_path, events, "clean")
    assert not [a for a in clean if about_the_outage(a)]
    # the file ends 35 s into its last window, which holds a sliver of that
    # window's traffic: it is not judged, so no drop is reported from it
    end = max(datetime.fromisoformat(e["ts"]) for e in events)
    last = end.replace(minute=end.minute - end.minute % 5, second=0, microsecond=0)
    assert (end - last).total_seconds() < 60
    assert not [a for a in clean if datetime.fromisoformat(a["window_start"]) >= last]


def test_replay_is_deterministic_and_skips_bad_lines(tmp_path: Path) -> None:
    events = independent_events(outage=True)[:40000]
    first = replay(tmp_path, events, "a")
    bad = tmp_path / "bad.ndjson"
    lines = [orjson.dumps(e) for e in events]
    lines.insert(10, b"{not json")
    lines.insert(20, b'{"type": "order", "event_id": "x"}')
    # a wrong year: ingest refuses it, and replay would judge every window up to it
    lines.insert(30, orjson.dumps({**events[30], "event_id": "y", "ts": "2999-01-01T00:00:00Z"}))
    bad.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "bad.alerts.ndjson"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", "-i", str(bad), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0
    assert "3 invalid lines skipped" in done.stderr
    assert "bad.ndjson:11" in done.stderr
    assert "bad.ndjson:31: skipped: ts: more than a day ahead of this machine's clock" in (
        done.stderr
    )
    assert [orjson.loads(x) for x in out.read_bytes().splitlines()] == first


def test_replay_refuses_to_write_over_its_input_or_where_it_cannot_write(tmp_path: Path) -> None:
    """One clear line, exit 2, and the input as it was: an output naming the input
    would have emptied it before it was read."""
    folder = tmp_path / "exports[/x]"  # brackets in a path are not markup
    folder.mkdir(parents=True)
    source = folder / "events.ndjson"
    data = b"".join(
        orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in independent_events(False)[:50]
    )
    source.write_bytes(data)

    def replay_to(output: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "replay", "-i", str(source), "-o", str(output)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    same = replay_to(folder / ".." / folder.name / "events.ndjson")
    assert same.returncode == 2
    assert f"--output is the input file: {folder}/../{folder.name}/events.ndjson" in same.stderr
    assert source.read_bytes() == data
    nowhere = replay_to(tmp_path / "missing" / "alerts.ndjson")
    assert nowhere.returncode == 2
    assert "cannot write" in nowhere.stderr and "No such file or directory" in nowhere.stderr
    assert "Traceback" not in same.stderr + nowhere.stderr
    fine = replay_to(folder / "alerts.ndjson")
    assert fine.returncode == 0 and f"-> {folder}/alerts.ndjson" in fine.stdout


def test_replay_refuses_a_negative_reorder(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"")
    done = subprocess.run(
        [*REPLAY, "-i", str(source), "-o", str(tmp_path / "o"), "--reorder", "-5m"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "--reorder must be at least zero: '-5m'\n"


def test_input_that_is_not_ndjson_events_is_refused_in_one_line(tmp_path: Path) -> None:
    """A compressed file is refused before it is read; input where no line is an event
    (binary, say) after it is read, with exit code 2 either way, and an output that was
    there as it was."""
    text = b"".join(
        orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in independent_events(False)[:50]
    )
    packed = tmp_path / "events.ndjson.gz"
    packed.write_bytes(gzip.compress(text))
    binary = tmp_path / "events.bin"
    binary.write_bytes(np.random.default_rng(5).bytes(5000))
    output = tmp_path / "alerts.ndjson"
    output.write_bytes(b"kept\n")

    def replay_of(source: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*REPLAY, "-i", str(source), "-o", str(output)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = replay_of(packed)
    assert done.returncode == 2
    assert done.stderr == f"{packed} is gzip-compressed, not NDJSON text: decompress it first\n"
    assert output.read_bytes() == b"kept\n"
    done = replay_of(binary)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    lines = len([line for line in binary.read_bytes().split(b"\n") if line.strip()])
    assert done.stderr.startswith(
        f"{binary}: none of its {lines} lines is an event, is it NDJSON text? (line 1: "
    )
    assert output.read_bytes() == b"kept\n"
    fresh = tmp_path / "fresh.ndjson"
    refused = subprocess.run(
        [*REPLAY, "-i", str(binary), "-o", str(fresh)], capture_output=True, check=False
    )
    assert refused.returncode == 2
    assert not fresh.exists()  # nor is an output made for it
    mangled = tmp_path / "mangled.ndjson"
    mangled.write_bytes(b"\xff\xfe\x00garbage\n" + text)
    done = replay_of(mangled)
    assert done.returncode == 0, done.stderr
    assert f"{mangled}:1: skipped: not valid JSON" in done.stderr
    assert "1 invalid lines skipped" in done.stderr
    assert done.stdout.startswith("50 events")


def test_a_file_newest_first_replays_with_a_hint_to_give_a_longer_reorder(
    tmp_path: Path,
) -> None:
    source = tmp_path / "newest-first.ndjson"
    events = independent_events(False)[:3000][::-1]
    source.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))

    def replay_with(*reorder: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*REPLAY, "-i", str(source), "-o", str(tmp_path / "alerts.ndjson"), *reorder],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    hinted = replay_with()
    assert hinted.returncode == 0, hinted.stderr
    [line] = hinted.stderr.splitlines()
    late = int(hinted.stdout.split(" late, ")[0].rsplit("(", 1)[1])
    assert late > len(events) / 2
    assert line.startswith(f"hint: {late} of {len(events)} events were dropped as late: ")
    assert "--reorder 15m" in line
    whole = replay_with("--reorder", "1d")
    assert whole.returncode == 0 and whole.stderr == ""
    assert "(0 late, " in whole.stdout


NPS_DROP = (START + timedelta(days=1, hours=14), START + timedelta(days=1, hours=15))
WINDOW_S = 300


def feedback_sometimes_without_nps(seed: int = 5) -> list[dict[str, Any]]:
    """Feedback every 5 s on average, four in ten without nps (it is optional); nps
    falls from 6-10 to 0-2 for an hour."""
    rng = np.random.default_rng(seed)
    events: list[dict[str, Any]] = []
    end = (NPS_DROP[1] - START).total_seconds() + 3 * 3600
    t = 0.0
    while t < end:
        t += rng.exponential(5.0)
        at = START + timedelta(seconds=t)
        event = {
            "type": "feedback",
            "event_id": f"fb{len(events)}",
            "ts": at.isoformat(),
            "user_id": f"user{rng.integers(5000)}",
            "rating": int(rng.integers(3, 6)),
        }
        if rng.random() < 0.6:
            low = NPS_DROP[0] <= at < NPS_DROP[1]
            event["nps"] = int(rng.integers(0, 3) if low else rng.integers(6, 11))
        events.append(event)
    return events


def mean_nps_catalog(folder: Path) -> Path:
    path = folder / "nps.yaml"
    path.write_text(
        "metrics:\n  avg_nps:\n    family: feedback\n    kind: mean\n    alert_on: down\n"
        "    measure: {type: feedback, field: nps}\n"
    )
    return path


def test_a_mean_of_an_optional_field_is_the_mean_of_the_events_that_carry_it(
    tmp_path: Path,
) -> None:
    events = feedback_sometimes_without_nps()
    catalog = mean_nps_catalog(tmp_path)
    src, dst = tmp_path / "feedback.ndjson", tmp_path / "alerts.ndjson"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", "-i", str(src), "-o", str(dst)],
        env={**os.environ, "OPSWATCH_METRICS_FILE": str(catalog)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(events)} events" in done.stdout  # none refused, none skipped
    alerts = [orjson.loads(line) for line in dst.read_bytes().splitlines()]
    assert_the_mean_of_the_events_carrying_nps(alerts, events)


def test_in_kafka_mode_feedback_without_nps_is_taken_whole_and_not_dead_lettered(
    tmp_path: Path,
) -> None:
    """Stage one took such an event into the windows' counts, failed at its nps and
    dead-lettered it (reason ``engine``), half counted; now each is taken whole."""
    events = feedback_sometimes_without_nps()
    catalog = load_catalog(mean_nps_catalog(tmp_path))
    settings = EngineSettings()
    one, two = StageOne(0, catalog, settings, 1), StageTwo(0, catalog, settings, 1)
    three = StageThree(catalog, settings, 1)
    alerts: list[dict[str, Any]] = []
    for record in batches([orjson.dumps(e) for e in events]):
        found, refused = read_record(record)
        sent, failed = one.on_events(found, "opswatch.events.feedback")
        assert (refused, failed) == ([], [])
        for out in sent:
            for report in two.on_message(out.value):
                alerts += three.on_message(report)
    assert one.aggregator.stats.applied == len(events)
    assert_the_mean_of_the_events_carrying_nps(alerts, events)


def assert_the_mean_of_the_events_carrying_nps(
    alerts: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    # per window: the nps of the feedback that has one
    given: dict[str, list[int]] = {}
    for e in events:
        at = datetime.fromisoformat(e["ts"]).timestamp()
        start = datetime.fromtimestamp(at // WINDOW_S * WINDOW_S, UTC)
        if "nps" in e:
            given.setdefault(start.isoformat().replace("+00:00", "Z"), []).append(e["nps"])
    firing = [a for a in alerts if a["status"] == "firing"]
    assert firing, "the fall of nps is not caught"
    drop = [t.isoformat().replace("+00:00", "Z") for t in NPS_DROP]
    assert all(drop[0] <= a["window_start"] < drop[1] for a in firing)
    for alert in firing:
        scores = given[alert["window_start"]]
        assert alert["observed"] == pytest.approx(sum(scores) / len(scores))
        assert alert["n"] == len(scores)
    # the windows before the first alert, as its series shows them
    series = next(a["series"] for a in firing if a.get("series"))
    assert len(series) > 24
    for start, observed, *_ in series:
        scores = given[start]
        assert observed == pytest.approx(sum(scores) / len(scores))
