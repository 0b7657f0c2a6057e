"""Settings: the only module that reads the environment.

One frozen object, built once by the command line and passed in as an
argument; nothing below the composition roots reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from services.common import connection as kc
from services.common.connection import (
    KafkaAccessError,
    KafkaConnection,
    SaslMechanism,
    SecurityProtocol,
    tls_context,
)
from services.common.events import Topics
from services.detector.engine.calendar import Calendar, load_calendar
from services.detector.engine.catalog import Catalog, load_catalog
from services.detector.engine.evaluate import EngineSettings


def env(name: str) -> AliasChoices:
    """The environment variable of a setting, exactly as documented (no prefixing)."""
    return AliasChoices(name)


def known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (KeyError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from None
    return value


def known_database(value: str) -> str:
    """A SQLAlchemy URL of a database it knows; ``postgres://`` (the scheme of libpq,
    Heroku and others) as ``postgresql+psycopg://``, the driver opswatch installs."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL: use e.g. sqlite:///opswatch.db or "
            "postgresql+psycopg://user:pass@host/db"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        url = url.set(drivername=f"postgresql+{driver or 'psycopg'}")
        value = url.render_as_string(hide_password=False)
    try:
        url.get_dialect()
    except NoSuchModuleError:
        shown = url.render_as_string(hide_password=True)
        raise ValueError(
            f"{shown}: {url.drivername!r} is not a database SQLAlchemy knows: "
            "use sqlite or postgresql+psycopg"
        ) from None
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}  # what Python's logging takes too


def known_log_level(value: str) -> str:
    """A level of Python's logging, in any case (WARN and FATAL too); its name in upper
    case from here on."""
    level = LOG_LEVEL_ALIASES.get(value.upper(), value.upper())
    if level not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
    return level


PLACEHOLDERS = frozenset({"changeme", "change-me-please", "secret", "password", "token"})


class OpswatchSettings(BaseSettings):
    """Everything opswatch reads from the environment, in one frozen object."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    _catalog: Catalog | None = PrivateAttr(None)
    _calendar: Calendar | None = PrivateAttr(None)

    kafka_bootstrap: str | None = Field(None, validation_alias=env("OPSWATCH_KAFKA_BOOTSTRAP"))
    kafka_partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        4, validation_alias=env("OPSWATCH_KAFKA_PARTITIONS")
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", validation_alias=env(kc.PROTOCOL)
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(None, validation_alias=env(kc.MECHANISM))
    kafka_sasl_username: str | None = Field(None, validation_alias=env(kc.USERNAME))
    kafka_sasl_username_file: Path | None = Field(None, validation_alias=env(f"{kc.USERNAME}_FILE"))
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=env(kc.PASSWORD))
    kafka_sasl_password_file: Path | None = Field(None, validation_alias=env(f"{kc.PASSWORD}_FILE"))
    kafka_ssl_ca_file: Path | None = Field(None, validation_alias=env(kc.CA_FILE))
    kafka_ssl_cert_file: Path | None = Field(None, validation_alias=env(kc.CERT_FILE))
    kafka_ssl_key_file: Path | None = Field(None, validation_alias=env(kc.KEY_FILE))
    kafka_ssl_check_hostname: bool = Field(True, validation_alias=env(kc.CHECK_HOSTNAME))
    kafka_replication_factor: Annotated[int, Field(ge=1, le=32)] | None = Field(
        None, validation_alias=env("OPSWATCH_KAFKA_REPLICATION_FACTOR")
    )
    kafka_min_insync_replicas: Annotated[int, Field(ge=1, le=32)] | None = Field(
        None, validation_alias=env("OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS")
    )
    database_url: str = Field(
        "sqlite:///opswatch.db", validation_alias=env("OPSWATCH_DATABASE_URL")
    )
    database_upgrade: bool = Field(True, validation_alias=env("OPSWATCH_DATABASE_UPGRADE"))
    ingest_host: str = Field("127.0.0.1", validation_alias=env("OPSWATCH_INGEST_HOST"))
    ingest_port: int = Field(8081, validation_alias=env("OPSWATCH_INGEST_PORT"))
    ingest_max_events: Annotated[int, Field(ge=1)] = Field(
        10_000, validation_alias=env("OPSWATCH_INGEST_MAX_EVENTS")
    )
    ingest_max_bytes: Annotated[int, Field(ge=1024)] = Field(
        10_000_000, validation_alias=env("OPSWATCH_INGEST_MAX_BYTES")
    )
    ingest_max_inflight: Annotated[int, Field(ge=1)] = Field(
        16, validation_alias=env("OPSWATCH_INGEST_MAX_INFLIGHT")
    )
    ingest_body_timeout: timedelta = Field(
        timedelta(seconds=30), validation_alias=env("OPSWATCH_INGEST_BODY_TIMEOUT")
    )
    ingest_idempotency: Literal["process", "database"] = Field(
        "process", validation_alias=env("OPSWATCH_INGEST_IDEMPOTENCY")
    )
    alerting_host: str = Field("127.0.0.1", validation_alias=env("OPSWATCH_ALERTING_HOST"))
    alerting_port: int = Field(8080, validation_alias=env("OPSWATCH_ALERTING_PORT"))
    detector_app_id: str = Field(
        "opswatch-detector", validation_alias=env("OPSWATCH_DETECTOR_APP_ID")
    )
    detector_data_dir: Path = Field(
        Path(".opswatch/detector"), validation_alias=env("OPSWATCH_DETECTOR_DATA_DIR")
    )
    detector_session_timeout: timedelta = Field(
        timedelta(seconds=30), validation_alias=env("OPSWATCH_DETECTOR_SESSION_TIMEOUT")
    )
    detector_host: str = Field("127.0.0.1", validation_alias=env("OPSWATCH_DETECTOR_HOST"))
    detector_metrics_port: int = Field(9102, validation_alias=env("OPSWATCH_DETECTOR_METRICS_PORT"))
    metrics_file: Path | None = Field(None, validation_alias=env("OPSWATCH_METRICS_FILE"))
    calendar_file: Path | None = Field(None, validation_alias=env("OPSWATCH_CALENDAR_FILE"))
    window: timedelta = Field(timedelta(minutes=5), validation_alias=env("OPSWATCH_WINDOW"))
    lateness: timedelta = Field(timedelta(minutes=2), validation_alias=env("OPSWATCH_LATENESS"))
    idle_timeout: timedelta = Field(
        timedelta(seconds=30), validation_alias=env("OPSWATCH_IDLE_TIMEOUT")
    )
    alignment: timedelta = Field(timedelta(minutes=15), validation_alias=env("OPSWATCH_ALIGNMENT"))
    unheard_timeout: timedelta = Field(
        timedelta(hours=1), validation_alias=env("OPSWATCH_UNHEARD_TIMEOUT")
    )
    timezone: str = Field("UTC", validation_alias=env("OPSWATCH_TIMEZONE"))
    alpha: Annotated[float, Field(gt=0, lt=1)] = Field(1e-5, validation_alias=env("OPSWATCH_ALPHA"))
    false_alerts_per_day: Annotated[float, Field(gt=0, le=100)] = Field(
        0.5, validation_alias=env("OPSWATCH_FALSE_ALERTS_PER_DAY")
    )
    max_slices: Annotated[int, Field(ge=1)] = Field(
        20_000, validation_alias=env("OPSWATCH_MAX_SLICES")
    )
    min_slice_volume: Annotated[float, Field(ge=0)] = Field(
        30.0, validation_alias=env("OPSWATCH_MIN_SLICE_VOLUME")
    )
    max_metric_names: Annotated[int, Field(ge=1)] = Field(
        100, validation_alias=env("OPSWATCH_MAX_METRIC_NAMES")
    )
    kpi_export_slices: Annotated[int, Field(ge=0)] = Field(
        200, validation_alias=env("OPSWATCH_KPI_EXPORT_SLICES")
    )
    resolve_after: Annotated[int, Field(ge=1, le=288)] = Field(
        3, validation_alias=env("OPSWATCH_RESOLVE_AFTER")
    )
    alerting_config: Path | None = Field(None, validation_alias=env("OPSWATCH_ALERTING_CONFIG"))
    api_write_token: SecretStr | None = Field(
        None, validation_alias=env("OPSWATCH_API_WRITE_TOKEN")
    )
    api_write_token_file: Path | None = Field(
        None, validation_alias=env("OPSWATCH_API_WRITE_TOKEN_FILE")
    )
    api_read_token: SecretStr | None = Field(None, validation_alias=env("OPSWATCH_API_READ_TOKEN"))
    api_read_token_file: Path | None = Field(
        None, validation_alias=env("OPSWATCH_API_READ_TOKEN_FILE")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=env("OPSWATCH_SLACK_SIGNING_SECRET")
    )
    slack_signing_secret_file: Path | None = Field(
        None, validation_alias=env("OPSWATCH_SLACK_SIGNING_SECRET_FILE")
    )
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")] | None = Field(
        None, validation_alias=env("OPSWATCH_PUBLIC_URL")
    )
    link_expiry: timedelta = Field(timedelta(days=7), validation_alias=env("OPSWATCH_LINK_EXPIRY"))
    alert_cooldown: timedelta = Field(
        timedelta(minutes=30), validation_alias=env("OPSWATCH_ALERT_COOLDOWN")
    )
    flap_window: timedelta = Field(timedelta(hours=2), validation_alias=env("OPSWATCH_FLAP_WINDOW"))
    flap_count: Annotated[int, Field(ge=2)] = Field(3, validation_alias=env("OPSWATCH_FLAP_COUNT"))
    group_wait: timedelta = Field(
        timedelta(seconds=30), validation_alias=env("OPSWATCH_GROUP_WAIT")
    )
    group_interval: timedelta = Field(
        timedelta(minutes=5), validation_alias=env("OPSWATCH_GROUP_INTERVAL")
    )
    repeat_interval: timedelta = Field(
        timedelta(hours=4), validation_alias=env("OPSWATCH_REPEAT_INTERVAL")
    )
    incident_window: timedelta = Field(
        timedelta(minutes=30), validation_alias=env("OPSWATCH_INCIDENT_WINDOW")
    )
    log_level: str = Field("INFO", validation_alias=env("OPSWATCH_LOG_LEVEL"))
    topic_namespace: str = Field(
        "opswatch", pattern=r"^[A-Za-z0-9_-]+$", validation_alias=env("OPSWATCH_TOPIC_NAMESPACE")
    )

    _known_timezone = field_validator("timezone")(known_timezone)
    _known_log_level = field_validator("log_level")(known_log_level)
    _known_database = field_validator("database_url")(known_database)

    @field_validator("window")
    @classmethod
    def _whole_minutes(cls, value: timedelta) -> timedelta:
        seconds = value.total_seconds()
        if seconds < 60 or seconds % 60 or 86400 % seconds:
            raise ValueError("must be whole minutes that divide a day, e.g. PT5M")
        return value

    @field_validator("link_expiry")
    @classmethod
    def _link_expiry(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=90):
            raise ValueError("must be between PT1M and P90D, e.g. P7D")
        return value

    @field_validator("lateness", "alert_cooldown", "group_wait", mode="wrap")
    @classmethod
    def _not_negative(cls, value: object, handler: ValidatorFunctionWrapHandler) -> timedelta:
        duration: timedelta = handler(value)
        if duration < timedelta(0):
            raise ValueError(f"{value!s} is negative: give zero or more, e.g. PT2M")
        return duration

    @field_validator(
        "detector_session_timeout",
        "idle_timeout",
        "alignment",
        "unheard_timeout",
        "ingest_body_timeout",
        "flap_window",
        "group_interval",
        "repeat_interval",
        "incident_window",
        mode="wrap",
    )
    @classmethod
    def _positive(cls, value: object, handler: ValidatorFunctionWrapHandler) -> timedelta:
        duration: timedelta = handler(value)
        if duration <= timedelta(0):
            raise ValueError(f"{value!s} is not positive: give more than zero, e.g. PT15M")
        return duration

    @field_validator("api_write_token", "api_read_token", "slack_signing_secret")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (
            len(value.get_secret_value()) < 16 or value.get_secret_value() in PLACEHOLDERS
        ):
            raise ValueError("must be a real secret of at least 16 characters")
        return value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> OpswatchSettings:
        protocol = self.kafka_security_protocol
        given = f"{kc.PROTOCOL} is {protocol}"
        sasl = {
            kc.MECHANISM: self.kafka_sasl_mechanism,
            kc.USERNAME: self.kafka_sasl_username or self.kafka_sasl_username_file,
            kc.PASSWORD: self.kafka_sasl_password or self.kafka_sasl_password_file,
        }
        tls = {
            kc.CA_FILE: self.kafka_ssl_ca_file,
            kc.CERT_FILE: self.kafka_ssl_cert_file,
            kc.KEY_FILE: self.kafka_ssl_key_file,
        }
        if protocol.startswith("SASL_"):
            missing = [name for name, value in sasl.items() if not value]
            if missing:
                raise ValueError(
                    f"{given}: set {' and '.join(missing)} too (the user and password "
                    "also as _FILE)"
                )
        elif any(sasl.values()):
            names = ", ".join(name for name, value in sasl.items() if value)
            raise ValueError(f"{names} set but {given} (SASL_SSL or SASL_PLAINTEXT use them)")
        if protocol not in ("SSL", "SASL_SSL") and any(tls.values()):
            names = ", ".join(name for name, value in tls.items() if value)
            raise ValueError(f"{names} set but {given} (SSL or SASL_SSL use them)")
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise ValueError(f"{kc.CERT_FILE} and {kc.KEY_FILE} go together (mutual TLS)")
        factor, isr = self.kafka_replication_factor, self.kafka_min_insync_replicas
        if isr is not None and isr > (factor or 1):
            raise ValueError(
                f"OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS is {isr}, more than the {factor or 1} "
                "replicas of OPSWATCH_KAFKA_REPLICATION_FACTOR: no write could succeed"
            )
        return self

    def kafka(self) -> KafkaConnection:
        """How every client reaches Kafka: credentials read from their files and the TLS
        context made now, or KafkaAccessError naming the setting."""
        if not self.kafka_bootstrap:
            raise KafkaAccessError(f"{kc.BOOTSTRAP} is not set (host:port, comma separated)")
        password = self.kafka_sasl_password
        tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username or _read(self.kafka_sasl_username_file, kc.USERNAME),
            password=password.get_secret_value()
            if password
            else _read(self.kafka_sasl_password_file, kc.PASSWORD),
            ssl_context=tls_context(
                self.kafka_ssl_ca_file,
                self.kafka_ssl_cert_file,
                self.kafka_ssl_key_file,
                self.kafka_ssl_check_hostname,
            )
            if tls
            else None,
            ca_file=self.kafka_ssl_ca_file,
            replication_factor=self.kafka_replication_factor,
            min_insync_replicas=self.kafka_min_insync_replicas,
        )

    def secret(self, name: str) -> SecretStr | None:
        """A secret from its variable or, failing that, from the file its _FILE names."""
        value: SecretStr | None = getattr(self, name)
        path: Path | None = getattr(self, f"{name}_file")
        if value is None and path is not None:
            try:
                text = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read the {name} file {path}: {exc.strerror}") from None
            value = self._no_placeholder(SecretStr(text))
        return value

    def engine(self) -> EngineSettings:
        return EngineSettings(
            window_s=int(self.window.total_seconds()),
            lateness_s=int(self.lateness.total_seconds()),
            alpha=self.alpha,
            false_alerts_per_day=self.false_alerts_per_day,
            timezone=self.timezone,
            max_slices=self.max_slices,
            min_slice_volume=self.min_slice_volume,
            max_metric_names=self.max_metric_names,
            resolve_after=self.resolve_after,
            kpi_slices=self.kpi_export_slices,
        )

    def topics(self) -> Topics:
        return Topics(self.topic_namespace)

    def catalog(self) -> Catalog:
        """The metric catalog, read and validated once per settings object."""
        if self._catalog is None:
            path = self.metrics_file
            self._catalog = load_catalog(path) if path else load_catalog()
        return self._catalog

    def calendar(self) -> Calendar:
        """The calendar file's entries (none without one), read and validated once."""
        if self._calendar is None:
            path = self.calendar_file
            self._calendar = load_calendar(path, self.catalog().names) if path else Calendar()
        return self._calendar


def _read(path: Path | None, setting: str) -> str | None:
    """The content of a credential's _FILE, without its final newline."""
    if path is None:
        return None
    try:
        text = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise KafkaAccessError(f"{setting}_FILE: cannot read {path} ({exc.strerror})") from None
    if not text:
        raise KafkaAccessError(f"{setting}_FILE: {path} is empty")
    return text
