"""Schemathesis against both services' OpenAPI documents, every check on (status
codes, content types, schemas, authentication, undeclared methods): no server
error and no answer that contradicts the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Stack

WRITE = "fuzz-write-token-0123456789"


# A calendar entry has rules across its fields (its end after its start, its factors
# naming metrics of the catalog) that a JSON Schema cannot state: a body the schema
# allows may be refused with 422, naming the field.
CONFIG = """
[[operations]]
include-name = "POST /v1/calendar"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "409", "422"]
"""


def schemathesis(url: str, tmp: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    (tmp / "schemathesis.toml").write_text(CONFIG)
    args = [str(Path(sys.executable).parent / "st"), "run", f"{url}/openapi.json"]
    args += ["--checks", "all", "--max-examples", "30", "--seed", "7"]
    for header in headers:
        args += ["-H", header]
    return subprocess.run(args, cwd=tmp, capture_output=True, text=True, check=False, timeout=600)


@pytest.mark.parametrize("service", ["alerting", "ingest"])
def test_the_api_holds_to_its_openapi_document(stack: Stack, service: str) -> None:
    stack.env.update(
        OPSWATCH_API_WRITE_TOKEN=WRITE,
        OPSWATCH_API_READ_TOKEN="fuzz-read-token-0123456789",
        OPSWATCH_SLACK_SIGNING_SECRET="fuzz-signing-secret-0123456789",
    )
    running = stack.start(service, "/readyz" if service == "ingest" else "/healthz")
    headers = [f"Authorization: Bearer {WRITE}"] if service == "alerting" else []
    done = schemathesis(running.url, stack.tmp, *headers)
    summary = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, summary
    assert " passed" in done.stdout and "failures" not in done.stdout.splitlines()[-1], summary
