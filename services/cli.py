"""The ``opswatch`` command: run, replay, simulate."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape

from services.common import logs
from services.common.config import OpswatchSettings
from services.common.contracts import FIRST_YEAR as FIRST_EVENT_YEAR
from services.detector.engine.calendar import CalendarError, load_calendar
from services.detector.engine.catalog import CatalogError
from services.detector.engine.yamlfile import first_error

if TYPE_CHECKING:
    from services.alerting.runtime import Runtime
    from services.common.connection import KafkaConnection

app = typer.Typer(
    help="opswatch: streaming anomaly detection for orders, activity and feedback.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
# messages and progress are never wrapped: a file's path stays whole in a log
err = Console(stderr=True, soft_wrap=True)

DURATION = TypeAdapter(timedelta)
# the first bytes of compressed files, which replay reads as text only decompressed
COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
# the years simulated traffic may span: the events contract refuses times before its
# first year (a clock or a default value), and a later end than 2100 is a typo
FIRST_YEAR = datetime(FIRST_EVENT_YEAR, 1, 1, tzinfo=UTC)
END_YEAR = datetime(2100, 1, 1, tzinfo=UTC)


class NabFiles(StrEnum):
    all = "all"
    even = "even"
    odd = "odd"


class Suite(StrEnum):
    all = "all"
    classic = "classic"
    graded = "graded"


class Service(StrEnum):
    ingest = "ingest"
    detector = "detector"
    alerting = "alerting"


def _calendar_error(exc: CalendarError) -> NoReturn:
    err.print(f"[red]calendar error[/]: {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def _settings(calendar_file: bool = True) -> OpswatchSettings:
    """The settings, checked (with the catalog and, unless ``calendar_file`` is false
    because a command was given a calendar of its own, OPSWATCH_CALENDAR_FILE), or
    exit 2 with one line naming what is wrong."""
    try:
        settings = OpswatchSettings()
        settings.catalog()
        if calendar_file:
            settings.calendar()
    except ValidationError as exc:
        loc, message = first_error(exc)
        if loc:
            message = f"{loc[0]}: {message}"
        # else a check across settings: its message names them
        err.print(f"[red]configuration error[/]: {escape(message)}", highlight=False)
        raise typer.Exit(2) from None
    except CatalogError as exc:
        err.print(f"[red]metric catalog error[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except CalendarError as exc:
        _calendar_error(exc)
    logs.configure(settings.log_level)
    return settings


def _kafka(settings: OpswatchSettings, command: str) -> KafkaConnection:
    """The connection every Kafka client of ``command`` is built from, tried once: or
    exit 2 with one message naming the setting to fix (within 30 s, never a hang)."""
    from services.common.connection import KafkaAccessError, check

    if not settings.kafka_bootstrap:
        err.print(f"[red]{command}[/] needs OPSWATCH_KAFKA_BOOTSTRAP (host:port)")
        raise typer.Exit(2)
    try:
        kafka = settings.kafka()
        check(kafka)
    except KafkaAccessError as exc:
        err.print(f"[red]Kafka connection error[/]: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return kafka


def _calendar_effects(settings: OpswatchSettings) -> list[dict[str, Any]]:
    """What ended calendar entries did, from the calendar topic (none without Kafka,
    or with a warning when it cannot be read)."""
    from kafka.errors import KafkaError

    from services.common.calendars import read_effects
    from services.common.connection import KafkaAccessError

    if not settings.kafka_bootstrap:
        return []
    try:
        return read_effects(settings.kafka(), settings.topics().calendar)
    except (KafkaError, KafkaAccessError, OSError) as exc:  # the digest goes on without them
        err.print(f"[yellow]calendar effects left out[/]: {exc}", highlight=False)
        return []


def _alerting(settings: OpswatchSettings) -> Runtime:
    """The alerting parts, or exit 2 with one clear message on a bad configuration."""
    from services.alerting.routing import ConfigError
    from services.alerting.runtime import build

    try:
        with _store_errors(settings):
            return build(settings)
    except (ConfigError, ValueError) as exc:
        err.print(f"[red]alerting configuration error[/]: {exc}")
        raise typer.Exit(2) from None


@contextmanager
def _store_errors(settings: OpswatchSettings) -> Iterator[None]:
    """Exit 2 with one message when the alert store cannot be opened or prepared."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import OperationalError

    from services.alerting.schema import SchemaError

    def url() -> str:
        return escape(make_url(settings.database_url).render_as_string(hide_password=True))

    try:
        yield
    except SchemaError as exc:
        err.print(f"[red]alert store schema error[/]: {exc}")
        raise typer.Exit(2) from None
    except OperationalError as exc:
        why = " ".join(str(exc.orig).split())
        err.print(
            f"[red]the alert store at {url()} cannot be opened[/] ({escape(why)}); "
            "check OPSWATCH_DATABASE_URL",
            highlight=False,
        )
        raise typer.Exit(2) from None
    except ModuleNotFoundError as exc:  # the database's driver
        err.print(
            f"[red]the alert store at {url()} needs the Python module {exc.name}[/], which is "
            "not installed; check OPSWATCH_DATABASE_URL (sqlite or postgresql+psycopg)",
            highlight=False,
        )
        raise typer.Exit(2) from None


def _refuse(message: str) -> NoReturn:
    """Exit 2 with one line: an option given a value it cannot take."""
    err.print(f"[red]{escape(message)}[/]", highlight=False)
    raise typer.Exit(2)


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one beyond year 1 or 9999 in UTC
        pass
    _refuse(f"{option}: not a time with an offset: {text!r} (try 2026-03-02T17:00:00Z)")


def _duration(text: str, option: str, positive: bool = False) -> timedelta:
    """The duration an option gives, or exit 2 naming the option: one that is not a
    duration, is negative, or (when it must be ``positive``) zero."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            span = timedelta(seconds=float(text[:-1]) * units[text[-1]])
        else:
            span = DURATION.validate_python(text)
    except (ValueError, ValidationError, OverflowError):
        _refuse(f"{option}: not a duration: {text!r} (try 90s, 5m, 2h, 4d or PT5M)")
    if span < timedelta(0) or (positive and not span):
        _refuse(f"{option} must be {'more than' if positive else 'at least'} zero: {text!r}")
    return span


def describe(alert: Mapping[str, Any]) -> str:
    where = ",".join(f"{k}={v}" for k, v in alert["slice"].items()) or "all-up"
    return (
        f"{alert['status'].upper():8} {alert['severity']:8} {alert['metric']} [{where}] "
        f"observed {alert['observed']:.4g} expected {alert['expected']:.4g} "
        f"[{alert['expected_low']:.4g}, {alert['expected_high']:.4g}] n={alert.get('n', 0):.0f} "
        f"since {alert['started_at']} id={alert['id'][:12]}"
    )


@app.command()
def run(
    service: Annotated[Service | None, typer.Argument(help="one service, in Kafka mode")] = None,
    run_for: Annotated[
        str | None, typer.Option("--for", help="stop after this long (e.g. 90s, 10m)")
    ] = None,
) -> None:
    """The main job. Embedded (everything in one process, simulated traffic) unless
    OPSWATCH_KAFKA_BOOTSTRAP is set; then one service, or all three as child processes."""
    settings = _settings()
    if service is None and not settings.kafka_bootstrap:
        from services.detector.embedded import run_embedded

        def on_alert(alert: Mapping[str, Any]) -> None:
            if alert["status"] == "firing" and alert.get("windows", 1) > 1:
                return  # an update of an alert already shown
            style = "bold red" if alert["status"] == "firing" else "green"
            out.print(describe(alert), style=style, markup=False, highlight=False)

        try:
            run_embedded(
                settings,
                _alerting(settings),
                on_alert,
                lambda m: out.print(f"[dim]{m}[/]"),
                None if run_for is None else _duration(run_for, "--for", positive=True),
            )
        except KeyboardInterrupt:
            out.print("stopped")
        return
    if service is None:
        _run_all()
        return
    kafka = _kafka(settings, f"opswatch run {service}")
    from services.common.kafka import TopicLayoutError

    try:
        if service is Service.ingest:
            from services.ingest.__main__ import answer_book
            from services.ingest.__main__ import serve as serve_ingest

            with _store_errors(settings):
                replays = answer_book(settings)
            serve_ingest(settings, kafka, replays)
        elif service is Service.alerting:
            from services.alerting.__main__ import serve as serve_alerting

            serve_alerting(settings, _alerting(settings), kafka)
        else:
            from services.detector.__main__ import serve as serve_detector

            serve_detector(settings, kafka)
    except TopicLayoutError as exc:
        err.print(f"[red]topic layout error[/]: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _run_all() -> None:
    children = [
        subprocess.Popen([sys.executable, "-m", "services.cli", "run", s.value], env=os.environ)
        for s in Service
    ]
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


@app.command()
def digest(
    hours: Annotated[float, typer.Option(min=1, max=24 * 31, help="how far back")] = 24.0,
    until: Annotated[
        str | None, typer.Option(help="end of the period, RFC 3339 (default: now)")
    ] = None,
    post: Annotated[
        bool, typer.Option("--post", help="also post it to the digest receivers of the config")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Markdown file")] = None,
) -> None:
    """The daily digest as Markdown: incidents, time to acknowledge and resolve, the KPIs
    that moved most, label-based precision, the observed effect of calendar entries
    that ended (read from the calendar topic when Kafka is configured)."""
    from services.alerting import digest as daily
    from services.alerting.metrics import Metrics
    from services.alerting.notify import Dispatcher

    settings = _settings()
    runtime = _alerting(settings)
    now = runtime.book.clock() if until is None else _moment(until, "--until")
    found = daily.build(runtime.book.store, now, hours, _calendar_effects(settings))
    text = daily.markdown(found)
    if output:
        output.write_text(text)
    else:
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    if not post:
        return
    if runtime.config.digest is None:
        err.print(
            "[red]--post[/] needs a `digest:` section naming receivers in the alerting config"
        )
        raise typer.Exit(2)
    day = f"{now:%Y-%m-%dT%H:%M}"  # a digest asked for by hand is never absorbed as a repeat
    daily.post(runtime.book, day, runtime.config.digest.receivers, found)
    dispatcher = Dispatcher(runtime.book, runtime.senders, Metrics.create(CollectorRegistry()))
    dispatcher.send_due(kind="digest")
    left = runtime.book.store.outbox_depth()
    err.print(
        f"digest posted to {', '.join(runtime.config.digest.receivers)}"
        + (f"; {left} notification(s) still waiting to be retried by the service" if left else "")
    )


@app.command()
def review(
    incident_id: Annotated[str, typer.Argument(help="the incident's id")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Markdown file")] = None,
) -> None:
    """The post-incident review as Markdown: summary, timeline, impact against expected,
    chart link, notes, label and similar past incidents."""
    from services.alerting.review import review as write_review

    settings = _settings()
    runtime = _alerting(settings)
    base = settings.public_url or runtime.config.public_url
    chart = f"{base.rstrip('/')}/v1/incidents/{incident_id}/chart.png"
    text = write_review(runtime.book.store, incident_id, settings.timezone, chart)
    if text is None:
        err.print(f"[red]no incident with id {incident_id!r}[/] in the alert store")
        raise typer.Exit(1)
    if output:
        output.write_text(text)
    else:
        out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def replay(
    input: Annotated[Path, typer.Option("--input", "-i", help="events, NDJSON")],
    output: Annotated[Path, typer.Option("--output", "-o", help="alerts, NDJSON")],
    stats: Annotated[bool, typer.Option("--stats", help="print throughput figures")] = False,
    reorder: Annotated[
        str, typer.Option(help="how far out of event-time order the file may be")
    ] = "15m",
    calendar: Annotated[
        Path | None,
        typer.Option(help="calendar YAML (default: OPSWATCH_CALENDAR_FILE, if set)"),
    ] = None,
) -> None:
    """Run the engine over a file of events in event time and write every alert it raises."""
    from services.detector.replay import replay as run_replay

    settings = _settings(calendar_file=calendar is None)
    if calendar is not None:
        try:
            entries = load_calendar(calendar, settings.catalog().names)
        except CalendarError as exc:
            _calendar_error(exc)
    else:
        entries = settings.calendar()
    reorder_by = _duration(reorder, "--reorder")
    if not input.is_file():
        err.print(f"[red]no such file[/]: {escape(str(input))}")
        raise typer.Exit(2)
    if output.exists() and output.samefile(input):
        err.print(f"[red]--output is the input file[/]: {escape(str(output))}")
        raise typer.Exit(2)
    shown = 0
    # the first invalid lines are shown once the input has an event: input where no
    # line is one ends in a single line saying so
    held: list[str] | None = []

    def on_invalid(line: int, why: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= 20:
            message = f"[yellow]{escape(str(input))}:{line}[/]: skipped: {escape(why)}"
            if held is None:
                err.print(message, highlight=False)
            else:
                held.append(message)

    def has_events(_: object = None) -> None:
        nonlocal held
        for message in held or ():
            err.print(message, highlight=False)
        held = None

    def opened(path: Path, mode: str) -> IO[bytes]:
        try:
            return path.open(mode)
        except OSError as exc:
            doing = "read" if mode == "rb" else "write"
            why = escape(exc.strerror or str(exc))
            err.print(f"[red]cannot {doing} {escape(str(path))}[/]: {why}")
            raise typer.Exit(2) from None

    existed = output.exists()
    with opened(input, "rb") as src:  # the input first
        head = src.read(8)
        src.seek(0)
        packed = next((kind for magic, kind in COMPRESSED.items() if head.startswith(magic)), "")
        if packed:
            _refuse(f"{input} is {packed}-compressed, not NDJSON text: decompress it first")
        with opened(output, "ab") as dst:
            sink = EmptiedFirst(dst)
            result = run_replay(
                src,
                sink,
                settings.catalog(),
                settings.engine(),
                reorder_s=reorder_by.total_seconds(),
                on_invalid=on_invalid,
                progress=has_events,
                calendar=entries,
            )
            if not result.no_event:
                sink.empty()  # no alert: an empty output
    if result.no_event:
        if not existed:
            output.unlink(missing_ok=True)
        _refuse(
            f"{input}: none of its {result.lines} lines is an event, is it NDJSON text? "
            f"({result.first_invalid})"
        )
    has_events()
    if result.invalid:
        err.print(f"[yellow]{result.invalid} invalid lines skipped[/]")
    summary = (
        f"{result.events} events, {result.alerts} alert updates -> {escape(str(output))}"
        f" ({result.late} late, {result.duplicates} duplicate)"
    )
    if result.refused_names:
        summary += (
            f"; {result.refused_names} metric events refused: their names are beyond"
            " the first OPSWATCH_MAX_METRIC_NAMES"
        )
    out.print(summary, highlight=False, soft_wrap=True)
    if result.late > result.events / 2:
        err.print(
            f"[yellow]hint[/]: {result.late} of {result.events} events were dropped as late: "
            f"a file newest first, or more out of order than --reorder {escape(reorder)}, "
            "replays with a --reorder as long as its disorder (e.g. --reorder 1d)",
            highlight=False,
        )
    if stats:
        out.print(f"{result.seconds:.2f} s, {result.events_per_s:,.0f} events/s", highlight=False)
        unjudged = ", ".join(f"{n} {why}" for why, n in result.unjudged.items())
        out.print(
            f"{result.tracked_slices} slices and {result.tracked_series} metric series"
            f" tracked; slice-windows unjudged: {unjudged}; "
            f"windows unjudged: {result.incomplete} incomplete (at the input's start and end)",
            highlight=False,
            soft_wrap=True,
        )


class EmptiedFirst:
    """An output opened to append, emptied at its first write (or ``empty``): opened
    before the input is read, so that one that cannot be written is refused first, yet
    left as it was when the input turns out to hold no event."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.fresh = file, True

    def empty(self) -> None:
        if self.fresh:
            self.fresh = False
            if self.file.seekable():  # a pipe or a terminal holds nothing to empty
                self.file.seek(0)
                self.file.truncate()

    def write(self, data: bytes, /) -> int:
        self.empty()
        return self.file.write(data)


@app.command()
def simulate(
    start: Annotated[str, typer.Option(help="first event time, RFC 3339")] = "",
    duration: Annotated[str, typer.Option(help="how much traffic, e.g. 6h or 4d")] = "1d",
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    rate: Annotated[float, typer.Option(help="sessions per minute all-up at peak")] = 100.0,
    incidents: Annotated[
        Path | None, typer.Option(help="YAML file: incidents: [{family, slice, start, ...}]")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="write NDJSON here")] = None,
    ingest_url: Annotated[str | None, typer.Option(help="POST to this ingest base URL")] = None,
    kafka: Annotated[str | None, typer.Option(help="produce to this Kafka bootstrap")] = None,
    batch: Annotated[int, typer.Option(help="events per POST or produce flush")] = 500,
    metric_series: Annotated[
        bool,
        typer.Option(
            "--metric-series",
            help="metric events too: each region's inventory_units, delivery_minutes, "
            "support_queue",
        ),
    ] = False,
) -> None:
    """Realistic traffic with an optional incident schedule, to a file, ingest or Kafka.

    The ground truth (the incidents, resolved to absolute times) is written
    beside the output as <output>.truth.json, or to stdout otherwise."""
    from services.common import simulator as sim_mod

    if sum(x is not None for x in (output, ingest_url, kafka)) != 1:
        err.print("[red]give exactly one of --output, --ingest-url, --kafka[/]")
        raise typer.Exit(2)
    if not (math.isfinite(rate) and rate > 0):
        _refuse(f"--rate must be more than zero: {rate:g}")
    if batch < 1:
        _refuse(f"--batch must be at least 1: {batch}")
    if seed < 0:
        _refuse(f"--seed must be zero or more: {seed}")
    span = _duration(duration, "--duration", positive=True)
    begin = (
        _moment(start, "--start")
        if start
        else datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    )
    if begin < FIRST_YEAR:
        _refuse(
            f"--start must be in {FIRST_YEAR:%Y} or later: {start} "
            f"(ingest and replay refuse events before {FIRST_YEAR:%Y})"
        )
    if span > END_YEAR - begin:
        _refuse(
            f"--start {start or begin.isoformat()} and --duration {duration} "
            f"must end by {END_YEAR:%Y}"
        )
    try:
        schedule = sim_mod.load_incidents(incidents) if incidents else []
    except ValueError as exc:
        err.print(f"[red]bad simulation input[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    sim = sim_mod.Simulator(
        begin,
        span,
        seed=seed,
        sessions_per_minute=rate,
        incidents=schedule,
        series=metric_series,
    )
    truth = orjson.dumps(sim_mod.ground_truth(schedule), option=orjson.OPT_INDENT_2)
    from services.common.sinks import IngestError, to_file, to_ingest, to_kafka

    if output is not None:
        n = to_file(sim.events(), output)
        Path(f"{output}.truth.json").write_bytes(truth)
    elif ingest_url is not None:
        try:
            n = to_ingest(sim.events(), ingest_url, batch)
        except IngestError as exc:
            err.print(f"[red]simulate[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        sys.stdout.buffer.write(truth + b"\n")
    else:
        assert kafka is not None
        settings = _settings().model_copy(update={"kafka_bootstrap": kafka})
        n = to_kafka(sim.events(), _kafka(settings, "opswatch simulate"), settings.topics(), batch)
        sys.stdout.buffer.write(truth + b"\n")
    err.print(f"{n} events written", highlight=False)


deadletters = typer.Typer(help="The dead-letter topic: what ingest and the detector refused.")
app.add_typer(deadletters, name="deadletter")


@deadletters.command("replay")
def deadletter_replay(
    reason: Annotated[
        str,
        typer.Option(
            help="the reason header to replay: json, schema, limits, future, engine, metric_names"
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be replayed, send nothing")
    ] = False,
) -> None:
    """Re-produce the dead letters of one reason that are valid events now (after a fix
    of the contract, the catalog or the engine); each reason resumes where it left off."""
    from services.common.deadletters import replay as replay_deadletters

    settings = _settings()
    kafka = _kafka(settings, "opswatch deadletter replay")
    summary = replay_deadletters(kafka, settings.topics(), reason, dry_run)
    verb = "would replay" if dry_run else "replayed"
    targets = ", ".join(f"{n} to {t}" for t, n in sorted(summary.by_topic.items())) or "none"
    out.print(
        f"{summary.seen} dead letters read, {summary.matched} with reason {reason!r}: "
        f"{verb} {summary.replayed} ({targets}); {summary.still_bad} still invalid, kept",
        highlight=False,
    )


database = typer.Typer(help="The alert store's schema (OPSWATCH_DATABASE_URL).")
app.add_typer(database, name="db")


@database.command("upgrade")
def db_upgrade() -> None:
    """Bring the alert store's schema to this release's revision (a store from before
    migrations is recognised and stamped first); for installs that migrate as a job
    before the services start, with OPSWATCH_DATABASE_UPGRADE=false on the services."""
    from sqlalchemy import create_engine

    from services.alerting.schema import prepare

    settings = _settings()
    with _store_errors(settings):
        engine = create_engine(settings.database_url)
        outcome = prepare(engine, upgrade=True)
    engine.dispose()
    out.print(outcome.describe(), highlight=False, soft_wrap=True)


evaluate = typer.Typer(help="Evaluations that print figures: detectors against benchmarks.")
app.add_typer(evaluate, name="eval")


@evaluate.command("nab")
def eval_nab(
    data_dir: Annotated[Path, typer.Argument(help="a corpus laid out like NAB's")],
    output: Annotated[
        Path, typer.Option(help="where results/<detector>/<category>/... are written")
    ] = Path("results"),
    streaming: Annotated[
        bool,
        typer.Option(
            help="learn each file's range as its values come, no look ahead "
            "(as production runs; NAB's runner gives each file's range)"
        ),
    ] = False,
    files: Annotated[
        NabFiles,
        typer.Option(
            help="score every file, or those at even (0, 2, ...) or odd positions in name "
            "order (choose parameters on one half, check them on the other)"
        ),
    ] = NabFiles.all,
) -> None:
    """Score the univariate detector on the Numenta Anomaly Benchmark (all three profiles)."""
    from services.detector.evaluation import nab

    if not (data_dir / "data").is_dir() or not (data_dir / "labels").is_dir():
        err.print(f"[red]{data_dir}[/] has no data/ and labels/ (NAB's layout)")
        raise typer.Exit(2)
    try:
        with err.status("scoring") as status:
            results = nab.run(
                data_dir, output, progress=status.update, streaming=streaming, files=files
            )
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot score {data_dir}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    for r in results:
        out.print(
            f"{r.profile} {r.score:.2f} (raw {r.raw:.2f}, threshold {r.threshold:.4f})",
            highlight=False,
        )


@evaluate.command("scenarios")
def eval_scenarios(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON here")
    ] = None,
    rate: Annotated[float, typer.Option(help="sessions per minute all-up at peak")] = 60.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="scenarios run at once, one process each [default: CPUs]"),
    ] = None,
    suite: Annotated[
        Suite,
        typer.Option(
            help="classic: the 13 scenarios and 2 clean runs; graded: the suite graded by "
            "evidence beside a textbook CUSUM (two generators, two traffic levels); all: both"
        ),
    ] = Suite.all,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="only four graded scenarios, one generator and level (8 minutes of one core)",
        ),
    ] = False,
) -> None:
    """The fixed incident suites through the engine: detection, delay, false alerts."""
    from services.detector.evaluation import graded

    jobs = jobs or os.cpu_count() or 1
    settings = _settings()
    figures: dict[str, Any] = {}
    if suite != Suite.graded and not quick:
        figures.update(_classic(settings, rate, seed, jobs))
    if suite != Suite.classic or quick:
        out.print(graded.HEADER, highlight=False, soft_wrap=True)
        summary = graded.run_graded(
            settings.catalog(),
            settings.engine(),
            seed=seed,
            quick=quick,
            jobs=jobs,
            progress=lambda line: err.print(line, highlight=False),
            done=lambda row: out.print(graded.format_row(row), highlight=False, soft_wrap=True),
        )
        for line in graded.format_summary(summary):
            out.print(line, highlight=False, soft_wrap=True)
        figures["graded"] = summary.to_json()
    if json_out is not None:
        json_out.write_bytes(
            orjson.dumps(figures, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )


@evaluate.command("series")
def eval_series(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON here")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="three scenarios after three days of history"),
    ] = False,
) -> None:
    """Metric event series from a generator of their own, graded by evidence, beside a
    textbook z-score: detection, delay, false alerts."""
    from services.detector.evaluation import series

    out.print(series.HEADER, highlight=False)
    with err.status("clean days through the engine, then each scenario"):
        summary = series.run_series(
            _settings().engine(),
            seed=seed,
            quick=quick,
            done=lambda row: out.print(series.format_row(row), highlight=False),
        )
    for line in series.format_summary(summary):
        out.print(line, highlight=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2))


def _classic(settings: OpswatchSettings, rate: float, seed: int, jobs: int) -> dict[str, Any]:
    from services.detector.evaluation import scenarios

    def show(o: scenarios.Outcome) -> None:
        verdict = {True: "detected", False: "MISSED", None: "clean"}[o.detected]
        delay = f"{o.delay_windows:.0f} windows" if o.delay_windows is not None else "-"
        out.print(
            f"{o.scenario:34} {verdict:9} delay {delay:11} alerts {o.alerts:3} "
            f"false {o.false_alerts:3}  {o.note}",
            highlight=False,
        )

    summary = scenarios.run_suite(
        settings.catalog(), settings.engine(), rate=rate, seed=seed, progress=show, jobs=jobs
    )
    median = summary.median_delay_windows
    out.print(
        f"recall {summary.recall:.2f}  precision {summary.precision:.2f}  median delay "
        f"{'-' if median is None else f'{median:.1f}'} windows  false alerts/day/1000 slices "
        f"{summary.false_alerts_per_day_per_1000_slices:.1f} ({summary.monitored_slices} slices)",
        highlight=False,
    )
    return summary.to_json()


@app.command()
def bench(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON here")
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="100,000 events and smaller runs: about 4 minutes on 2 cores"),
    ] = False,
    events: Annotated[
        int | None,
        typer.Option(min=10_000, help="events pre-produced [default: 1,000,000; quick 100,000]"),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed of the simulated traffic")] = 7,
) -> None:
    """Throughput, latency and memory against the broker at OPSWATCH_KAFKA_BOOTSTRAP,
    each beside the machine's limit from the same run (about 10 minutes; --quick: 4)."""
    from rich.table import Table

    from services.bench.run import Bench, Size, summary
    from services.bench.services import ServiceError

    settings = _settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per metrics poll
    logging.getLogger("kafka").setLevel(logging.ERROR)  # warns of its own slow polls under load
    kafka = _kafka(settings, "opswatch bench")
    clock = time.monotonic()

    def say(what: str) -> None:
        err.print(f"[dim]{time.monotonic() - clock:6.1f} s[/] {what}", highlight=False)

    runner = Bench(settings, kafka, Size.of(quick, events), seed, say)
    try:
        figures = runner.run().to_json()
    except ServiceError as exc:
        err.print(f"[red]benchmark failed[/]: {exc}\n(the services' logs: {runner.workdir})")
        raise typer.Exit(1) from None
    table = Table("", "measured", "target")
    for row in summary(figures):
        table.add_row(*row)
    out.print(table)
    say("done")
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
