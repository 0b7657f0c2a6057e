"""How opswatch reaches Kafka: one object that every client is built from.

ingest's producer, the detector's Faust app and its catch-up consumer, the
alert consumer, ``deadletter replay``, ``bench`` and topic administration all
take a :class:`KafkaConnection` and ask it for their client's arguments, so a
setting (TLS, SASL, replication) reaches every one of them or none.

:func:`check` opens one connection the way the clients will, before anything
else: a wrong password, an untrusted CA or a mechanism the broker does not
offer is reported at once, in one sentence naming the setting, instead of the
clients' endless retries.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiokafka.errors
from aiokafka.conn import create_conn

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

PROTOCOL = "OPSWATCH_KAFKA_SECURITY_PROTOCOL"
MECHANISM = "OPSWATCH_KAFKA_SASL_MECHANISM"
USERNAME = "OPSWATCH_KAFKA_SASL_USERNAME"
PASSWORD = "OPSWATCH_KAFKA_SASL_PASSWORD"
CA_FILE = "OPSWATCH_KAFKA_SSL_CA_FILE"
CERT_FILE = "OPSWATCH_KAFKA_SSL_CERT_FILE"
KEY_FILE = "OPSWATCH_KAFKA_SSL_KEY_FILE"
CHECK_HOSTNAME = "OPSWATCH_KAFKA_SSL_CHECK_HOSTNAME"
BOOTSTRAP = "OPSWATCH_KAFKA_BOOTSTRAP"


class KafkaAccessError(RuntimeError):
    """opswatch cannot use Kafka as configured; the message names the setting to fix."""


def tls_context(
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    check_hostname: bool,
) -> ssl.SSLContext:
    """The TLS context of every client: the CA file's certificates (the system's without
    one), the client certificate and key for mutual TLS, the host name checked unless
    turned off."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaAccessError(
            f"{CA_FILE}: cannot read {ca_file} as PEM certificates ({exc})"
        ) from None
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise KafkaAccessError(
                f"{CERT_FILE} / {KEY_FILE}: cannot load {cert_file} with the key {key_file} ({exc})"
            ) from None
    context.check_hostname = check_hostname
    return context


@dataclass(frozen=True)
class KafkaConnection:
    """Where Kafka is, how to talk to it, and how opswatch's topics are replicated."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    ca_file: Path | None = None
    # None: topics are created with one replica and existing ones are not checked
    replication_factor: int | None = None
    min_insync_replicas: int | None = None

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def replicas(self) -> int:
        return self.replication_factor or 1

    def topic_configs(self) -> dict[str, str]:
        """The configuration of every topic opswatch creates."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    def security(self) -> dict[str, Any]:
        """The security arguments, named alike by kafka-python and aiokafka."""
        args: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            args["ssl_context"] = self.ssl_context
        if self.sasl:
            args["sasl_mechanism"] = self.sasl_mechanism
            args["sasl_plain_username"] = self.username
            args["sasl_plain_password"] = self.password
        return args

    def client(self, **options: Any) -> dict[str, Any]:
        """The arguments of a kafka-python or aiokafka client: ``options`` and these."""
        return {"bootstrap_servers": self.bootstrap, **options, **self.security()}

    def faust(self) -> dict[str, Any]:
        """The broker and credentials arguments of ``faust.App``."""
        import faust

        credentials: faust.types.auth.CredentialsT | None = None
        if self.sasl:
            credentials = faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context if self.tls else None,
                mechanism=self.sasl_mechanism,
            )
        elif self.tls:
            credentials = faust.SSLCredentials(self.ssl_context)
        servers = ";".join(self.bootstrap.split(","))
        return {"broker": f"kafka://{servers}", "broker_credentials": credentials}

    def hosts(self) -> list[tuple[str, int]]:
        found = []
        for server in self.bootstrap.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon:
                host, port = port, "9092"
            found.append((host.strip("[]"), int(port)))
        return found


CONNECT_TIMEOUT_S = 10.0
# the broker closed the connection: a listener of another protocol
CLOSED = (ConnectionResetError, asyncio.IncompleteReadError, aiokafka.errors.KafkaConnectionError)
UNREACHABLE_FOR_S = 20.0


def check(kafka: KafkaConnection) -> None:
    """One connection to a bootstrap server, made as the clients make theirs (TLS
    handshake, SASL authentication): nothing, or KafkaAccessError with what to fix.
    A broker that does not answer is tried again for 20 s (it may be starting)."""
    deadline = time.monotonic() + UNREACHABLE_FOR_S
    while True:
        failures = []
        for host, port in kafka.hosts():
            try:
                asyncio.run(_connect(kafka, host, port))
                return
            except (ssl.SSLError, aiokafka.errors.KafkaError, *CLOSED) as exc:
                raise KafkaAccessError(_refusal(kafka, host, port, exc)) from None
            except (OSError, TimeoutError) as exc:
                failures.append((host, port, exc))
        if time.monotonic() > deadline:
            raise KafkaAccessError(_unreachable(kafka, failures))
        time.sleep(1.0)


async def _connect(kafka: KafkaConnection, host: str, port: int) -> None:
    conn = await asyncio.wait_for(
        create_conn(host, port, max_idle_ms=1000, **kafka.security()), CONNECT_TIMEOUT_S
    )
    conn.close()


def _refusal(kafka: KafkaConnection, host: str, port: int, exc: BaseException) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "mismatch" in reason or "hostname" in reason.lower():
            return (
                f"the certificate of {where} is not issued for {host!r} ({reason}); connect "
                f"by a name the certificate holds in {BOOTSTRAP}, or set {CHECK_HOSTNAME}=false"
            )
        trusted = f"the CA certificates in {kafka.ca_file}" if kafka.ca_file else "the system"
        return (
            f"the certificate of {where} is not trusted by {trusted} ({reason}); "
            f"set {CA_FILE} to the CA that signed the broker's certificate"
        )
    if isinstance(exc, CLOSED):
        wants = (
            f", and whether it wants a client certificate ({CERT_FILE}, {KEY_FILE})"
            if kafka.tls
            else ""
        )
        return (
            f"{where} closed the connection during the handshake: check that "
            f"{PROTOCOL}={kafka.security_protocol} is the protocol of the listener at that "
            f"port{wants}"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"the TLS handshake with {where} failed ({exc.reason or exc}); check that "
            f"{PROTOCOL}={kafka.security_protocol} is the listener's protocol, and "
            f"{CERT_FILE} / {KEY_FILE} if the broker asks for a client certificate"
        )
    if isinstance(exc, aiokafka.errors.UnsupportedSaslMechanismError):
        return (
            f"{where} does not offer {MECHANISM}={kafka.sasl_mechanism}; set it to a mechanism "
            "the listener has enabled (sasl.enabled.mechanisms)"
        )
    if isinstance(
        exc, aiokafka.errors.SaslAuthenticationFailed | aiokafka.errors.AuthenticationFailedError
    ):
        return (
            f"{where} refused user {kafka.username!r} with {MECHANISM}={kafka.sasl_mechanism}: "
            f"check {USERNAME} and {PASSWORD} (or their _FILE), and that the user has "
            f"{kafka.sasl_mechanism} credentials on the broker"
        )
    return f"{where} refused the connection ({exc!r}); check {PROTOCOL} and the SASL settings"


def _unreachable(kafka: KafkaConnection, failures: list[tuple[str, int, OSError]]) -> str:
    seen = "; ".join(
        f"{host}:{port}: {type(exc).__name__} {exc}".rstrip() for host, port, exc in failures
    )
    return (
        f"no broker of {BOOTSTRAP}={kafka.bootstrap} answered in {UNREACHABLE_FOR_S:.0f} s "
        f"({seen}); check {BOOTSTRAP}, and {PROTOCOL}={kafka.security_protocol}"
    )
