"""The JSON Schemas and the pydantic models agree on every example, and on the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import ValidationError

from services.common.contracts import EVENT_ADAPTER, Alert

SCHEMAS = Path(__file__).parents[2] / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*/*.json"))


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


EVENT_SCHEMAS = {
    kind: _validator(f"event.{kind}.v1.schema.json")
    for kind in ("order", "activity", "feedback", "metric")
}
ALERT_SCHEMA = _validator("alert.v1.schema.json")


def schema_accepts(doc: Any, is_alert: bool) -> bool:
    if is_alert:
        return bool(ALERT_SCHEMA.is_valid(doc))
    kind = doc.get("type") if isinstance(doc, dict) else None
    validator = EVENT_SCHEMAS.get(kind) if isinstance(kind, str) else None
    return validator is not None and bool(validator.is_valid(doc))


def model_accepts(doc: Any, is_alert: bool) -> bool:
    try:
        if is_alert:
            Alert.model_validate(doc)
        else:
            EVENT_ADAPTER.validate_python(doc)
    except ValidationError:
        return False
    return True


def test_there_are_examples_of_both_kinds() -> None:
    names = {p.parent.name for p in EXAMPLES}
    assert names == {"valid", "invalid"}
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_schema_and_model_agree(path: Path) -> None:
    doc = json.loads(path.read_text())
    is_alert = path.stem.startswith("alert")
    expected = path.parent.name == "valid"
    assert schema_accepts(doc, is_alert) is expected, "JSON Schema verdict"
    assert model_accepts(doc, is_alert) is expected, "pydantic verdict"
