"""The deployment files (Dockerfile, deploy/) are checked here, since nothing else runs them.

- The Dockerfile passes hadolint (from the `dev` extras) with no finding at all; each inline
  ignore carries a comment saying why.
- compose.yaml validates against the Compose specification and every Kubernetes manifest
  against the Kubernetes API schemas (strict: a misspelt field fails).
- Every IVR_* variable they set is one the server reads (a Settings field, a model role, or a
  name the code looks up), so a renamed setting cannot leave them silently ignored.
- Grace periods outlast the drain they configure; replicas share IVR_SECRET and the dashboard
  token; selectors and references point at things that exist.
- deploy/nginx/ivr-locations.conf is run in a real nginx in front of two small stand-in
  servers: forwarded headers, websocket upgrades, webhook retries, no websocket retries.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import fields
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from ivr.serving.config import Settings
from tests.nginx import Nginx as _Nginx
from tests.nginx import nginx_binary as _nginx
from ivr.serving.drain import GOODBYE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
LOCATIONS = DEPLOY / "nginx" / "ivr-locations.conf"

# Seconds beyond drain + goodbyes for uvicorn's own shutdown and the call log's last flush.
SHUTDOWN_MARGIN = 10


# ---------------------------------------------------------------- helpers
def _known_env_names() -> set[str]:
    """IVR_* names the server reads: Settings fields, IVR_<ROLE>_MODEL, and names the code looks
    up itself (IVR_CACHE_DIR, IVR_MODEL_REGISTRY, ...), found in its source."""
    names = {f"IVR_{f.name.upper()}" for f in fields(Settings)}
    with open(ROOT / "models" / "registry.toml", "rb") as fh:
        names |= {f"IVR_{role.upper()}_MODEL" for role in tomllib.load(fh).get("roles", {})}
    source = "\n".join(p.read_text() for p in (ROOT / "ivr").rglob("*.py"))
    names |= set(re.findall(r"[\"'](IVR_[A-Z0-9_]+)[\"']", source))
    return names


def _unknown(names) -> list[str]:
    known = _known_env_names()
    return sorted(n for n in names if n.startswith("IVR_") and n not in known)


def _seconds(value) -> float:
    """A compose duration ("1m30s", "60s", 90) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"unreadable duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _k8s_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def _resources() -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in _k8s_docs() if d["kind"] not in ("Kustomization", "Component")]


def _one(kind: str, name: str) -> dict:
    """From the base manifests (a component's patch may carry the same kind and name)."""
    found = [d for p, d in _resources() if p.parent == K8S and d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _env_file_keys(path: Path) -> dict[str, str]:
    keys = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            line = line.lstrip("# ")
            if not re.match(r"^[A-Z][A-Z0-9_]*=\S", line):
                continue  # prose, not a commented-out setting
        if "=" in line:
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
    return keys


# ---------------------------------------------------------------- Dockerfile
def _hadolint() -> str:
    # The venv's first: that is the version pyproject.toml pins.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: it comes with the dev lock (make install)",
                    pytrace=False)
    return found


def test_dockerfile_passes_hadolint(tmp_path):
    # A home without hadolint config files, so only the Dockerfile's own inline ignores apply.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "style", "Dockerfile"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_inline_ignores_say_why():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"#\s*hadolint\s+ignore=", line):
            before = lines[i - 1].strip() if i else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"Dockerfile:{i + 1}: an ignore needs a comment line above it saying why")


def test_image_carries_the_model_server_dependencies():
    """The model-server profile runs `python -m llama_cpp.server` from the ivr image: the image
    installs requirements.lock, which must carry the server's extra packages (the `llm-server`
    extra) at the versions the tests use (tests/unit/test_lock.py checks the versions agree)."""
    from tests.unit.test_lock import LOCK, locked

    with open(ROOT / "pyproject.toml", "rb") as fh:
        server = tomllib.load(fh)["project"]["optional-dependencies"]["llm-server"]
    image = locked(LOCK, this_python_only=False)
    for requirement in server:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        assert name in image, f"requirements.lock (the image) lacks {name}: run make lock"
    assert "-r requirements.lock" in (ROOT / "Dockerfile").read_text()


# ---------------------------------------------------------------- compose
def test_compose_matches_the_compose_specification():
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, "\n".join(errors)


def test_compose_sets_only_real_settings():
    compose = _compose()
    names = [name for svc in compose["services"].values() for name in (svc.get("environment") or {})]
    assert "IVR_DATABASE_URL" in names
    assert not _unknown(names), f"not read by the server: {_unknown(names)}"
    assert not _unknown(_env_file_keys(DEPLOY / ".env.example")), "deploy/.env.example"


def test_compose_required_variables_are_in_the_env_example():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(_env_file_keys(DEPLOY / ".env.example"))
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "IVR_SECRET", "IVR_DASHBOARD_TOKEN", "IVR_PUBLIC_URL",
                 "POSTGRES_PASSWORD"):
        assert name in documented, name
    assert used <= documented, f"compose.yaml uses {sorted(used - documented)}, not in .env.example"


def test_compose_replicas_share_secrets_and_outlast_their_drain():
    ivr = _compose()["services"]["ivr"]
    env = ivr["environment"]
    assert ivr["deploy"]["replicas"] >= 2
    # Required (":?"): an unset secret would give every replica a random one of its own.
    assert env["IVR_SECRET"].startswith("${IVR_SECRET:?")
    assert env["IVR_DASHBOARD_TOKEN"].startswith("${IVR_DASHBOARD_TOKEN:?")
    assert env["IVR_DATABASE_URL"].startswith("postgresql://")
    drain = float(env.get("IVR_DRAIN_SECONDS", Settings.drain_seconds))
    assert _seconds(ivr["stop_grace_period"]) >= drain + GOODBYE_SECONDS + SHUTDOWN_MARGIN
    assert "/healthz" in " ".join(ivr["healthcheck"]["test"])


def test_compose_stops_the_replicas_before_nginx():
    """compose stops dependents first: the replicas must depend on nginx, not the reverse, or
    nginx goes first and the calls drop without their goodbye."""
    services = _compose()["services"]
    assert "nginx" in services["ivr"]["depends_on"]
    assert "ivr" not in (services["nginx"].get("depends_on") or {})


def test_compose_images_are_pinned_and_nginx_uses_the_shared_locations():
    services = _compose()["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" not in svc:
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{name}: pin {image!r}"
    mounts = " ".join(services["nginx"]["volumes"])
    assert "./nginx/ivr-locations.conf:" in mounts and "./nginx/nginx.conf:" in mounts
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert re.search(r"upstream\s+ivr_upstream\s*\{", conf)
    assert "include /etc/nginx/ivr-locations.conf;" in conf
    assert services["postgres"]["image"].startswith("postgres:16")


# ---------------------------------------------------------------- kubernetes
@pytest.mark.parametrize("version", ["1.29.0", "latest"])
def test_k8s_manifests_match_the_api_schemas(version):
    import kubernetes_validate

    version = kubernetes_validate.latest_version() if version == "latest" else version
    problems = []
    for path, doc in _resources():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_kustomization_lists_every_manifest():
    for kustomization in [K8S / "kustomization.yaml", *K8S.glob("*/kustomization.yaml")]:
        listed = yaml.safe_load(kustomization.read_text())
        folder = kustomization.parent
        names = set(listed.get("resources", [])) | {p["path"] for p in listed.get("patches", [])}
        for name in names:
            assert (folder / name).is_file(), f"{kustomization}: {name} is missing"
        on_disk = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= names, f"{folder}: not in its kustomization: {sorted(on_disk - names)}"
    main = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert main["namespace"] == "ivr"
    assert [g["envs"] for g in main["secretGenerator"]] == [["secrets.env"]]
    assert "model-server" in (K8S / "kustomization.yaml").read_text()  # the optional component is offered


def test_k8s_sets_only_real_settings():
    names = []
    for _, doc in _resources():
        if doc["kind"] == "ConfigMap":
            names += list(doc.get("data", {}))
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            names += [e["name"] for e in container.get("env", [])]
    names += list(_env_file_keys(K8S / "secrets.env.example"))
    assert "IVR_DRAIN_SECONDS" in names and "IVR_SLM_MODEL" in names
    assert not _unknown(names), f"not read by the server: {_unknown(names)}"


def _ivr_container() -> dict:
    [container] = _one("Deployment", "ivr")["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_replicas_share_the_secret_and_the_dashboard_token():
    env = {e["name"]: e for e in _ivr_container()["env"]}
    secret_keys = _env_file_keys(K8S / "secrets.env.example")
    for name in ("IVR_SECRET", "IVR_DASHBOARD_TOKEN", "TWILIO_AUTH_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "ivr-secrets" and not ref.get("optional"), name
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secret_keys, f"{ref['key']} is not in secrets.env.example"
    assert _one("Deployment", "ivr")["spec"]["replicas"] >= 2


def test_k8s_grace_period_outlasts_the_drain():
    deployment = _one("Deployment", "ivr")["spec"]["template"]["spec"]
    config = _one("ConfigMap", "ivr-config")["data"]
    drain = float(config.get("IVR_DRAIN_SECONDS", Settings.drain_seconds))
    pre_stop = _ivr_container().get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    needed = sleep + drain + GOODBYE_SECONDS + SHUTDOWN_MARGIN
    assert deployment["terminationGracePeriodSeconds"] >= needed


def test_k8s_probes_let_a_draining_pod_finish_its_calls():
    container = _ivr_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # /healthz is 503 while draining: a liveness probe on it would restart the pod mid-drain.
    assert container["livenessProbe"].get("httpGet", {}).get("path") != "/healthz"
    assert container["resources"]["requests"]["cpu"] == "2"


def test_k8s_selectors_and_references_point_at_something():
    pods = {}
    for _, doc in _resources():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
            ports = {p["name"] for c in doc["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            pods[doc["metadata"]["name"]] = (labels, ports)

    def matching(selector):
        return [name for name, (labels, _) in pods.items() if selector.items() <= labels.items()]

    services = {}
    for _, doc in _resources():
        if doc["kind"] == "Service":
            [target] = matching(doc["spec"]["selector"])
            services[doc["metadata"]["name"]] = {p["name"] for p in doc["spec"]["ports"]}
            for port in doc["spec"]["ports"]:
                assert port["targetPort"] in pods[target][1], f"{doc['metadata']['name']}: {port['targetPort']}"
        if doc["kind"] == "PodDisruptionBudget":
            assert matching(doc["spec"]["selector"]["matchLabels"]) == ["ivr"]
    for _, doc in _resources():
        if doc["kind"] == "Ingress":
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    assert backend["port"]["name"] in services[backend["name"]]
    config = _one("ConfigMap", "ivr-config")["data"]
    assert "@ivr-postgres:" in config["IVR_DATABASE_URL"] and "ivr-postgres" in services


def test_k8s_images_are_set_by_the_kustomization():
    main = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    rewritten = {i["name"]: i for i in main.get("images", [])}
    for _, doc in _resources():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            image = container["image"]
            if image in rewritten:
                assert rewritten[image].get("newTag") not in (None, "latest")
            else:
                assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image


@pytest.mark.parametrize("with_model_server", [False, True])
def test_kustomize_builds(tmp_path, with_model_server):
    """Only where kubectl is installed (it is not a project dependency)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    import kubernetes_validate

    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    shutil.copy(work / "secrets.env.example", work / "secrets.env")
    if with_model_server:
        text = (work / "kustomization.yaml").read_text()
        text = text.replace("# components:\n#   - model-server", "components:\n  - model-server")
        assert "\ncomponents:" in text
        (work / "kustomization.yaml").write_text(text)
    result = subprocess.run([kubectl, "kustomize", str(work)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert ("IVR_SLM_MODEL" in config["data"]) == with_model_server
    secret = next(d for d in docs if d["kind"] == "Secret")
    ivr = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "ivr")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in ivr["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert refs == {secret["metadata"]["name"]}  # the generated, hash-suffixed name


# ---------------------------------------------------------------- nginx
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _echo_app(name: str, status: int = 200):
    """A stand-in for the ivr app: answers every request (and websocket message) with what it
    received, so the test sees exactly what nginx forwarded."""

    async def app(scope, receive, send):
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen = {"server": name, "path": scope["path"], "headers": headers}
        if scope["type"] == "http":
            while (await receive()).get("more_body"):
                pass
            body = json.dumps({**seen, "method": scope["method"]}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": json.dumps({**seen, "got": message.get("text")})})
            await send({"type": "websocket.close", "code": 1000})

    return app


class _Upstream:
    """One stand-in server on 127.0.0.1, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning",
                                ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "stand-in server did not start"
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)


def _websocket(url: str, text: str = "hello") -> int | dict:
    """The HTTP status of a refused upgrade, else what the stand-in echoed."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, open_timeout=5, additional_headers={"Origin": "http://example.test"}) as ws:
            ws.send(text)
            return json.loads(ws.recv(timeout=5))
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.fixture
def upstreams():
    started: list[_Upstream] = []

    def start(app):
        started.append(_Upstream(app))
        return started[-1].port

    yield start
    for upstream in started:
        upstream.stop()


@pytest.fixture
def nginx(tmp_path):
    started: list[_Nginx] = []

    def start(ports):
        started.append(_Nginx(tmp_path / f"nginx{len(started)}", ports))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def test_compose_nginx_conf_is_valid(tmp_path):
    """deploy/nginx/nginx.conf, with what only compose's newer nginx has taken out: `resolve`
    (nginx 1.27.3) and the `ivr` host name (Docker's DNS)."""
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert " resolve " in conf and "server ivr:8080" in conf and "listen 80;" in conf
    conf = (conf.replace(" resolve ", " ").replace("server ivr:8080", "server 127.0.0.1:9")
            .replace("/etc/nginx/ivr-locations.conf", str(LOCATIONS))
            .replace("listen 80;", f"listen 127.0.0.1:{_free_port()};"))
    temp = "\n".join(f"{d}_temp_path {tmp_path}/{d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {", "http {\n" + temp, 1)
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n{conf}")
    check = subprocess.run([_nginx(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_nginx_forwards_what_the_app_needs(upstreams, nginx):
    proxy = nginx([upstreams(_echo_app("a"))])
    host = f"127.0.0.1:{proxy.port}"
    webhook = httpx.post(proxy.base + "/twilio/voice?flow=bank", data={"CallSid": "CA1"}, timeout=10)
    assert webhook.status_code == 200
    headers = webhook.json()["headers"]
    # The app rebuilds the URL Twilio signed from these: the port must survive.
    assert headers["host"] == host and headers["x-forwarded-host"] == host
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "127.0.0.1"

    media = _websocket(f"ws://{host}/twilio/media", "start")
    assert isinstance(media, dict), f"media websocket refused: {media}"
    assert media["got"] == "start" and media["headers"]["x-forwarded-host"] == host

    browser = _websocket(f"ws://{host}/dashboard/api/try/media", "start")
    assert isinstance(browser, dict), f"browser-call websocket refused: {browser}"
    assert browser["got"] == "start" and browser["headers"]["x-forwarded-host"] == host

    live = _websocket(f"ws://{host}/dashboard/api/live")
    assert isinstance(live, dict), f"live websocket refused: {live}"
    assert live["headers"]["x-forwarded-host"] == host  # the app compares it with Origin

    # The same path as plain JSON: no upgrade is asked of the app.
    snapshot = httpx.get(proxy.base + "/dashboard/api/live", timeout=10)
    assert snapshot.status_code == 200
    assert "upgrade" not in snapshot.json()["headers"].get("connection", "").lower()
    assert "upgrade" not in snapshot.json()["headers"]

    page = httpx.get(proxy.base + "/dashboard/", timeout=10)
    assert page.status_code == 200 and page.json()["path"] == "/dashboard/"
    assert httpx.get(proxy.base + "/healthz", timeout=10).json()["path"] == "/healthz"
    assert httpx.get(proxy.base + "/metrics", timeout=10).status_code == 404


def test_nginx_retries_webhooks_but_never_websockets(upstreams, nginx):
    dead = _free_port()  # nothing listens there: connection refused
    proxy = nginx([dead, upstreams(_echo_app("b"))])
    host = f"127.0.0.1:{proxy.port}"
    # Every other request meets the dead server first: webhooks move on to the live one...
    for _ in range(4):
        response = httpx.post(proxy.base + "/twilio/voice", data={"CallSid": "CA2"}, timeout=15)
        assert response.status_code == 200 and response.json()["server"] == "b"
    # ...a websocket does not: a call's stream is never replayed somewhere else.
    outcomes = [_websocket(f"ws://{host}/twilio/media") for _ in range(4)]
    assert 502 in outcomes, outcomes
    assert any(isinstance(o, dict) for o in outcomes), outcomes
    live = [_websocket(f"ws://{host}/dashboard/api/live") for _ in range(4)]
    assert 502 in live, live


def test_nginx_moves_a_webhook_off_an_instance_answering_503(upstreams, nginx):
    proxy = nginx([upstreams(_echo_app("sick", status=503)), upstreams(_echo_app("well"))])
    for _ in range(4):
        response = httpx.post(proxy.base + "/twilio/voice", data={"CallSid": "CA3"}, timeout=15)
        assert response.status_code == 200 and response.json()["server"] == "well"
    # Other requests keep nginx's default policy (no retry on a 503).
    statuses = {httpx.get(proxy.base + "/dashboard/", timeout=10).status_code for _ in range(4)}
    assert statuses == {200, 503}


def test_readme_points_to_the_deploy_guide():
    assert "deploy/README.md" in (ROOT / "README.md").read_text()
    guide = (DEPLOY / "README.md").read_text()
    for needed in ("IVR_SECRET", "IVR_DASHBOARD_TOKEN", "IVR_DRAIN_SECONDS", "kubectl apply -k", "docker compose"):
        assert needed in guide, needed

