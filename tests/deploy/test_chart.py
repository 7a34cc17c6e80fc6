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

from tests.deploy.test_container import image_env
from tether.errors import ConfigError
from tether.settings import ENV_ALIASES, declared_keys, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY: dict[str, Any] = {
    "mode": "gateway",
    "gateway": {"upstreams": ["http://vllm:8000/v1"], "model": "m"},
}
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
    # A gateway's start is done once it serves: its upstreams may load for longer, and a
    # restart would not make them load faster.
    started = "/healthz" if values.get("mode") == "gateway" else "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == started
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # room for a model load
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/data", "/tmp", "/etc/tether", "/run/secrets/tether"} <= set(mounts)
    assert "resources" in container and container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert len(env) == len(container["env"])  # each name once
    # The pod serves on while its endpoint leaves the load balancers, then drains, both
    # before Kubernetes kills it.
    (sleep, seconds) = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep" and int(seconds) > 0
    drained = int(seconds) + float(env["TETHER_SERVER_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > drained


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


def test_a_data_folder_named_in_config_is_the_one_the_pod_uses(tmp_path: Path) -> None:
    """The chart's TETHER_HOME outranks the config file: it names config.data.home's folder,
    which the pod would otherwise pass over for /data."""
    docs = render({"config": {"data": {"home": "/data/tether"}}})
    (config,) = by_kind(docs, "ConfigMap")
    (workload,) = by_kind(docs, "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    path = tmp_path / "tether.toml"
    path.write_text(config["data"]["tether.toml"])
    environ = {**kubelet_environ(container, {}), "TETHER_CONFIG": str(path)}
    assert load_settings(environ=environ).data.home == Path("/data/tether")


def test_whole_numbers_in_config_are_written_as_integers(tmp_path: Path) -> None:
    """Helm reads every number in values as a float, and the ConfigMap said
    ``n_parallel = 4.0``."""
    prices = {"m": {"input": 2, "output": 10.5}}
    values = {"config": {"engine": {"n_parallel": 4, "n_ctx": 8192}, "usage": {"prices": prices}}}
    (config,) = by_kind(render(values), "ConfigMap")
    text = config["data"]["tether.toml"]
    assert "n_parallel = 4\n" in text and "n_ctx = 8192\n" in text, text
    assert "input = 2\n" in text and "output = 10.5\n" in text, text
    path = tmp_path / "tether.toml"
    path.write_text(text)
    settings = load_settings(environ={"TETHER_CONFIG": str(path)})
    assert (settings.engine.n_parallel, settings.engine.n_ctx) == (4, 8192)
    price = settings.usage.prices["m"]
    assert (price.input, price.output) == (2.0, 10.5)


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


def test_a_gateway_s_model_may_be_named_in_config_or_env() -> None:
    upstreams = {"mode": "gateway", "gateway": {"upstreams": ["http://vllm:8000/v1"]}}
    for named in (
        {"config": {"upstream": {"model": "m"}}},
        {"env": [{"name": "TETHER_UPSTREAM_MODEL", "value": "m"}]},
    ):
        (workload,) = by_kind(render({**upstreams, **named}), "StatefulSet")
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        names = [e["name"] for e in container["env"]]
        assert names.count("TETHER_UPSTREAM_MODEL") == (1 if "env" in named else 0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"mode": "gateway", "gateway": {"upstreams": ["http://vllm:8000/v1"]}},
            "mode=gateway needs gateway.model",
        ),
        (
            {"env": [{"name": "TETHER_SERVER_PORT", "value": "9000"}]},
            "env sets TETHER_SERVER_PORT, which the chart sets from (8421",
        ),
        (
            {
                "audit": {"webhookUrl": "https://a.example/x"},
                "env": [{"name": "TETHER_AUDIT_WEBHOOK_URL", "value": "https://b.example/x"}],
            },
            "which the chart sets from audit.webhookUrl",
        ),
        ({"config": {"server": {"port": 9000}}}, "config.server.port is set by the chart"),
        (
            {**GATEWAY, "config": {"engine": {"kind": "llamacpp"}}},
            "config.engine.kind is set by mode=gateway",
        ),
        (
            {**GATEWAY, "config": {"upstream": {"base_urls": ["http://a:8000/v1"]}}},
            "config.upstream.base_urls is set by gateway.upstreams",
        ),
        (
            {**GATEWAY, "config": {"upstream": {"model": "other"}}},
            "config.upstream.model is set by gateway.model",
        ),
        (
            {"extraVolumes": [{"name": "tmp", "emptyDir": {}}]},
            '"tmp" is the name of a volume the chart mounts',
        ),
        (  # tether refuses a token beside the chart's token file: every pod would exit
            {"env": [{"name": "TETHER_SERVER_TOKEN", "value": "t"}]},
            "env sets TETHER_SERVER_TOKEN, which the chart sets from adminToken",
        ),
        (
            {"env": [{"name": "TETHER_HOME", "value": "/tmp/d"}]},
            "env TETHER_HOME /tmp/d would move the audit log",
        ),
        (
            {"config": {"data": {"home": "/tmp/d"}}},
            "config.data.home /tmp/d would move the audit log",
        ),
        (
            {"tls": {"existingSecret": "t"}, "config": {"server": {"tls_cert": "/c.pem"}}},
            "config.server.tls_cert or tls_key is set by tls.existingSecret",
        ),
        (
            {
                "audit": {"webhookUrl": "https://a.example/x", "webhookSecret": "sink"},
            },
            "audit.webhookUrl and audit.webhookSecret both name the audit sink",
        ),
    ],
)
def test_values_that_would_crash_loop_or_be_overridden_are_refused(
    values: dict[str, Any], message: str
) -> None:
    """A gateway that must learn its model name exits while its upstreams load; a setting
    the chart sets too is applied twice (the kubelet keeps the last, server-side apply
    refuses the pod), and the probes would then miss a port the user moved."""
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"server": {"token": "t"}}}, "config.server.token would be kept in plain"),
        ({"config": {"upstream": {"api_key": "k"}}}, "use gateway.apiKeySecret"),
        ({"config": {"audit": {"webhook_url": "https://u:p@a/x"}}}, "use audit.webhookSecret"),
        ({"config": {"audit": {"sentry_dsn": "https://k@s/1"}}}, "config.audit.sentry_dsn"),
        (
            {"env": [{"name": "TETHER_UPSTREAM_API_KEY", "value": "k"}]},
            "env TETHER_UPSTREAM_API_KEY has a plain value",
        ),
        (
            {"audit": {"webhookUrl": "https://user:pass@sink.example/x"}},
            "audit.webhookUrl holds a credential",
        ),
        ({"audit": {"webhookUrl": "https://sink.example/x?token=t"}}, "put the URL in a Secret"),
        (
            {**GATEWAY, "gateway": {"upstreams": ["http://u:p@vllm:8000/v1"], "model": "m"}},
            "a URL holds a user name or password",
        ),
        (
            {"config": {"upstream": {"base_urls": ["http://k:s@vllm/v1"]}}},
            "a URL holds a user name or password",
        ),
        (
            {"env": [{"name": "TETHER_HOME", "value": "/data/../tmp"}]},
            "env TETHER_HOME /data/../tmp would move the audit log",
        ),
    ],
)
def test_secrets_are_refused_where_the_pods_spec_would_show_them(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"config": {"data": {"home": "/data/tether"}}},  # still on the volume
        {"env": [{"name": "TETHER_HOME", "value": "/data"}]},
        {"config": {"audit": {"sentry_dsn": None}}},  # no secret in it
        {"env": [{"name": "TETHER_AUDIT_SENTRY_DSN", "value": ""}]},
        {"audit": {"webhookUrl": "https://sink.example/hook#ops"}},  # never sent
    ],
)
def test_values_that_keep_data_on_the_volume_and_hold_no_secret_render(
    values: dict[str, Any],
) -> None:
    (workload,) = by_kind(render(values), "StatefulSet")
    assert workload["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize(
    "sink",
    [
        {"audit": {"webhookSecret": "audit-sink"}},
        {
            "env": [
                {
                    "name": "TETHER_AUDIT_WEBHOOK_URL",
                    "valueFrom": {"secretKeyRef": {"name": "mine", "key": "url"}},
                }
            ]
        },
    ],
)
def test_several_replicas_may_take_the_audit_sink_from_a_secret(sink: dict[str, Any]) -> None:
    docs = render({"replicaCount": 2, "networkPolicy": {"enabled": True}, **sink})
    (workload,) = by_kind(docs, "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    (entry,) = [e for e in container["env"] if e["name"] == "TETHER_AUDIT_WEBHOOK_URL"]
    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"]
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert {} in policy["spec"]["egress"]  # the sink's address is not known: anywhere
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(workload, version, strict=True)


SENTRY_FROM_A_SECRET = {
    "name": "TETHER_AUDIT_SENTRY_DSN",
    "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}},
}
DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
SINKS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sinks"}}}


@pytest.mark.parametrize(
    ("values", "egress"),
    [
        ({}, [DNS]),  # an embedded engine and no sink: prompts stay in the pod
        ({"env": [{"name": "TETHER_AUDIT_SENTRY_DSN", "value": ""}]}, [DNS]),  # no Sentry
        ({"env": [SENTRY_FROM_A_SECRET]}, [DNS, {}]),  # Sentry's address is not known
        (
            {"env": [SENTRY_FROM_A_SECRET], "networkPolicy": {"egressTo": [SINKS]}},
            [DNS, {"to": [SINKS]}],
        ),
    ],
    ids=["no-sink", "empty-dsn", "sentry", "sentry-egress-to"],
)
def test_the_network_policy_lets_tether_reach_sentry(
    values: dict[str, Any], egress: list[dict[str, Any]]
) -> None:
    """A Sentry DSN from a Secret, as the chart asks for one, in an embedded pod: egress to
    DNS alone would drop every report to Sentry, and nothing would say so."""
    network_policy = {"enabled": True, **values.get("networkPolicy", {})}
    (policy,) = by_kind(render({**values, "networkPolicy": network_policy}), "NetworkPolicy")
    assert policy["spec"]["egress"] == egress


def kubelet_environ(
    container: dict[str, Any], sources: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The variables tether sees, as the kubelet sets them: the image's, then each envFrom
    source's (``sources``: their keys by name), then ``env``, which outranks envFrom."""
    environ = image_env()
    for source in container.get("envFrom", []):
        ref = source.get("secretRef") or source["configMapRef"]
        environ.update({source.get("prefix", "") + k: v for k, v in sources[ref["name"]].items()})
    environ.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
    return environ


@pytest.mark.parametrize("name", ["TETHER_HOME", "TETHER_DATA_HOME"])
def test_envfrom_cannot_move_the_data_off_the_volume(name: str) -> None:
    """What envFrom brings is not known when the chart renders; a data folder in it off /data
    would put the audit log where a restart loses it. The chart's own env outranks it, and
    tether refuses two data folders rather than pick one."""
    values = {"envFrom": [{"secretRef": {"name": "tether-settings"}}]}
    (workload,) = by_kind(render(values), "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    environ = kubelet_environ(container, {"tether-settings": {name: "/tmp/tether"}})
    homes = {k: v for k, v in environ.items() if k in ("TETHER_HOME", "TETHER_DATA_HOME")}
    try:
        home = load_settings(environ=homes).data.home
    except ConfigError as refused:
        assert "set one of them" in str(refused)
    else:
        assert home == Path("/data")


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


def container_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (workload,) = by_kind(docs, "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    env: list[dict[str, Any]] = container["env"]
    return env


def threads_entries(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in container_env(render(values)) if e["name"] == "TETHER_ENGINE_N_THREADS"]


def test_the_engine_runs_as_many_threads_as_the_pod_requests_cpus() -> None:
    """Without a CPU limit the container sees every core of its node, and llama.cpp's
    spinning threads would each take one: the default follows resources.requests.cpu."""
    (entry,) = threads_entries({})
    assert entry["valueFrom"] == {
        "resourceFieldRef": {"containerName": "tether", "resource": "requests.cpu", "divisor": "1"}
    }
    (workload,) = by_kind(render({}), "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "tether" and "cpu" not in container["resources"]["limits"]
    # What the downward API hands the pod (whole CPUs, as digits) is a thread count to tether.
    assert load_settings(environ={"TETHER_ENGINE_N_THREADS": "2"}).engine.n_threads == 2
    # A CPU limit alone is the request too (Kubernetes copies it), so it counts as well.
    only_limit = {"resources": {"requests": {"cpu": None}, "limits": {"cpu": "4"}}}
    assert threads_entries(only_limit)[0]["valueFrom"]["resourceFieldRef"]["resource"] == (
        "requests.cpu"
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"engineThreads": 3}, [{"name": "TETHER_ENGINE_N_THREADS", "value": "3"}]),
        ({"engineThreads": 0}, []),  # tether counts its cores (CPU set, CPU limit)
        ({"resources": {"requests": {"cpu": None}}}, []),  # no request: the API would say 0
        ({"config": {"engine": {"n_threads": 6}}}, []),  # the config file's, not overridden
        (
            {"env": [{"name": "TETHER_ENGINE_N_THREADS", "value": "5"}]},
            [{"name": "TETHER_ENGINE_N_THREADS", "value": "5"}],  # the user's, once
        ),
        (
            {"mode": "gateway", "gateway": {"upstreams": ["http://vllm:8000/v1"], "model": "m"}},
            [],  # no engine in the pod
        ),
    ],
    ids=["fixed", "zero", "no-cpu-request", "config", "env", "gateway"],
)
def test_the_thread_count_can_be_fixed_or_left_to_tether(
    values: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    docs = render(values)
    assert threads_entries(values) == expected
    for doc in docs:
        if doc["kind"] == "StatefulSet":
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("threads", ["many", -1, 2.5])
def test_a_thread_count_that_is_not_auto_or_a_count_is_refused(threads: Any) -> None:
    with pytest.raises(helm.HelmError, match="engineThreads"):
        render({"engineThreads": threads})


def probe_schemes(docs: list[dict[str, Any]]) -> set[str]:
    (workload,) = by_kind(docs, "StatefulSet")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    return {container[p]["httpGet"].get("scheme", "HTTP") for p in probes}


TLS_FILES = {"tls_cert": "/etc/tls/tls.crt", "tls_key": "/etc/tls/tls.key"}


@pytest.mark.parametrize(
    "values",
    [
        {"tls": {"existingSecret": "tether-tls"}},
        {"config": {"server": TLS_FILES}},
        {
            "env": [
                {"name": "TETHER_SERVER_TLS_CERT", "value": TLS_FILES["tls_cert"]},
                {"name": "TETHER_SERVER_TLS_KEY", "value": TLS_FILES["tls_key"]},
            ]
        },
    ],
    ids=["secret", "config", "env"],
)
def test_probes_and_the_service_monitor_speak_https_when_tether_does(
    values: dict[str, Any],
) -> None:
    """tether with a certificate answers only HTTPS: an HTTP probe would fail every time and
    Kubernetes would restart a healthy pod forever."""
    assert probe_schemes(render({})) == {"HTTP"}
    docs = render({**values, "serviceMonitor": {"enabled": True}})
    assert probe_schemes(docs) == {"HTTPS"}
    (monitor,) = by_kind(docs, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"serverName": "tether.ai.svc"}  # the Service's name
    # A mesh that reads the protocol from the Service's port must not take it for HTTP.
    ports = [p for s in by_kind(docs, "Service") for p in s["spec"]["ports"]]
    assert [p["appProtocol"] for p in ports] == ["https", "https"]
    assert {
        p["appProtocol"] for s in by_kind(render({}), "Service") for p in s["spec"]["ports"]
    } == {"http"}
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_a_tls_secret_is_mounted_where_the_server_reads_it(tmp_path: Path) -> None:
    values = {
        "tls": {"existingSecret": "tether-tls"},
        "serviceMonitor": {
            "enabled": True,
            "tlsConfig": {"ca": {"secret": {"name": "tether-tls", "key": "ca.crt"}}},
        },
    }
    docs = render(values)
    (workload,) = by_kind(docs, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "tether-tls"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The keys a kubernetes.io/tls Secret (cert-manager's) holds, under the mount.
    assert env["TETHER_SERVER_TLS_CERT"] == f"{mount['mountPath']}/tls.crt"
    assert env["TETHER_SERVER_TLS_KEY"] == f"{mount['mountPath']}/tls.key"
    settings = load_settings(
        environ={k: v for k, v in env.items() if k.startswith("TETHER_SERVER_")}
    )
    assert str(settings.server.tls_cert) == env["TETHER_SERVER_TLS_CERT"]
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["tlsConfig"] == {
        "ca": {"secret": {"name": "tether-tls", "key": "ca.crt"}},
        "serverName": "tether.ai.svc",
    }


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator in ("Exists", "DoesNotExist"):
            ok = (key in labels) == (operator == "Exists")
        else:
            ok = (labels.get(key) in expression["values"]) == (operator == "In")
        if not ok:
            return False
    return True


def admits(policy: dict[str, Any], namespace: str, pod: dict[str, str], port: str) -> bool:
    """Whether ``policy`` (in namespace "ai") lets a pod with labels ``pod`` in
    ``namespace`` connect to ``port`` of the pods it selects, as Kubernetes reads it."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in policy["spec"].get("ingress", []):
        if "ports" in rule and not any(p["port"] == port for p in rule["ports"]):
            continue
        if "from" not in rule:
            return True
        for peer in rule["from"]:
            if "ipBlock" in peer:
                continue
            if "namespaceSelector" in peer:
                namespace_ok = _selects(peer["namespaceSelector"], namespace_labels)
            else:
                namespace_ok = namespace == "ai"  # a podSelector alone: the policy's namespace
            if namespace_ok and _selects(peer.get("podSelector", {}), pod):
                return True
    return False


PROMETHEUS = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "k8s"}


@pytest.mark.parametrize(
    ("values", "allowed", "refused"),
    [
        (
            {"networkPolicy": {"enabled": True}, "serviceMonitor": {"enabled": True}},
            [("monitoring", PROMETHEUS), ("ai", {"app": "ide-proxy"})],
            [("monitoring", {"app": "grafana"}), ("default", PROMETHEUS)],
        ),
        (
            yaml.safe_load((ROOT / "deploy/helm/examples/gateway-ha.yaml").read_text()),
            [("monitoring", PROMETHEUS)],
            [("ai", {"app": "ide-proxy"}), ("monitoring", {"app": "grafana"})],
        ),
        (
            {
                "networkPolicy": {
                    "enabled": True,
                    "metricsFrom": [
                        {"namespaceSelector": {"matchLabels": {"team": "observability"}}}
                    ],
                },
                "serviceMonitor": {"enabled": True},
            },
            [],
            [("monitoring", PROMETHEUS)],
        ),
        (
            {"networkPolicy": {"enabled": True, "from": [{"podSelector": {}}]}},
            [],
            [("monitoring", PROMETHEUS)],  # no ServiceMonitor: no Prometheus let in
        ),
    ],
    ids=["defaults", "gateway-ha", "own-peers", "no-servicemonitor"],
)
def test_the_service_monitors_prometheus_may_scrape_through_the_network_policy(
    values: dict[str, Any],
    allowed: list[tuple[str, dict[str, str]]],
    refused: list[tuple[str, dict[str, str]]],
) -> None:
    (policy,) = by_kind(render(values), "NetworkPolicy")
    (service,) = [s for s in by_kind(render(values), "Service") if "clusterIP" not in s["spec"]]
    (monitor_port,) = [p["name"] for p in service["spec"]["ports"]]  # what the monitor names
    for namespace, pod in allowed:
        assert admits(policy, namespace, pod, monitor_port), (namespace, pod)
    for namespace, pod in refused:
        assert not admits(policy, namespace, pod, monitor_port), (namespace, pod)


def test_metrics_peers_of_the_wrong_shape_are_refused_by_the_schema() -> None:
    with pytest.raises(helm.HelmError, match="metricsFrom"):
        render({"networkPolicy": {"metricsFrom": [{"namespace": "monitoring"}]}})


def test_the_service_monitor_scrapes_each_pod_once() -> None:
    """The Prometheus Operator makes a target per pod for each Service it selects: the
    headless one, which shares the port name, would double every counter."""
    docs = render(yaml.safe_load((ROOT / "deploy/helm/examples/gateway-ha.yaml").read_text()))
    (monitor,) = by_kind(docs, "ServiceMonitor")
    services = by_kind(docs, "Service")
    assert len(services) == 2
    scraped = [
        s for s in services if _selects(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in scraped] == ["tether"]


def test_a_platform_s_own_additions_reach_the_manifests() -> None:
    """What a cluster asks of a pod beyond the chart's own: a CA bundle or a signing key
    mounted from a Secret, settings from one, cloud identities, spreading, GPUs."""
    values: dict[str, Any] = {
        "extraVolumes": [{"name": "ca", "secret": {"secretName": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "envFrom": [{"secretRef": {"name": "tether-settings"}}],
        "service": {"annotations": {"networking.gke.io/load-balancer-type": "Internal"}},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/t"}},
        "priorityClassName": "high",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tether"}},
            }
        ],
        "resources": {"limits": {"memory": "2Gi", "ephemeral-storage": "1Gi"}},
    }
    docs = render(values)
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    (workload,) = by_kind(docs, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "ca", "secret": {"secretName": "corp-ca"}} in pod["volumes"]
    assert values["extraVolumeMounts"][0] in container["volumeMounts"]
    assert container["envFrom"] == values["envFrom"]
    assert pod["priorityClassName"] == "high"
    assert pod["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    assert container["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    service = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "tether")
    assert service["metadata"]["annotations"] == values["service"]["annotations"]
    with pytest.raises(helm.HelmError, match=re.escape("resources/limits/nvidia.com~1gpu")):
        render({"resources": {"limits": {"nvidia.com/gpu": "one"}}})
