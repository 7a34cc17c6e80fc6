"""The Helm chart, rendered by Helm's own engine (no cluster, no helm binary): every
documented values file gives manifests valid against the Kubernetes schemas, locked down,
and values that would lose or fork audit records are refused with a clear message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tether.settings import ENV_ALIASES, declared_keys, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tether"
EXAMPLES = sorted((ROOT / "deploy" / "helm" / "examples").glob("*.yaml"))
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and a recent one.
K8S_VERSIONS = ("1.25.0", "1.33.0")


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="tether", namespace="ai")
    return [
        doc
        for name, text in files.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def values_files() -> Iterator[Any]:
    yield pytest.param({}, id="defaults")
    for path in EXAMPLES:
        yield pytest.param(yaml.safe_load(path.read_text()), id=path.stem)


@pytest.mark.parametrize("values", list(values_files()))
def test_every_documented_values_file_renders_valid_manifests(values: dict[str, Any]) -> None:
    docs = render(values)
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= kinds
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD: not in the Kubernetes schemas
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            endpoint = doc["spec"]["endpoints"][0]
            assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("values", list(values_files()))
def test_pods_are_locked_down_and_probed(values: dict[str, Any]) -> None:
    (workload,) = by_kind(render(values), "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # Service "tether" would add look-alike settings
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # room for a model load
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/data", "/tmp", "/etc/tether", "/run/secrets/tether"} <= set(mounts)
    assert "resources" in container and container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The server's drain ends before Kubernetes kills the pod.
    assert pod["terminationGracePeriodSeconds"] > float(env["TETHER_SERVER_SHUTDOWN_GRACE_S"])


def test_embedded_and_gateway_topologies_configure_the_engine() -> None:
    gateway_values = yaml.safe_load((ROOT / "deploy/helm/examples/gateway-vllm.yaml").read_text())

    def env(values: dict[str, Any]) -> dict[str, Any]:
        (workload,) = by_kind(render(values), "StatefulSet")
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}

    embedded = env({})
    assert "TETHER_ENGINE_KIND" not in embedded and embedded["TETHER_SERVER_HOST"] == "0.0.0.0"
    gateway = env(gateway_values)
    assert gateway["TETHER_ENGINE_KIND"] == "openai"
    assert gateway["TETHER_UPSTREAM_BASE_URLS"] == ",".join(gateway_values["gateway"]["upstreams"])
    assert gateway["TETHER_UPSTREAM_API_KEY"] == {
        "secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}
    }


def test_each_replica_gets_its_own_volume_and_the_autoscaler_targets_it() -> None:
    values = yaml.safe_load((ROOT / "deploy/helm/examples/gateway-ha.yaml").read_text())
    docs = render(values)
    (workload,) = by_kind(docs, "StatefulSet")
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    volumes = {v["name"] for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # from the claim template: one per replica, never shared
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert "replicas" not in workload["spec"]  # the autoscaler owns the count


def test_the_rendered_config_is_read_by_tether(tmp_path: Path) -> None:
    values = yaml.safe_load((ROOT / "deploy/helm/examples/gateway-ha.yaml").read_text())
    (config,) = by_kind(render(values), "ConfigMap")
    path = tmp_path / "tether.toml"
    path.write_text(config["data"]["tether.toml"])
    settings = load_settings(environ={"TETHER_CONFIG": str(path)})
    assert settings.audit.content == "redacted" and settings.usage.retention_days == 400


def test_every_setting_the_deploy_files_name_exists() -> None:
    known = {env_name(k) for k in declared_keys()} | set(ENV_ALIASES) | {"TETHER_CONFIG"}
    for path in [*CHART.rglob("*.yaml"), ROOT / "compose.yaml", ROOT / "Dockerfile"]:
        for name in set(re.findall(r"\bTETHER_[A-Z_]+\b", path.read_text())):
            if name != "TETHER_UPSTREAMS":  # compose's own variable, not a setting
                assert name in known, f"{path.name} sets {name}, which tether does not read"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 3}, "3 replicas would each keep a separate audit log"),
        (
            {"autoscaling": {"enabled": True, "maxReplicas": 4}},
            "4 replicas would each keep a separate audit log",
        ),
        (
            {
                "replicaCount": 2,
                "audit": {"webhookUrl": "https://audit.example/x"},
                "persistence": {"existingClaim": "shared"},
            },
            "same SQLite audit and usage files",
        ),
        ({"persistence": {"enabled": False}}, "lost when the pod moves"),
        (
            {
                "replicaCount": 2,
                "audit": {"webhookUrl": "https://a.example/x"},
                "persistence": {"enabled": False},
            },
            "waiting in a pod's spool",
        ),
        ({"mode": "gateway"}, "mode=gateway needs gateway.upstreams"),
        ({"gateway": {"upstreams": ["http://vllm:8000/v1"]}}, "set mode=gateway"),
    ],
)
def test_values_that_would_lose_or_fork_audit_records_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"mode": "cluster"}, "/mode"),
        ({"persistence": {"size": "lots"}}, "/persistence/size"),
        ({"gateway": {"upstreams": ["vllm:8000"]}}, "/gateway/upstreams/0"),
        ({"service": {"port": 70000}}, "/service/port"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ],
)
def test_values_of_the_wrong_type_are_refused_by_the_schema(
    values: dict[str, Any], where: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(where)):
        render(values)


def test_helm_lint_finds_no_errors() -> None:
    report = helm.lint(CHART)
    assert report["errors"] == []
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]
