"""opswatch over SASL_SSL with SCRAM-SHA-512, against a real broker: the pipeline end
to end, and each way of getting the security settings wrong ending the command within
30 s with one message that names the setting to fix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from services.common.events import Topics
from services.detector.faust_app import TABLES
from tests.integration.conftest import REPO, Stack, new_stack
from tests.integration.test_end_to_end import incident_is_alerted, processed
from tests.security.conftest import Secured

COMMANDS = {
    "ingest": ["run", "ingest"],
    "detector": ["run", "detector"],
    "alerting": ["run", "alerting"],
    "deadletter replay": ["deadletter", "replay", "--reason", "json"],
    "bench": ["bench", "--quick"],
}


def test_the_pipeline_runs_end_to_end_over_sasl_ssl(secured: Secured, secured_stack: Stack) -> None:
    incident_is_alerted(secured_stack)
    # every topic the services created, Faust's changelogs too, carries the setting
    admin = KafkaAdminClient(bootstrap_servers=secured.broker.bootstrap)
    try:
        ns = secured_stack.namespace
        created = [t for t in admin.list_topics() if t.startswith(ns)]
        assert len(created) >= len(Topics(ns).all()) + len(TABLES)
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in created]
        configs = admin.describe_configs(resources)["topic"]
    finally:
        admin.close()
    assert {t: configs[t].get("min.insync.replicas", {}).get("value") for t in created} == {
        t: "1" for t in created
    }


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the broker's certificate."""
    where = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=another",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        cwd=where,
        check=True,
        capture_output=True,
    )
    return where / "ca.pem"


def wrong_password(secured: Secured, tmp: Path, _: Path) -> dict[str, str]:
    (tmp / "wrong").write_text(secured.password + "x\n")
    return {"OPSWATCH_KAFKA_SASL_PASSWORD_FILE": str(tmp / "wrong")}


def untrusted_ca(_: Secured, __: Path, other_ca: Path) -> dict[str, str]:
    return {"OPSWATCH_KAFKA_SSL_CA_FILE": str(other_ca)}


def wrong_mechanism(*_: object) -> dict[str, str]:
    return {"OPSWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}


FAILURES = {
    "wrong password": (
        wrong_password,
        "refused user 'opswatch' with OPSWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512: check "
        "OPSWATCH_KAFKA_SASL_USERNAME and OPSWATCH_KAFKA_SASL_PASSWORD",
    ),
    "untrusted CA": (
        untrusted_ca,
        "is not trusted by the CA certificates in {ca} (self-signed certificate in "
        "certificate chain); set OPSWATCH_KAFKA_SSL_CA_FILE",
    ),
    "wrong mechanism": (
        wrong_mechanism,
        "does not offer OPSWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
    ),
}


def opswatch(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An opswatch command with only ``env``'s opswatch settings, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSWATCH_")},
            **env,
            "OPSWATCH_DATABASE_URL": f"sqlite:///{cwd / 'alerts.db'}",
            "PYTHONPATH": str(REPO),
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mutual_tls_carries_events_to_the_detector_with_a_client_certificate(
    secured: Secured, tmp_path: Path
) -> None:
    with new_stack(secured.mutual_tls_env(), tmp_path) as stack:
        bootstrap = stack.env["OPSWATCH_KAFKA_BOOTSTRAP"]
        done = opswatch(stack.env, tmp_path, "simulate", "--duration", "1h", "--kafka", bootstrap)
        assert done.returncode == 0, done.stderr
        found = re.search(r"(\d+) events written", done.stderr)
        assert found, done.stderr
        written = int(found[1])
        detector = stack.start("detector", health=None)
        stack.wait(lambda: processed(detector.url) >= written, 180)
    done = opswatch(stack.env, tmp_path, "deadletter", "replay", "--reason", "json", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dead letters read" in done.stdout


def test_without_its_client_certificate_mutual_tls_is_refused_by_name(
    secured: Secured, tmp_path: Path
) -> None:
    env = secured.mutual_tls_env()
    del env["OPSWATCH_KAFKA_SSL_CERT_FILE"], env["OPSWATCH_KAFKA_SSL_KEY_FILE"]
    done = opswatch(env, tmp_path, "deadletter", "replay", "--reason", "json")
    assert done.returncode == 2
    assert "wants a client certificate (OPSWATCH_KAFKA_SSL_CERT_FILE" in done.stderr, done.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("failure", FAILURES)
def test_a_wrong_setting_ends_the_command_with_one_message_naming_it(
    secured: Secured, other_ca: Path, tmp_path: Path, failure: str, command: str
) -> None:
    make_env, expected = FAILURES[failure]
    overrides = make_env(secured, tmp_path, other_ca)
    began = time.monotonic()
    done = opswatch(secured.env(**overrides), tmp_path, *COMMANDS[command])
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr
    assert took < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Kafka connection error: ")
    assert expected.format(ca=overrides.get("OPSWATCH_KAFKA_SSL_CA_FILE")) in lines[0]
    assert secured.password not in done.stderr + done.stdout
