"""The Kafka connection settings: what is refused before any connection, and the
arguments every client (kafka-python, aiokafka, Faust) is built with."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from services.common.config import OpswatchSettings
from services.common.connection import KafkaAccessError

SASL_SSL = {
    "OPSWATCH_KAFKA_BOOTSTRAP": "a.example:9093,b.example:9093",
    "OPSWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "OPSWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "OPSWATCH_KAFKA_SASL_USERNAME": "opswatch",
    "OPSWATCH_KAFKA_SASL_PASSWORD": "s3cret-of-the-broker",
}


def settings(**env: str) -> OpswatchSettings:
    return OpswatchSettings(**env)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {**SASL_SSL, "OPSWATCH_KAFKA_SASL_PASSWORD": ""},
            "OPSWATCH_KAFKA_SECURITY_PROTOCOL is SASL_SSL: set OPSWATCH_KAFKA_SASL_PASSWORD",
            id="SASL without a password",
        ),
        pytest.param(
            {"OPSWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            "set OPSWATCH_KAFKA_SASL_MECHANISM and OPSWATCH_KAFKA_SASL_USERNAME and "
            "OPSWATCH_KAFKA_SASL_PASSWORD",
            id="SASL with nothing",
        ),
        pytest.param(
            {"OPSWATCH_KAFKA_SASL_USERNAME": "opswatch"},
            "OPSWATCH_KAFKA_SASL_USERNAME set but OPSWATCH_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
            id="a user without SASL",
        ),
        pytest.param(
            {"OPSWATCH_KAFKA_SSL_CA_FILE": "/ca.pem"},
            "OPSWATCH_KAFKA_SSL_CA_FILE set but OPSWATCH_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
            id="a CA without TLS",
        ),
        pytest.param(
            {**SASL_SSL, "OPSWATCH_KAFKA_SSL_CERT_FILE": "/client.pem"},
            "OPSWATCH_KAFKA_SSL_CERT_FILE and OPSWATCH_KAFKA_SSL_KEY_FILE go together",
            id="a client certificate without its key",
        ),
        pytest.param(
            {"OPSWATCH_KAFKA_REPLICATION_FACTOR": "2", "OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS": "3"},
            "OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS is 3, more than the 2 replicas",
            id="more in-sync replicas than replicas",
        ),
    ],
)
def test_inconsistent_settings_are_refused_naming_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**env)


@pytest.mark.parametrize(
    ("value", "error"),
    [("TLS", "OPSWATCH_KAFKA_SECURITY_PROTOCOL"), ("SCRAM-SHA-1", "OPSWATCH_KAFKA_SASL_MECHANISM")],
)
def test_unknown_protocols_and_mechanisms_are_refused(value: str, error: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(**{**SASL_SSL, error: value})
    assert refused.value.errors()[0]["loc"] == (error,)


def test_sasl_ssl_reaches_every_client_with_the_credentials() -> None:
    kafka = settings(**SASL_SSL).kafka()
    args = kafka.client(client_id="x")
    assert args["bootstrap_servers"] == "a.example:9093,b.example:9093"
    assert args["security_protocol"] == "SASL_SSL"
    assert args["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (args["sasl_plain_username"], args["sasl_plain_password"]) == (
        "opswatch",
        "s3cret-of-the-broker",
    )
    context = args["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    faust_args = kafka.faust()
    assert faust_args["broker"] == "kafka://a.example:9093;b.example:9093"
    credentials = faust_args["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is context
    assert "s3cret" not in repr(kafka)


def test_plaintext_clients_get_no_security_arguments() -> None:
    kafka = settings(OPSWATCH_KAFKA_BOOTSTRAP="k:9092").kafka()
    assert kafka.client() == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert kafka.faust()["broker_credentials"] is None


def test_sasl_plaintext_gives_faust_sasl_without_tls() -> None:
    env = {
        **SASL_SSL,
        "OPSWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "OPSWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
    }
    kafka = settings(**env).kafka()
    assert "ssl_context" not in kafka.client()
    credentials = kafka.faust()["broker_credentials"]
    assert credentials.protocol.value == "SASL_PLAINTEXT" and credentials.mechanism.value == "PLAIN"


def test_credentials_come_from_their_files(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("from-file\n")
    (tmp_path / "password").write_text("p@ss word\n")
    env = {k: v for k, v in SASL_SSL.items() if "USERNAME" not in k and "PASSWORD" not in k}
    kafka = settings(
        **env,
        OPSWATCH_KAFKA_SASL_USERNAME_FILE=str(tmp_path / "user"),
        OPSWATCH_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "password"),
    ).kafka()
    assert (kafka.username, kafka.password) == ("from-file", "p@ss word")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"OPSWATCH_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
            "OPSWATCH_KAFKA_SSL_CA_FILE: cannot read /nonexistent/ca.pem",
            id="a CA file that is not there",
        ),
        pytest.param(
            {"OPSWATCH_KAFKA_SASL_PASSWORD": "", "OPSWATCH_KAFKA_SASL_PASSWORD_FILE": "/nope"},
            "OPSWATCH_KAFKA_SASL_PASSWORD_FILE: cannot read /nope",
            id="a password file that is not there",
        ),
        pytest.param(
            {
                "OPSWATCH_KAFKA_SSL_CERT_FILE": "/nonexistent/c.pem",
                "OPSWATCH_KAFKA_SSL_KEY_FILE": "/nonexistent/k.pem",
            },
            "OPSWATCH_KAFKA_SSL_CERT_FILE / OPSWATCH_KAFKA_SSL_KEY_FILE: cannot load",
            id="a client certificate that is not there",
        ),
    ],
)
def test_unreadable_files_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaAccessError, match=message):
        settings(**{**SASL_SSL, **env}).kafka()


def test_hostname_verification_is_turned_off_only_by_name() -> None:
    off = settings(**SASL_SSL, OPSWATCH_KAFKA_SSL_CHECK_HOSTNAME="false").kafka()
    assert off.ssl_context is not None
    assert not off.ssl_context.check_hostname
    assert off.ssl_context.verify_mode == ssl.CERT_REQUIRED  # the chain is still checked


def test_replication_settings_become_topic_settings() -> None:
    kafka = settings(
        OPSWATCH_KAFKA_BOOTSTRAP="k:9092",
        OPSWATCH_KAFKA_REPLICATION_FACTOR="3",
        OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS="2",
    ).kafka()
    assert kafka.replicas == 3
    assert kafka.topic_configs() == {"min.insync.replicas": "2"}
    unset = settings(OPSWATCH_KAFKA_BOOTSTRAP="k:9092").kafka()
    assert (unset.replicas, unset.topic_configs()) == (1, {})
