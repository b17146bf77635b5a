"""The production stack checked against the code, without Docker (none runs here): ``compose.yaml``, the
``Dockerfile``, the NATS configurations, Prometheus' scrape targets and alert rules and the Grafana dashboard.

Every service's command must be a real entry point, every ANTQ_* variable a setting the code reads (and a value
it accepts), every metrics port a Prometheus target and every target a service's port, every ``depends_on`` a
service, every stream at 3 replicas, every NATS connection over TLS under the service's own identity and
PostgreSQL role, every credentials file one ``antq auth generate`` writes, every NATS configuration one
nats-server accepts (``nats-server -t``) with those files, and every metric an alert or a panel reads one the
code exports. A deliberately broken copy of each fails (``test_a_broken_copy_is_caught``).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from events.localities import Localities
from infra import settings as settings_module
from infra.auth.permissions import SERVICE_ROLES
from infra.auth.pg_roles import PG_OWNER, PG_SERVICE_ROLE
from infra.embedded import _nats_binary
from infra.settings import ENV_NAMES, Settings, SettingsError
from services.cli.main import app
from services.gateway.offices import OfficeRegistry

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_MOUNTS = ("/run/antq/credentials", "/etc/nats/credentials")
"""Where the services (and PostgreSQL) and the NATS nodes see the directory of ``antq auth generate``."""
NATS_NODES = ("nats-1", "nats-2", "nats-3")
SERVICES = {*NATS_NODES, "postgres", "gateway-1", "gateway-2", "projection", "query", "sealer", "web"}
SERVICES |= {"prometheus", "grafana"}
ONE_SHOTS = {"migrate", "pg-roles"}
IMAGE = "antq-ledger:latest"

MODULE_IDENTITY = {
    "services.gateway": "gateway",
    "projections": "projector",
    "services.query": "query",
    "services.sealer": "sealer",
    "services.web": "web",
}
"""The identity each service module runs as (``Settings.as_identity``) and so its seed and PostgreSQL role."""
MODULE_METRICS = {
    "services.gateway": "metrics_port",
    "projections": "metrics_port",
    "services.query": "query_metrics_port",
    "services.sealer": "sealer_metrics_port",
    "services.web": "web_metrics_port",
}
"""The Settings field each module serves /metrics on (the dashboard: its process's metrics only)."""
TELEMETRY = (
    "services.gateway.telemetry",
    "projections.telemetry",
    "services.query.telemetry",
    "services.sealer.telemetry",
)
PROCESS_METRICS = {  # prometheus_client's ProcessCollector, which every service registers
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
}
PROMETHEUS_METRICS = {"up"}  # what Prometheus itself records per target
REQUIRED_ALERTS = {"ProjectionHalted", "ProjectionLagHigh", "RejectionsSurging", "SealsFallingBehind"}
DASHBOARD_TOPICS = ("intake", "lag", "halt", "seal")


# --- what the code defines -------------------------------------------------------------------------------------


def env_names_read() -> set[str]:
    """ANTQ_* variables the code reads: ``infra.settings.ENV_NAMES`` (all ``Settings.from_env`` may read) and
    those read directly elsewhere (``os.environ.get("ANTQ_…")``, ``…_ENV = "ANTQ_…"`` constants)."""
    names = set(ENV_NAMES)
    read = re.compile(r'(?:environ(?:\.get)?\(|environ\[|getenv\(|_ENV\s*=\s*)\s*"(ANTQ_[A-Z0-9_]+)"')
    for package in ("events", "infra", "projections", "services"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(read.findall(path.read_text(encoding="utf-8")))
    return names


def code_metrics() -> set[str]:
    """Every metric name the services export: the ``antq_*`` names their telemetry modules define (a counter
    also as ``…_total``), the process metrics, and Prometheus' own ``up``."""
    names = set(PROCESS_METRICS | PROMETHEUS_METRICS)
    for module_name in TELEMETRY:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, str) and re.fullmatch(r"antq_[a-z0-9_]+", value):
                names |= {value, f"{value}_total"}
    return names


_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords, labels or label values)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


# --- the deployment ---------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    compose: dict[str, Any]
    dockerfile: str
    prometheus: dict[str, Any]
    alerts: dict[str, Any]
    dashboard: dict[str, Any]
    nats_confs: dict[str, str] = field(default_factory=dict)  # repository path → text

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = self.compose["services"]
        return services


def load(root: Path = ROOT) -> Deployment:
    deploy = root / "deploy"
    return Deployment(
        compose=yaml.safe_load((root / "compose.yaml").read_text(encoding="utf-8")),
        dockerfile=(root / "Dockerfile").read_text(encoding="utf-8"),
        prometheus=yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text(encoding="utf-8")),
        alerts=yaml.safe_load((deploy / "prometheus/alerts.yml").read_text(encoding="utf-8")),
        dashboard=json.loads((deploy / "grafana/dashboards/antq.json").read_text(encoding="utf-8")),
        nats_confs={
            str(p.relative_to(root)): p.read_text(encoding="utf-8")
            for p in sorted(deploy.glob("nats/*.conf"))
        },
    )


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE items
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _module(service: dict[str, Any]) -> str | None:
    command = service.get("command") or []
    if len(command) >= 3 and command[:2] == ["python", "-m"]:
        return str(command[2])
    return None


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host path of the bind mounts (named volumes left out)."""
    out = {}
    for volume in service.get("volumes") or []:
        match = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::(?:ro|rw))?", str(volume))
        assert match is not None, f"a volume compose would not read: {volume}"
        source, target = match.groups()
        if source.startswith((".", "/", "${")):
            out[target] = source
    return out


def _credential_paths(text: str) -> set[str]:
    """Files under a credentials mount named in ``text``, relative to the generated directory."""
    found = set()
    for mount in CREDENTIALS_MOUNTS:
        for match in re.finditer(re.escape(mount) + r"/([A-Za-z0-9_./-]+)", text):
            found.add(match.group(1).rstrip("."))
    return found


def _entry_point_problems(name: str, command: list[str]) -> list[str]:
    if command[:2] == ["python", "-m"]:
        module = command[2]
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            return [f"{name}: no module {module}"]
        if (
            spec.submodule_search_locations is not None
            and importlib.util.find_spec(f"{module}.__main__") is None
        ):
            return [f"{name}: package {module} has no __main__"]
        return []
    if command[:1] == ["antq"]:
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        if "antq" not in scripts:
            return [f"{name}: no antq console script in pyproject.toml"]
        result = CliRunner().invoke(app, [*command[1:], "--help"])
        return [] if result.exit_code == 0 else [f"{name}: `{' '.join(command)}` is not an antq command"]
    return [f"{name}: command {command!r} is neither `python -m <module>` nor `antq …`"]


def compose_problems(dep: Deployment, generated: Path) -> list[str]:
    """Everything in the deployment that does not match the code or the generated credentials."""
    problems: list[str] = []
    services = dep.services
    missing = SERVICES - set(services)
    if missing:
        problems.append(f"services missing: {sorted(missing)}")
    known_env = env_names_read()
    nats_urls: set[str] = set()
    targets_expected: set[str] = set()
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{name}: depends_on {dependency!r}, no such service")
        one_shot = name in ONE_SHOTS
        if one_shot and service.get("restart") != "no":
            problems.append(f"{name}: a one-shot runs once (restart: 'no')")
        if not one_shot:
            if service.get("restart") != "unless-stopped":
                problems.append(f"{name}: restart is {service.get('restart')!r}, not unless-stopped")
            if not service.get("healthcheck", {}).get("test"):
                problems.append(f"{name}: no healthcheck")
        env = _env(service)
        for text in [*env.values(), json.dumps(service.get("command") or [])]:
            for path in _credential_paths(text):
                if not (generated / path).is_file():
                    problems.append(f"{name}: {path} is not a file `antq auth generate` writes")
        for target, source in _mounts(service).items():
            if target in CREDENTIALS_MOUNTS:
                if source.rstrip("/") != "./deploy/credentials":
                    problems.append(f"{name}: credentials from {source}, not ./deploy/credentials")
                continue
            host = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)
            if not (ROOT / host).exists():
                problems.append(f"{name}: mounts {source}, which is not in the repository")
        if service.get("image") != IMAGE:
            continue
        # -- the project's own image ------------------------------------------------------------------------
        if service.get("build") not in (".", {"context": "."}):
            problems.append(f"{name}: image {IMAGE} is built from the repository (build: .)")
        problems += _entry_point_problems(name, list(service.get("command") or []))
        for key in env:
            if key.startswith("ANTQ_") and key not in known_env:
                problems.append(f"{name}: {key} is not a setting the code reads")
        try:
            settings = Settings.from_env(env)
        except SettingsError as exc:
            problems.append(f"{name}: {exc}")
            continue
        module = _module(service)
        if settings.nats_url is not None:
            nats_urls.add(settings.nats_url)
            if settings.stream_replicas != 3:
                problems.append(f"{name}: ANTQ_STREAM_REPLICAS is {settings.stream_replicas}, not 3")
            if settings.nats_tls_ca is None:
                problems.append(f"{name}: connects to NATS without TLS (no ANTQ_NATS_TLS_CA)")
            if settings.credentials_dir is None or str(settings.credentials_dir) != CREDENTIALS_MOUNTS[0]:
                problems.append(f"{name}: ANTQ_CREDENTIALS_DIR is not {CREDENTIALS_MOUNTS[0]}")
        if module is None:
            continue
        identity = MODULE_IDENTITY.get(module)
        if identity is not None:
            if settings.identity != identity or identity not in SERVICE_ROLES:
                problems.append(f"{name}: runs {module} as {settings.identity!r}, not as {identity!r}")
            elif not (generated / f"{identity}.nk").is_file():
                problems.append(f"{name}: no seed {identity}.nk in the generated credentials")
            role = PG_SERVICE_ROLE.get(identity)
            if settings.database_url is not None:
                url = urlsplit(settings.database_url)
                if role is not None and url.username != role:
                    problems.append(f"{name}: connects to PostgreSQL as {url.username}, not {role}")
                if url.hostname not in services:
                    problems.append(f"{name}: database host {url.hostname} is not a service")
                if not parse_qs(url.query).get("passfile"):
                    problems.append(f"{name}: database URL without ?passfile=")
        attribute = MODULE_METRICS.get(module)
        if attribute is not None:
            port = getattr(settings, attribute)
            if port is None:
                problems.append(f"{name}: {module} serves no metrics (its port setting is unset)")
            else:
                targets_expected.add(f"{name}:{port}")
                if str(port) not in json.dumps(service.get("healthcheck", {}).get("test")):
                    problems.append(f"{name}: its healthcheck does not ask its metrics port {port}")
    problems += _postgres_problems(dep)
    problems += _nats_problems(dep, nats_urls)
    problems += _prometheus_problems(dep, targets_expected)
    problems += _dockerfile_problems(dep.dockerfile)
    return problems


def _postgres_problems(dep: Deployment) -> list[str]:
    """One database, initialised with the owner ``antq auth generate`` wrote a password for; the migrations
    run as that owner, then the roles' SQL."""
    problems = []
    postgres = _env(dep.services.get("postgres", {}))
    if postgres.get("POSTGRES_USER") != PG_OWNER:
        problems.append(f"postgres: POSTGRES_USER is not {PG_OWNER}, the owner antq auth generate knows")
    database = postgres.get("POSTGRES_DB")
    for name, service in dep.services.items():
        url = _env(service).get("ANTQ_DATABASE_URL")
        if url is not None and urlsplit(url).path != f"/{database}":
            problems.append(f"{name}: database {urlsplit(url).path[1:]}, not {database}")
    migrate = urlsplit(_env(dep.services.get("migrate", {})).get("ANTQ_DATABASE_URL", ""))
    if migrate.username != PG_OWNER:
        problems.append(f"migrate: runs the migrations as {migrate.username}, not {PG_OWNER}")
    roles = dep.services.get("pg-roles", {})
    if "/run/antq/credentials/postgres_roles.sql" not in (roles.get("command") or []):
        problems.append("pg-roles: does not run postgres_roles.sql")
    if "migrate" not in (roles.get("depends_on") or {}):
        problems.append("pg-roles: runs before the migrations")
    return problems


def _nats_problems(dep: Deployment, nats_urls: set[str]) -> list[str]:
    problems = []
    for url in nats_urls:
        hosts = {urlsplit(u.strip()).hostname for u in url.split(",")}
        ports = {urlsplit(u.strip()).port for u in url.split(",")}
        if hosts != set(NATS_NODES) or ports != {4222}:
            problems.append(f"ANTQ_NATS_URL {url} does not list every node on its client port 4222")
    for node in NATS_NODES:
        service = dep.services.get(node, {})
        conf_path = _mounts(service).get("/etc/nats/nats.conf", "").removeprefix("./")
        conf = dep.nats_confs.get(conf_path)
        if conf is None:
            problems.append(f"{node}: mounts no deploy/nats configuration as /etc/nats/nats.conf")
            continue
        if _mounts(service).get("/etc/nats/credentials", "").rstrip("/") != "./deploy/credentials":
            problems.append(f"{node}: the credentials are not mounted at /etc/nats/credentials")
        if re.search(r"^server_name:\s*(\S+)", conf, re.M) is None or not re.search(
            rf"^server_name:\s*{re.escape(node)}\s*$", conf, re.M
        ):
            problems.append(f"{conf_path}: server_name is not {node}")
        routes = set(re.findall(r"nats-route://([a-z0-9-]+):6222", conf))
        if routes != set(NATS_NODES):
            problems.append(f"{conf_path}: routes {sorted(routes)}, not every node")
        if conf.count("tls {") < 2:
            problems.append(f"{conf_path}: needs a tls block for clients and one for the cluster's routes")
        if not re.search(r'^listen:\s*"0\.0\.0\.0:4222"', conf, re.M):
            problems.append(f"{conf_path}: clients are not served on 4222")
    return problems


def _prometheus_problems(dep: Deployment, expected: set[str]) -> list[str]:
    problems = []
    targets = {
        target
        for job in dep.prometheus.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    }
    for target in sorted(expected - targets):
        problems.append(f"prometheus.yml does not scrape {target}")
    for target in sorted(targets - expected):
        problems.append(f"prometheus.yml scrapes {target}, which serves no metrics there")
    if "/etc/prometheus/alerts.yml" not in dep.prometheus.get("rule_files", []):
        problems.append("prometheus.yml does not load the alert rules")
    known = code_metrics()
    alerts = {}
    for group in dep.alerts.get("groups", []):
        for rule in group.get("rules", []):
            alerts[rule.get("alert")] = rule
            for metric in sorted(promql_metrics(str(rule.get("expr", ""))) - known):
                problems.append(f"alert {rule.get('alert')}: {metric} is no metric the code exports")
    for alert in sorted(REQUIRED_ALERTS - set(alerts)):
        problems.append(f"alerts.yml has no {alert} rule")
    titles = " ".join(str(p.get("title", "")).lower() for p in dep.dashboard.get("panels", []))
    for topic in DASHBOARD_TOPICS:
        if topic not in titles:
            problems.append(f"the Grafana dashboard has no panel on {topic}")
    for panel in dep.dashboard.get("panels", []):
        for target in panel.get("targets", []):
            for metric in sorted(promql_metrics(str(target.get("expr", ""))) - known):
                problems.append(f"panel {panel.get('title')!r}: {metric} is no metric the code exports")
    return problems


def _dockerfile_problems(dockerfile: str) -> list[str]:
    problems = []
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    if not any(re.match(r"FROM python:3\.1[1-9]", line) for line in lines):
        problems.append("Dockerfile: not built FROM python:3.11 or later")
    if not any(re.search(r"pip install .*\s\.$", line) for line in lines):
        problems.append("Dockerfile: the project is not installed with `pip install .`")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    if not users or users[-1] in ("root", "0") or users[-1].startswith("0:"):
        problems.append("Dockerfile: the image must end on a non-root USER")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in packages["include"]:
        name = package.rstrip("*")
        if not any(re.fullmatch(rf"COPY {name}/? {name}/?", line) for line in lines):
            problems.append(f"Dockerfile: package {name} is not copied into the build")
    return problems


def nats_conf_check(conf_text: str, generated: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``nats-server -t`` on a node's configuration, its credentials paths pointing at ``generated``."""
    workdir.mkdir(parents=True, exist_ok=True)
    credentials = workdir / "credentials"
    if not credentials.exists():
        shutil.copytree(generated, credentials)
    conf = workdir / "nats.conf"
    conf.write_text(conf_text.replace("/etc/nats/credentials", str(credentials)), encoding="utf-8")
    return subprocess.run(
        [_nats_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The credentials directory exactly as the README says to make it for the stack."""
    out = tmp_path_factory.mktemp("compose") / "credentials"
    args = ["auth", "generate", "--out", str(out), "--offices", str(ROOT / "deploy/offices.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load()


def test_the_stack_matches_the_code(deployment: Deployment, generated: Path) -> None:
    problems = compose_problems(deployment, generated)
    print(f"checked {len(deployment.services)} services, {len(deployment.nats_confs)} NATS configurations")
    assert problems == []


def test_env_names_is_what_from_env_reads() -> None:
    """ENV_NAMES holds every name ``Settings.from_env`` reads (it refuses to read another) and no other."""
    source = inspect.getsource(Settings.from_env)
    read = set(re.findall(r'"(ANTQ_[A-Z0-9_]+)"', source))
    assert read == set(ENV_NAMES)
    assert inspect.getsource(settings_module).count("ENV_NAMES") >= 2  # defined, and checked in from_env


def test_the_modules_run_as_the_identity_and_serve_the_port_assumed_here() -> None:
    for module, identity in MODULE_IDENTITY.items():
        source = (ROOT / module.replace(".", "/") / "__main__.py").read_text(encoding="utf-8")
        assert f'as_identity("{identity}")' in source, module
        attribute = MODULE_METRICS.get(module)
        if attribute is not None:
            assert f".{attribute}" in source, (module, attribute)
        else:
            assert "metrics" not in source.lower(), f"{module} serves metrics now: add it to MODULE_METRICS"


@pytest.mark.timeout(120)
def test_every_nats_node_configuration_is_accepted_by_nats_server(
    deployment: Deployment, generated: Path, tmp_path: Path
) -> None:
    for path, text in deployment.nats_confs.items():
        result = nats_conf_check(text, generated, tmp_path / Path(path).stem)
        print(f"nats-server -t {path}: {result.returncode} {result.stderr.strip() or result.stdout.strip()}")
        assert result.returncode == 0, result.stderr


def test_the_offices_registry_of_the_stack_is_one_the_gateway_reads() -> None:
    registry = OfficeRegistry.load(ROOT / "deploy/offices.toml", Localities.load())
    assert registry.get("ca-cao-bang") is not None


def test_promql_metric_names_are_found_without_functions_labels_or_keywords() -> None:
    expr = (
        'sum by (code) (rate(antq_gateway_events_rejected_total{code="x"}[10m])) > 1 and on () '
        "max(antq_sealer_stream_last_seq) - max by (stream) (antq_sealer_last_sealed_seq) > 0.2 * up"
    )
    assert promql_metrics(expr) == {
        "antq_gateway_events_rejected_total",
        "antq_sealer_stream_last_seq",
        "antq_sealer_last_sealed_seq",
        "up",
    }


Breakage = Callable[[Deployment], None]


def _service(name: str) -> Callable[[Deployment], dict[str, Any]]:
    return lambda dep: dep.services[name]


def _set_env(name: str, key: str, value: str) -> Breakage:
    def breaks(dep: Deployment) -> None:
        dep.services[name]["environment"] = {**_env(dep.services[name]), key: value}

    return breaks


def _first_rule(dep: Deployment) -> dict[str, Any]:
    rule: dict[str, Any] = dep.alerts["groups"][0]["rules"][0]
    return rule


BREAKAGES: dict[str, tuple[Breakage, str]] = {
    "unknown module": (
        lambda dep: dep.services["gateway-2"].update(command=["python", "-m", "services.gatewayy"]),
        "no module services.gatewayy",
    ),
    "unknown antq command": (
        lambda dep: dep.services["migrate"].update(command=["antq", "db", "migrat"]),
        "is not an antq command",
    ),
    "unknown setting": (_set_env("query", "ANTQ_QUERY_METRICS_PORTT", "9103"), "ANTQ_QUERY_METRICS_PORTT"),
    "bad setting value": (_set_env("sealer", "ANTQ_SEALER_METRICS_PORT", "http"), "is a TCP port"),
    "metrics port not scraped": (
        _set_env("query", "ANTQ_QUERY_METRICS_PORT", "9199"),
        "does not scrape query:9199",
    ),
    "missing dependency": (
        lambda dep: dep.services["projection"].update(
            depends_on={"gateway-9": {"condition": "service_healthy"}}
        ),
        "'gateway-9', no such service",
    ),
    "one replica": (_set_env("gateway-1", "ANTQ_STREAM_REPLICAS", "1"), "ANTQ_STREAM_REPLICAS is 1, not 3"),
    "no TLS": (
        lambda dep: dep.services["web"].update(
            environment={k: v for k, v in _env(dep.services["web"]).items() if k != "ANTQ_NATS_TLS_CA"}
        ),
        "without TLS",
    ),
    "TLS file not generated": (
        _set_env("projection", "ANTQ_NATS_TLS_CA", "/run/antq/credentials/tls/ca.crt"),
        "tls/ca.crt is not a file",
    ),
    "another identity": (_set_env("sealer", "ANTQ_IDENTITY", "gateway"), "as 'gateway', not as 'sealer'"),
    "another database role": (
        _set_env(
            "query",
            "ANTQ_DATABASE_URL",
            "postgresql://antq_projector@postgres:5432/antq?passfile=/run/antq/credentials/postgres_query.pgpass",
        ),
        "as antq_projector, not antq_query",
    ),
    "no restart policy": (lambda dep: dep.services["nats-2"].pop("restart"), "nats-2: restart is None"),
    "no healthcheck": (lambda dep: dep.services["postgres"].pop("healthcheck"), "postgres: no healthcheck"),
    "one node left out": (
        _set_env("web", "ANTQ_NATS_URL", "nats://nats-1:4222,nats://nats-2:4222"),
        "does not list every node",
    ),
    "alert on a metric that does not exist": (
        lambda dep: _first_rule(dep).update(expr="antq_projection_haltd == 1"),
        "antq_projection_haltd is no metric",
    ),
    "alert removed": (
        lambda dep: dep.alerts["groups"][0].update(
            rules=[r for r in dep.alerts["groups"][0]["rules"] if r["alert"] != "SealsFallingBehind"]
        ),
        "no SealsFallingBehind rule",
    ),
    "panel on a metric that does not exist": (
        lambda dep: dep.dashboard["panels"][0]["targets"][0].update(
            expr="rate(antq_gateway_accepted_total[5m])"
        ),
        "antq_gateway_accepted_total is no metric",
    ),
    "a target serving nothing": (
        lambda dep: dep.prometheus["scrape_configs"][0]["static_configs"][0]["targets"].append("web:9100"),
        "scrapes web:9100",
    ),
    "another database": (
        _set_env(
            "sealer",
            "ANTQ_DATABASE_URL",
            "postgresql://antq_sealer@postgres:5432/postgres?passfile=/run/antq/credentials/postgres_sealer.pgpass",
        ),
        "sealer: database postgres, not antq",
    ),
    "roles before migrations": (
        lambda dep: dep.services["pg-roles"].pop("depends_on"),
        "runs before the migrations",
    ),
    "root image": (
        lambda dep: setattr(dep, "dockerfile", dep.dockerfile.replace("USER antq", "USER root")),
        "non-root USER",
    ),
    "routes to two nodes": (
        lambda dep: dep.nats_confs.update(
            {
                "deploy/nats/nats-3.conf": dep.nats_confs["deploy/nats/nats-3.conf"].replace(
                    '"nats-route://nats-1:6222"', ""
                )
            }
        ),
        "routes ['nats-2', 'nats-3'], not every node",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_is_caught(breakage: str, deployment: Deployment, generated: Path) -> None:
    breaks, expected = BREAKAGES[breakage]
    broken = replace(
        deployment,
        compose=copy.deepcopy(deployment.compose),
        prometheus=copy.deepcopy(deployment.prometheus),
        alerts=copy.deepcopy(deployment.alerts),
        dashboard=copy.deepcopy(deployment.dashboard),
        nats_confs=dict(deployment.nats_confs),
    )
    breaks(broken)
    problems = compose_problems(broken, generated)
    print(f"{breakage}: {problems}")
    assert any(expected in p for p in problems), problems


@pytest.mark.timeout(60)
def test_a_nats_configuration_without_its_certificate_is_refused(
    deployment: Deployment, generated: Path, tmp_path: Path
) -> None:
    text = deployment.nats_confs["deploy/nats/nats-1.conf"].replace("tls/server.pem", "tls/missing.pem")
    result = nats_conf_check(text, generated, tmp_path / "nats-1")
    assert result.returncode != 0
    assert "missing.pem" in result.stderr


def _iter_credentials(directory: Path) -> Iterator[Path]:
    yield from (p for p in directory.rglob("*") if p.is_file())


def test_the_generated_secrets_are_private(generated: Path) -> None:
    public = {"ca.pem", "server.pem"}
    for path in _iter_credentials(generated):
        if path.name not in public and not path.name.endswith(".provinces"):
            assert path.stat().st_mode & 0o077 == 0, path
    assert (generated / "postgres_owner.pgpass").read_text().startswith(f"*:*:*:{PG_OWNER}:")
