"""A broker of these tests' own with a SASL_SSL listener (SCRAM-SHA-512, a CA made
at its start) and an SSL listener that wants client certificates, and opswatch's
settings to reach them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.bench.services import free_port
from tests.chaos.conftest import Broker
from tests.integration.conftest import Stack, new_stack

USER = "opswatch"


@dataclass
class Secured:
    broker: Broker
    sasl_port: int
    ssl_port: int
    password: str
    tmp: Path

    @property
    def ca_file(self) -> Path:
        return self.broker.cache / "tls" / "ca.pem"

    def mutual_tls_env(self, **overrides: str) -> dict[str, str]:
        """What a client needs to reach the SSL listener, which wants a client certificate."""
        tls = self.broker.cache / "tls"
        return {
            "OPSWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.ssl_port}",
            "OPSWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
            "OPSWATCH_KAFKA_SSL_CA_FILE": str(self.ca_file),
            "OPSWATCH_KAFKA_SSL_CERT_FILE": str(tls / "client.pem"),
            "OPSWATCH_KAFKA_SSL_KEY_FILE": str(tls / "client.key"),
            **overrides,
        }

    def env(self, **overrides: str) -> dict[str, str]:
        """What a service needs to reach the SASL_SSL listener, the password from a file."""
        password_file = self.tmp / "kafka-password"
        password_file.write_text(self.password + "\n")
        return {
            "OPSWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.sasl_port}",
            "OPSWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "OPSWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "OPSWATCH_KAFKA_SASL_USERNAME": USER,
            "OPSWATCH_KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "OPSWATCH_KAFKA_SSL_CA_FILE": str(self.ca_file),
            **overrides,
        }


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    sasl_port, ssl_port = free_port(), free_port()
    password = secrets.token_urlsafe(18)
    broker = Broker(
        tmp_path_factory.mktemp("secured-kafka"),
        free_port(),
        free_port(),
        {
            "OPSWATCH_KAFKA_SASL_SSL_PORT": str(sasl_port),
            "OPSWATCH_KAFKA_SSL_PORT": str(ssl_port),
            "OPSWATCH_KAFKA_SCRAM_USERS": f"{USER}:{password}",
        },
    )
    broker.up()
    try:
        tmp = tmp_path_factory.mktemp("secured-client")
        yield Secured(broker, sasl_port, ssl_port, password, tmp)
    finally:
        broker.down()


@pytest.fixture
def secured_stack(secured: Secured, tmp_path: Path) -> Iterator[Stack]:
    """Services in a topic namespace of their own that know only the SASL_SSL listener,
    their topics' min.insync.replicas set."""
    replicated = {
        "OPSWATCH_KAFKA_REPLICATION_FACTOR": "1",
        "OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS": "1",
    }
    with new_stack(secured.env(**replicated), tmp_path) as s:
        yield s
