"""Deployment files that must work the first time: dashboards, chart values and
schema, the compose file and the Dockerfile, checked without a cluster or Docker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import ValidationError

from services.common.config import OpswatchSettings

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "opswatch"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
SETTINGS_ENV = {
    alias
    for field in OpswatchSettings.model_fields.values()
    for alias in getattr(field.validation_alias, "choices", ())
}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_provisionable(path: Path) -> None:
    text = path.read_text()
    board = json.loads(text)
    assert re.fullmatch(r"opswatch-[a-z]+", board["uid"]), "a fixed, readable uid"
    assert "${DS_" not in text and "__inputs" not in board, "no import-time datasource inputs"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= set(variables), f"{panel['title']}: undefined {used - set(variables)}"


def test_the_chart_ships_the_same_dashboards() -> None:
    shipped = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert shipped == [p.name for p in DASHBOARDS]
    assert (CHART / "dashboards").resolve() == (DEPLOY / "grafana").resolve()


def _keys(values: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(values, dict):
        for key, value in values.items():
            out.add(prefix + key)
            if isinstance(value, dict) and value:
                out |= _keys(value, prefix + key + ".")
    return out


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        out.add(prefix + key)
        out |= _schema_keys(sub, prefix + key + ".")
    return out


def _closed(schema: dict[str, Any], where: str = "") -> list[str]:
    """Object schemas with named properties that let unknown keys through."""
    bad = []
    if "properties" in schema and schema.get("additionalProperties") is not False:
        bad.append(where or "(root)")
    for key, sub in schema.get("properties", {}).items():
        bad += _closed(sub, f"{where}.{key}")
    return bad


def test_every_chart_value_is_documented_and_typed() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    lines = text.splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not m:
            continue
        if not (i and lines[i - 1].strip().startswith("#")):
            undocumented.append(m.group(2))
    assert not undocumented, f"values without a comment above them: {undocumented}"
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = {k for k in _keys(values) if not k.startswith("alerting.config.")}
    missing -= _schema_keys(schema)
    assert not missing, f"values the schema does not type: {sorted(missing)}"
    assert not _closed(schema), "objects that accept unknown keys"


def _durations(schema: dict[str, Any], prefix: str = "") -> dict[str, tuple[str, str]]:
    """Chart values typed as durations: their schema and the setting they set."""
    out = {}
    for key, sub in schema.get("properties", {}).items():
        refs = [part.get("$ref", "") for part in sub.get("allOf", [])]
        setting = re.search(r"\b(OPSWATCH_[A-Z_]+)\b", sub.get("description", ""))
        if any(ref.endswith("uration") for ref in refs) and setting:
            out[prefix + key] = (refs[0].rsplit("/", 1)[-1], setting.group(1))
        out |= _durations(sub, prefix + key + ".")
    return out


def test_the_chart_takes_a_zero_duration_exactly_where_opswatch_does() -> None:
    """A zero the settings refuse would pass ``helm install`` and crash-loop the pods."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    durations = _durations(schema)
    assert {"detection.idleTimeout", "detection.lateness"} <= set(durations)
    for value, (definition, setting) in durations.items():
        typed = {"definitions": schema["definitions"], "$ref": f"#/definitions/{definition}"}
        charted = Draft7Validator(typed).is_valid("PT0S")
        try:
            OpswatchSettings(**{setting: "PT0S"})  # type: ignore[arg-type]
        except ValidationError:
            taken = False
        else:
            taken = True
        assert charted == taken, f"{value}=PT0S: the chart {charted}, {setting} {taken}"


def _compose_env() -> dict[str, dict[str, str]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return {
        name: dict(svc.get("environment") or {})
        for name, svc in compose["services"].items()
        if name in ("ingest", "detector", "alerting")
    }


def test_the_compose_file_parses_and_uses_real_settings() -> None:
    envs = _compose_env()
    assert set(envs) == {"ingest", "detector", "alerting"}
    for name, env in envs.items():
        unknown = {k for k in env if k.startswith("OPSWATCH_")} - SETTINGS_ENV
        assert not unknown, f"{name}: settings that do not exist: {unknown}"
        assert env["OPSWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for mount in compose["services"]["prometheus"]["volumes"]:
        assert (DEPLOY / mount.split(":")[0]).exists(), mount


def test_the_chart_sets_only_real_settings() -> None:
    used = set()
    for path in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\bOPSWATCH_[A-Z_]+\b", path.read_text()))
    assert used, "the chart sets no settings at all"
    assert not used - SETTINGS_ENV, f"unknown settings: {sorted(used - SETTINGS_ENV)}"


def test_the_image_runs_as_a_user_and_carries_no_build_tools() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    final = stages[-1]
    assert "build-essential" not in final and "apt-get install" not in final
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert 'ENTRYPOINT ["opswatch"]' in final
