"""The Helm chart, proven offline: helm lint --strict and helm template of every
ci scenario, kubeconform in strict mode against the Kubernetes JSON schemas that
kubernetes-validate bundles; and the checks shown to fail on broken input."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.common.config import OpswatchSettings
from services.detector.engine.calendar import load_calendar
from services.detector.engine.catalog import DEFAULT_CATALOG as DEFAULT
from services.detector.engine.catalog import load_catalog

REPO = Path(__file__).parents[2]
CHART = REPO / "deploy" / "helm" / "opswatch"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
CRDS = ("ServiceMonitor",)  # no schema offline; rendered only when the API is served


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / "check" / "tools.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def _offline(node: Any) -> None:
    """Schema references made relative, so kubeconform never reaches for the network."""
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("/api/_definitions.json"):
            node["$ref"] = ref[len("/api/") :]
        for value in node.values():
            _offline(value)
    elif isinstance(node, list):
        for value in node:
            _offline(value)


@pytest.fixture(scope="session")
def schemas(tools: dict[str, str]) -> Path:
    version = f"v{tools['kube_version']}-local-strict"
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / version
    target = REPO / ".cache" / "k8s-schemas"
    done = target / version / ".complete"
    if not done.exists():
        (target / version).mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.json"):
            doc = json.loads(path.read_text())
            _offline(doc)
            (target / version / path.name).write_text(json.dumps(doc))
        done.touch()
    return target


def helm(tools: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools["helm"], *args], capture_output=True, text=True, check=False, timeout=120
    )


def kubeconform(
    tools: dict[str, str], schemas: Path, manifests: str
) -> subprocess.CompletedProcess[str]:
    location = str(schemas) + "/{{ .NormalizedKubernetesVersion }}-local-strict/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return subprocess.run(
        [
            tools["kubeconform"],
            "-strict",
            "-summary",
            "-kubernetes-version",
            tools["kube_version"],
            "-schema-location",
            location,
            "-skip",
            ",".join(CRDS),
        ],
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def render(tools: dict[str, str], scenario: Path, *extra: str) -> str:
    done = helm(
        tools,
        "template",
        "ops",
        str(CHART),
        "-f",
        str(scenario),
        "--api-versions",
        "monitoring.coreos.com/v1",
        *extra,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_lints_renders_and_validates_strictly(
    tools: dict[str, str], schemas: Path, scenario: Path
) -> None:
    lint = helm(tools, "lint", "--strict", str(CHART), "-f", str(scenario))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifests = render(tools, scenario)
    checked = kubeconform(tools, schemas, manifests)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Invalid: 0, Errors: 0" in checked.stdout and "Valid: 0" not in checked.stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(manifests) if doc]
    assert kinds.count("Deployment") == 3 and "ConfigMap" in kinds


def test_the_full_scenario_renders_what_it_asks_for(tools: dict[str, str]) -> None:
    docs = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "full-values.yaml")) if d]
    kinds = {d["kind"] for d in docs}
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PodDisruptionBudget"} <= kinds
    dashboards = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert sorted(dashboards[0]["data"]) == ["opswatch-ops.json", "opswatch-pipeline.json"]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "OPSWATCH_WINDOW" in d["data"])
    assert config["data"]["OPSWATCH_INGEST_BODY_TIMEOUT"] == "PT10S"
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]
        assert "checksum/config" in pod["metadata"]["annotations"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["livenessProbe"] and container["readinessProbe"]
    secret_env = [
        env
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
        for env in c.get("env", [])
        if re.search(r"TOKEN|SECRET|DATABASE_URL|KEY|WEBHOOK", env["name"])
    ]
    assert secret_env, "the full scenario references secrets"
    for env in secret_env:  # a secret by reference (a Secret key, or a mounted file)
        assert "valueFrom" in env or env["name"].endswith("_FILE"), env


def test_without_postgresql_the_alert_store_is_on_a_writable_volume(
    tools: dict[str, str],
) -> None:
    docs = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "default-values.yaml")) if d]
    alerting = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("alerting")
    )
    pod = alerting["spec"]["template"]["spec"]
    [container] = pod["containers"]
    url = next(e["value"] for e in container["env"] if e["name"] == "OPSWATCH_DATABASE_URL")
    folder = url.removeprefix("sqlite:///").rsplit("/", 1)[0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[folder]], f"{url} is not on a writable volume"


def test_the_schema_is_upgraded_by_a_hook_job_and_ingest_shares_its_keys_in_postgresql(
    tools: dict[str, str],
) -> None:
    docs = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "scaled-values.yaml")) if d]
    [job] = [d for d in docs if d["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    by_reference = {"secretKeyRef": {"name": "opswatch-db", "key": "DATABASE_URL"}}
    [url] = [e for e in container["env"] if e["name"] == "OPSWATCH_DATABASE_URL"]
    assert url["valueFrom"] == by_reference
    env = {
        d["metadata"]["name"].rsplit("-", 1)[1]: {
            e["name"]: e.get("value", e.get("valueFrom"))
            for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
        }
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert env["alerting"]["OPSWATCH_DATABASE_UPGRADE"] == "false"
    assert env["ingest"]["OPSWATCH_INGEST_IDEMPOTENCY"] == "database"
    assert env["ingest"]["OPSWATCH_DATABASE_URL"] == by_reference
    assert env["ingest"]["OPSWATCH_DATABASE_UPGRADE"] == "false"
    default = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "default-values.yaml"))]
    assert not [d for d in default if d and d["kind"] == "Job"]


@pytest.mark.parametrize("setting", ["database.migrationJob", "database.sharedIdempotencyKeys"])
def test_the_database_settings_without_a_database_secret_are_refused(
    tools: dict[str, str], setting: str
) -> None:
    default = str(CHART / "ci" / "default-values.yaml")
    done = helm(tools, "template", "ops", str(CHART), "-f", default, "--set", f"{setting}=true")
    assert done.returncode != 0
    assert f"{setting} needs secrets.database.name" in done.stderr


@pytest.mark.parametrize(
    ("name", "setting"),
    [("metrics.yaml", "OPSWATCH_METRICS_FILE"), ("calendar.yaml", "OPSWATCH_CALENDAR_FILE")],
    ids=["metric-catalog", "calendar"],
)
def test_a_custom_catalog_and_calendar_reach_every_service_and_load(
    tools: dict[str, str], tmp_path: Path, name: str, setting: str
) -> None:
    docs = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "full-values.yaml")) if d]
    [mounted] = [d for d in docs if d["kind"] == "ConfigMap" and name in d["data"]]
    (tmp_path / name).write_text(mounted["data"][name])
    catalog = load_catalog(tmp_path / "metrics.yaml" if name == "metrics.yaml" else DEFAULT)
    if name == "metrics.yaml":
        assert catalog.names == ("conversion_rate",)
    else:
        assert [e.name for e in load_calendar(tmp_path / name, catalog.names).entries] == [
            "Winter sale"
        ]
    env = next(d for d in docs if d["kind"] == "ConfigMap" and setting in d["data"])
    path = Path(env["data"][setting])
    assert path.name == name
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(path.parent)])
        assert volume["configMap"]["name"] == mounted["metadata"]["name"]


def test_without_a_servicemonitor_api_none_is_rendered(tools: dict[str, str]) -> None:
    done = helm(tools, "template", "ops", str(CHART), "-f", str(CHART / "ci" / "full-values.yaml"))
    assert done.returncode == 0, done.stderr
    assert "kind: ServiceMonitor" not in done.stdout


@pytest.mark.parametrize(
    "bad",
    [
        "bogus=1",
        "ingest.bogus=1",
        "detector.replicas=many",
        # a Kafka password is only ever a reference to a Secret
        "secrets.kafkaSasl=hunter2",
        "secrets.kafkaSasl.password=hunter2",
        "kafkaPassword=hunter2",
        "extraEnv[0].name=OPSWATCH_KAFKA_SASL_PASSWORD,extraEnv[0].value=hunter2",
        "kafkaSecurityProtocol=TLS",
        # opswatch refuses a zero idle timeout at start: the pods would crash-loop
        "detection.idleTimeout=PT0S",
    ],
)
def test_unknown_or_mistyped_values_are_refused(tools: dict[str, str], bad: str) -> None:
    default = str(CHART / "ci" / "default-values.yaml")
    for command in (["lint", "--strict"], ["template", "ops"]):
        done = helm(tools, *command, str(CHART), "-f", default, "--set", bad)
        assert done.returncode != 0, f"helm {command[0]} took --set {bad}"


def test_kafka_bootstrap_is_required_with_a_clear_message(tools: dict[str, str]) -> None:
    done = helm(tools, "template", "ops", str(CHART))
    assert done.returncode != 0 and "kafkaBootstrap is required" in done.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [("containerPort", "http-port"), ("replicas", "two"), ("colour", "red")],
)
def test_kubeconform_fails_on_a_broken_manifest(
    tools: dict[str, str], schemas: Path, field: str, value: str
) -> None:
    docs = [d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "default-values.yaml")) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if field == "containerPort":
        container["ports"][0]["containerPort"] = value
    elif field == "replicas":
        deployment["spec"]["replicas"] = value
    else:
        container[field] = value
    checked = kubeconform(tools, schemas, yaml.safe_dump(deployment))
    assert checked.returncode != 0, f"a Deployment with {field}={value!r} passed"


def test_the_sasl_ssl_scenario_mounts_the_kafka_secrets_into_every_service(
    tools: dict[str, str],
) -> None:
    docs = [
        d for d in yaml.safe_load_all(render(tools, CHART / "ci" / "sasl-ssl-values.yaml")) if d
    ]
    env = next(
        d for d in docs if d["kind"] == "ConfigMap" and "OPSWATCH_KAFKA_BOOTSTRAP" in d["data"]
    )
    settings = env["data"]
    OpswatchSettings(**settings)  # what opswatch accepts
    assert settings["OPSWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["OPSWATCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert settings["OPSWATCH_KAFKA_REPLICATION_FACTOR"] == "3"
    assert settings["OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    files = {
        "OPSWATCH_KAFKA_SASL_USERNAME_FILE": ("opswatch-kafka-user", "username"),
        "OPSWATCH_KAFKA_SASL_PASSWORD_FILE": ("opswatch-kafka-user", "password"),
        "OPSWATCH_KAFKA_SSL_CA_FILE": ("kafka-cluster-ca-cert", "ca.crt"),
    }
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 3
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for setting, (secret, key) in files.items():
            path = Path(settings[setting])
            mount = mounts[str(path.parent)]
            assert mount["readOnly"] is True
            source = volumes[mount["name"]]["secret"]
            assert source["secretName"] == secret
            assert {"key": key, "path": path.name} in source["items"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            "kafkaSecurityProtocol=SASL_SSL,kafkaSaslMechanism=PLAIN",
            "secrets.kafkaSasl.name is required with kafkaSecurityProtocol=SASL_SSL",
        ),
        (
            "kafkaSecurityProtocol=SASL_SSL,secrets.kafkaSasl.name=u",
            "kafkaSaslMechanism is required with kafkaSecurityProtocol=SASL_SSL",
        ),
        (
            "secrets.kafkaCa.name=ca",
            "secrets.kafkaCa and secrets.kafkaClientCert need kafkaSecurityProtocol SSL",
        ),
    ],
)
def test_incomplete_kafka_security_is_refused_with_a_clear_message(
    tools: dict[str, str], values: str, message: str
) -> None:
    default = str(CHART / "ci" / "default-values.yaml")
    done = helm(tools, "template", "ops", str(CHART), "-f", default, "--set", values)
    assert done.returncode != 0 and message in done.stderr, done.stderr
