"""docker-compose.yml and the service Dockerfiles, checked without Docker.

There is no Docker engine where the suite runs, so these tests read the files and hold them to the
Compose specification's JSON schema (tests/data/compose-spec.json) and to the code: each image is
built from the repository root and copies what its service needs, runs that service's module as a
non-root user; every `KAIROS_*` variable given to a service is one its code reads; health checks,
listen addresses and the addresses services use to reach each other agree; scaled services can be
scaled; start order waits for health; NATS keeps JetStream on a volume.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

from kairos_api import metrics as api_metrics
from kairos_api.bootstrap import load_cipher
from kairos_common.metrics import API_METRICS_PORT, PUBLISHER_METRICS_PORT, SCHEDULER_METRICS_PORT
from kairos_common.settings import MIN_SERVICE_TOKEN_LENGTH, PUBLIC_SECRETS, CommonSettings
from kairos_console.settings import ConsoleSettings
from kairos_publisher import metrics as publisher_metrics
from kairos_scheduler import metrics as scheduler_metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: The Compose specification's schema; tests/data/README.md says where it comes from.
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
KAIROS_SERVICES = ("api", "scheduler", "publisher")
#: Every service built from this repository: the gRPC services and the console (HTTP).
BUILT = (*KAIROS_SERVICES, "console")
#: Services meant to run as several copies (`--scale`).
SCALED = ("scheduler", "publisher")
#: A `KAIROS_*` name written as a string literal: how settings modules name what they read.
VARIABLE_LITERAL = re.compile(r"""["'](KAIROS_[A-Z0-9_]+)["']""")
#: The listen-address variable that a service's settings module hands to `server_settings`.
LISTEN_VARIABLE = re.compile(r"""server_settings\(\s*\w+,\s*["'](KAIROS_[A-Z_]+_ADDR)["']""")
INTERPOLATION = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}$")
#: `${NAME:?message}`: compose refuses to start while NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?(?P<message>[^}]+)\}$")
#: The secrets of a deployment: no value of theirs may be written in the compose file.
SECRETS = ("KAIROS_SECRET_KEY", "KAIROS_SERVICE_TOKEN", "KAIROS_CONSOLE_SECRET")


# --- reading the files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves anchors and `<<` merge keys
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict), "docker-compose.yml has no services mapping"
    assert services, "docker-compose.yml defines no services"
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of its forms (mapping, or list of NAME=value)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(name): "" if value is None else str(value) for name, value in raw.items()}


def default_of(value: str) -> str:
    """The value a `${NAME:-default}` interpolation takes when NAME is unset."""
    match = INTERPOLATION.match(value)
    return value if match is None else match.group("default") or ""


def workspace_members() -> dict[str, Path]:
    """Every uv workspace member: project name -> folder."""
    members = {}
    for pyproject in sorted(ROOT.glob("*/*/pyproject.toml")):
        if pyproject.parent.parent.name in ("libs", "services", "tools"):
            name = tomllib.loads(pyproject.read_text())["project"]["name"]
            members[name] = pyproject.parent
    return members


def workspace_closure(name: str) -> set[str]:
    """`name` and the workspace members it depends on, directly or not."""
    members = workspace_members()
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        project = tomllib.loads((members[current] / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            dependency = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            if dependency in members:
                pending.append(dependency)
    return seen


def read_variables(service: str) -> set[str]:
    """The KAIROS_* names that a service's code (its package and the libs it uses) reads."""
    members = workspace_members()
    names: set[str] = set()
    for member in workspace_closure(f"kairos-{service}"):
        for source in (members[member] / "src").rglob("*.py"):
            names.update(VARIABLE_LITERAL.findall(source.read_text()))
    return names


def listen_variable(service: str) -> str:
    settings = ROOT / "services" / service / "src" / f"kairos_{service}" / "settings.py"
    found = LISTEN_VARIABLE.findall(settings.read_text())
    assert len(found) == 1, f"{settings} should name exactly one listen-address variable"
    return str(found[0])


def dockerfile_instructions(path: Path) -> Iterator[tuple[int, str, str]]:
    """(stage number, KEYWORD, arguments) for each instruction, continuation lines joined."""
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        yield stage, keyword, arguments.strip()


def exec_form(arguments: str) -> list[str]:
    assert arguments.startswith("["), f"use the exec (JSON) form, not {arguments!r}"
    argv = json.loads(arguments)
    assert isinstance(argv, list)
    return [str(part) for part in argv]


def copy_sources(arguments: str) -> list[str] | None:
    """The sources of a COPY from the build context; None for a COPY --from another image."""
    words = exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from") for flag in flags):
        return None
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def dockerfile_of(compose: dict[str, Any], name: str) -> Path:
    build: dict[str, str] = services_of(compose)[name]["build"]
    return (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve()


# --- the specification -------------------------------------------------------------------------


def compose_errors(document: Any) -> list[str]:
    """Where `document` breaks the Compose specification's schema, one line each."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_the_schema_check_finds_mistakes_compose_would_refuse(compose: dict[str, Any]) -> None:
    mistaken = copy.deepcopy(compose)
    services = services_of(mistaken)
    first, second = list(services)[:2]
    services[first]["depends_on"] = {second: {"condition": "healthy"}}  # not one of its values
    services[second]["ports"] = {"8080": 80}  # a list in the specification
    services[second]["healthcheck"] = {"test": ["CMD", "true"], "interval_seconds": 5}

    errors = compose_errors(mistaken)

    assert any(e.startswith(f"services/{first}/depends_on") for e in errors), errors
    assert any(e.startswith(f"services/{second}/ports") for e in errors), errors
    assert any("interval_seconds" in e for e in errors), errors


# --- the images --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILT)
def test_each_service_is_built_from_its_own_dockerfile_at_the_repository_root(
    compose: dict[str, Any], name: str
) -> None:
    service = services_of(compose)[name]
    build = service.get("build")
    assert isinstance(build, dict), f"{name} should be built (build: context + dockerfile)"
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT
    dockerfile = dockerfile_of(compose, name)
    assert dockerfile == ROOT / "services" / name / "Dockerfile"
    assert dockerfile.is_file()


@pytest.mark.parametrize("name", BUILT)
def test_dockerfile_runs_the_service_as_a_numeric_non_root_user(
    compose: dict[str, Any], name: str
) -> None:
    steps = list(dockerfile_instructions(dockerfile_of(compose, name)))
    final = max(stage for stage, _, _ in steps)
    users = [args for stage, keyword, args in steps if keyword == "USER" and stage == final]
    assert users, f"{name}: the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"{name}: USER {users[-1]} is not a numeric uid"
    assert not gid or gid.isdigit(), f"{name}: USER {users[-1]} is not a numeric gid"
    assert int(uid) != 0, f"{name}: USER {users[-1]} is root"
    assert not gid or int(gid) != 0, f"{name}: USER {users[-1]} is in group root"


@pytest.mark.parametrize("name", BUILT)
def test_dockerfile_copies_what_the_service_needs_and_nothing_missing(
    compose: dict[str, Any], name: str
) -> None:
    steps = list(dockerfile_instructions(dockerfile_of(compose, name)))
    sources = [
        source
        for _, keyword, args in steps
        if keyword in ("COPY", "ADD")
        for source in copy_sources(args) or []
    ]
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for source in sources:
        assert (ROOT / source).exists(), f"{name}: COPY {source} names nothing in the repository"
        hidden = [p for p in ignored if fnmatch.fnmatch(source, p.removeprefix("**/"))]
        assert not hidden, f"{name}: COPY {source} is excluded by .dockerignore {hidden}"
    # uv sync needs the lock and the workspace root, and each workspace member the service uses.
    assert {"pyproject.toml", "uv.lock"} <= set(sources)
    members = workspace_members()
    for member in workspace_closure(f"kairos-{name}"):
        folder = members[member].relative_to(ROOT).as_posix()
        assert any(
            folder == source.rstrip("/") or folder.startswith(source.rstrip("/") + "/")
            for source in sources
        ), f"{name}: the image needs {folder} ({member}) but copies only {sources}"
    syncs = [args for _, keyword, args in steps if keyword == "RUN" and "uv sync" in args]
    assert syncs, f"{name}: the image installs nothing with uv sync"
    for command in syncs:
        assert "--frozen" in command, f"{name}: uv sync should install exactly uv.lock"
        assert f"--package kairos-{name}" in command, f"{name}: uv sync installs another package"


@pytest.mark.parametrize("name", BUILT)
def test_dockerfile_entrypoint_runs_the_services_module(compose: dict[str, Any], name: str) -> None:
    steps = list(dockerfile_instructions(dockerfile_of(compose, name)))
    final = max(stage for stage, _, _ in steps)
    entry = [args for stage, keyword, args in steps if keyword == "ENTRYPOINT" and stage == final]
    command = [args for stage, keyword, args in steps if keyword == "CMD" and stage == final]
    argv = (exec_form(entry[-1]) if entry else []) + (exec_form(command[-1]) if command else [])
    assert argv[:3] == ["python", "-m", f"kairos_{name}"], f"{name} runs {argv}"
    module = ROOT / "services" / name / "src" / f"kairos_{name}" / "__main__.py"
    assert module.is_file(), f"{name}: {module} does not exist"
    images = [args.split()[0] for _, keyword, args in steps if keyword == "FROM"]
    assert all(image.endswith(("-slim", "-alpine")) for image in images), images


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILT)
def test_every_kairos_variable_given_to_a_service_is_one_it_reads(
    compose: dict[str, Any], name: str
) -> None:
    given = {v for v in environment(services_of(compose)[name]) if v.startswith("KAIROS_")}
    assert given, f"{name} gets no KAIROS_* configuration"
    unread = given - read_variables(name)
    assert not unread, f"{name} is given variables its code never reads: {sorted(unread)}"


@pytest.mark.parametrize("name", KAIROS_SERVICES)
def test_each_service_listens_on_all_interfaces_at_the_port_its_healthcheck_asks(
    compose: dict[str, Any], name: str
) -> None:
    service = services_of(compose)[name]
    variable = listen_variable(name)
    addr = environment(service).get(variable, "")
    host, _, port = addr.rpartition(":")
    assert host == "0.0.0.0", f"{name}: {variable}={addr!r} is not every interface"
    assert port.isdigit(), f"{name}: {variable}={addr!r} has no port"
    test = service.get("healthcheck", {}).get("test")
    assert isinstance(test, list), f"{name}: healthcheck {test!r}"
    assert test[0] == "CMD", f"{name}: healthcheck {test!r}"
    assert test[1:4] == ["python", "-m", "kairos_common.healthcheck"], test
    assert (ROOT / "libs/common/src/kairos_common/healthcheck.py").is_file()
    assert test[4].rpartition(":")[2] == port, f"{name}: healthcheck asks {test[4]}, listens {addr}"
    for mapping in service.get("ports", []):
        assert str(mapping).rpartition(":")[2] == port, f"{name} publishes {mapping}, not {port}"


def test_the_console_listens_everywhere_publishes_on_loopback_and_reaches_the_api(
    compose: dict[str, Any],
) -> None:
    services = services_of(compose)
    console = services["console"]
    env = environment(console)
    host, _, port = env["KAIROS_CONSOLE_ADDR"].rpartition(":")
    assert host == "0.0.0.0"
    assert console["ports"] == [f"127.0.0.1:{port}:{port}"]
    api_port = environment(services["api"])[listen_variable("api")].rpartition(":")[2]
    assert env["KAIROS_API_TARGET"] == f"api:{api_port}"
    # Only the api: the console never opens the database or NATS, nor holds the service token.
    assert not {"KAIROS_DATABASE_URL", "KAIROS_NATS_URL", "KAIROS_SERVICE_TOKEN"} & set(env)
    assert console["depends_on"] == {"api": {"condition": "service_healthy"}}
    test = console["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{port}/healthz" in test[3]


def test_services_reach_each_other_where_they_listen(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    api_port = environment(services["api"])[listen_variable("api")].rpartition(":")[2]
    for name in KAIROS_SERVICES:
        env = environment(services[name])
        nats = urlsplit(env["KAIROS_NATS_URL"])
        assert nats.hostname == "nats", env["KAIROS_NATS_URL"]
        assert nats.port == 4222, env["KAIROS_NATS_URL"]
        assert env["KAIROS_API_TARGET"] == f"api:{api_port}"
        assert env.get("KAIROS_SERVICE_TOKEN"), f"{name} lacks the shared service token"

    api = environment(services["api"])
    database = urlsplit(api["KAIROS_DATABASE_URL"])
    postgres = environment(services["postgres"])
    assert database.scheme.startswith("postgresql")
    assert database.hostname == "postgres"
    assert (database.port or 5432) == 5432
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert default_of(api.get("KAIROS_MIGRATE_ON_START", "true")).lower() == "true"


# --- secrets -----------------------------------------------------------------------------------


def test_no_secret_has_a_value_or_default_in_the_file(compose: dict[str, Any]) -> None:
    """A default secret would be one everyone can read here: compose must refuse to start
    without each, and the services run in production mode, which refuses public ones."""
    services = services_of(compose)
    for name in BUILT:
        env = environment(services[name])
        assert env.get("KAIROS_ENV", "production") == "production", name
        for variable, value in env.items():
            if any(word in variable for word in ("SECRET", "TOKEN")):
                required = REQUIRED.match(value)
                assert required, f"{name}: {variable}={value!r} is not ${{{variable}:?...}}"
                assert required["name"] == variable
                assert "make up" in required["message"], "say where the value comes from"
    assert "KAIROS_SECRET_KEY" in environment(services["api"])
    text = COMPOSE_FILE.read_text()
    published = [secret for secret in PUBLIC_SECRETS if secret in text]
    assert not published
    assert "change-me" not in text


def run_compose_secrets(folder: Path, **environ: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compose_secrets.py"), str(folder / ".env")],
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def dotenv(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.partition("=")[::2] for line in lines)


def test_make_up_writes_random_secrets_the_services_accept_once_and_keeps_them(
    tmp_path: Path,
) -> None:
    written = run_compose_secrets(tmp_path)
    assert "KAIROS_SECRET_KEY and KAIROS_SERVICE_TOKEN" in written
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dotenv(env_file)
    assert set(values) == set(SECRETS)
    # What the services check outside development (KAIROS_ENV=production, as compose sets).
    common = CommonSettings.from_env({**values, "KAIROS_ENV": "production"})
    assert common.require_service_token() == values["KAIROS_SERVICE_TOKEN"]
    assert load_cipher(values["KAIROS_SECRET_KEY"]).key_ids
    console = ConsoleSettings.from_env({**values, "KAIROS_ENV": "production"})
    assert console.cookie_key
    assert run_compose_secrets(tmp_path) == ""  # the second time: nothing new
    assert dotenv(env_file) == values
    other = tmp_path / "other"
    other.mkdir()
    run_compose_secrets(other)
    assert dotenv(other / ".env") != values  # made fresh for each place


def test_make_up_adds_only_the_secrets_that_are_missing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "KAIROS_LOG_LEVEL=debug\nKAIROS_SECRET_KEY=mine-and-long-enough-0123456789ab"
    )
    env_file.chmod(0o644)
    run_compose_secrets(tmp_path)
    values = dotenv(env_file)
    assert values["KAIROS_SECRET_KEY"] == "mine-and-long-enough-0123456789ab"
    assert values["KAIROS_LOG_LEVEL"] == "debug"
    assert len(values["KAIROS_SERVICE_TOKEN"]) >= MIN_SERVICE_TOKEN_LENGTH
    assert env_file.stat().st_mode & 0o777 == 0o600
    # Set in the environment, which compose prefers to .env: nothing to write.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_compose_secrets(elsewhere, **{name: "s" * 40 for name in SECRETS})
    assert not (elsewhere / ".env").exists()


def test_make_up_makes_the_secrets_before_compose_starts_and_git_ignores_them() -> None:
    recipe = re.search(r"^up:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "no up target"
    lines = recipe.group(1).splitlines()
    makes = next(i for i, line in enumerate(lines) if "scripts/compose_secrets.py" in line)
    starts = next(i for i, line in enumerate(lines) if "docker compose up" in line)
    assert makes < starts, lines
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".env"], cwd=ROOT, capture_output=True, text=True
    )
    assert ignored.returncode == 0, ".env is not git-ignored"


# --- scaling, start order, storage -------------------------------------------------------------


def test_no_fixed_container_names_and_no_host_ports_on_scaled_services(
    compose: dict[str, Any],
) -> None:
    services = services_of(compose)
    named = [name for name, service in services.items() if "container_name" in service]
    assert not named, f"container_name stops --scale: {named}"
    for name in SCALED:
        assert "ports" not in services[name], f"{name} publishes host ports: it cannot scale"


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    for name in KAIROS_SERVICES:
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        assert depends, f"{name} should wait for what it uses"
        for other, rule in depends.items():
            assert rule.get("condition") == "service_healthy", f"{name} -> {other}: {rule}"
            assert services[other].get("healthcheck", {}).get("test"), f"{other}: no healthcheck"
    assert {"postgres", "nats"} <= set(services["api"]["depends_on"])
    for name in SCALED:
        assert {"api", "nats"} <= set(services[name]["depends_on"])


def test_nats_is_recent_with_jetstream_on_a_named_volume(compose: dict[str, Any]) -> None:
    nats = services_of(compose)["nats"]
    image, _, tag = str(nats["image"]).partition(":")
    version = re.match(r"(\d+)\.(\d+)", tag)
    assert image == "nats", nats["image"]
    assert version, f"nats image {nats['image']!r} has no version tag"
    assert (int(version[1]), int(version[2])) >= (2, 12), f"nats {tag} is older than 2.12"
    command = nats["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert {"-js", "--jetstream"} & set(argv), f"JetStream is off: {argv}"
    store = next(argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-sd", "--store_dir"))
    named = compose.get("volumes") or {}
    mounts = []
    for volume in nats.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, _, rest = str(volume).partition(":")
            mounts.append((source, rest.partition(":")[0]))
    assert any(
        source in named and (store == target or store.startswith(target.rstrip("/") + "/"))
        for source, target in mounts
    ), f"the JetStream store {store} is not on a named volume: {mounts}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services_of(compose).items():
        for volume in service.get("volumes", []):
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} uses volume {source}, not declared"
    assert {"postgres-data", "nats-data"} <= declared


# --- the observability profile: Prometheus and Grafana -----------------------------------------

DEPLOY = ROOT / "deploy"
OBSERVABILITY = ("prometheus", "grafana")
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def default_metrics_ports() -> dict[str, int]:
    return {
        "api": API_METRICS_PORT,
        "scheduler": SCHEDULER_METRICS_PORT,
        "publisher": PUBLISHER_METRICS_PORT,
    }


def mounted(service: dict[str, Any], target: str) -> Path:
    """The repository path bind-mounted at `target` in the container."""
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        if rest.partition(":")[0] == target and source.startswith("./"):
            return (COMPOSE_FILE.parent / source).resolve()
    raise AssertionError(f"nothing from the repository is mounted at {target}")


def test_the_observability_profile_alone_starts_prometheus_and_grafana(
    compose: dict[str, Any],
) -> None:
    services = services_of(compose)
    for name in OBSERVABILITY:
        assert services[name].get("profiles") == ["observability"], name
        # Reached from this machine only.
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name
    for name in (*KAIROS_SERVICES, "postgres", "nats"):
        assert "profiles" not in services[name], f"{name} would not start with `make up`"


def test_prometheus_scrapes_every_copy_of_each_service_where_it_serves_metrics(
    compose: dict[str, Any],
) -> None:
    services = services_of(compose)
    prometheus = services["prometheus"]
    config_path = mounted(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_path == DEPLOY / "prometheus" / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(config_path.read_text())
    scraped = {}
    for job in config["scrape_configs"]:
        # DNS discovery finds each copy of a scaled service; a static target would find one.
        (discovery,) = job["dns_sd_configs"]
        (name,) = discovery["names"]
        assert discovery["type"] == "A"
        scraped[name] = discovery["port"]
    ports = default_metrics_ports()
    listening = {}
    for name in KAIROS_SERVICES:
        env = environment(services[name])
        assert env["KAIROS_METRICS_HOST"] == "0.0.0.0", f"{name}: Prometheus could not reach it"
        listening[name] = int(env.get("KAIROS_METRICS_PORT", ports[name]))
    assert scraped == listening


def test_grafana_reads_that_prometheus_and_provisions_the_dashboard(
    compose: dict[str, Any],
) -> None:
    grafana = services_of(compose)["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    dashboards = mounted(grafana, "/var/lib/grafana/dashboards")
    assert dashboards == DEPLOY / "grafana" / "dashboards"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "kairos.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).exists()
    dashboard = json.loads((dashboards / "kairos.json").read_text())
    uids = {t["datasource"]["uid"] for t in dashboard_targets(dashboard)}
    assert uids == {source["uid"]}


def dashboard_targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every query of every panel, rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend(inner.get("targets", []))
    return found


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges and groupings are taken out, less functions, aggregations and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names: set[str] = set()
    # Not after a digit: the unit of a duration (offset 5m) is no name.
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed = text[match.end() :].lstrip()
        if followed.startswith("(") or match.group() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_metric_names() -> set[str]:
    """What the three services export, read from the registry their metrics modules fill (a
    labelled metric shows no sample until observed, so the names come from each family's type)."""
    # Importing the three modules (at the top) declared their metrics there.
    assert {api_metrics.__name__, publisher_metrics.__name__, scheduler_metrics.__name__}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_asks_only_for_metrics_the_services_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "kairos.json").read_text())
    exported = exported_metric_names()
    expressions = [t["expr"] for t in dashboard_targets(dashboard)]
    assert len(expressions) >= 15
    asked = set()
    for expression in expressions:
        names = promql_metric_names(expression)
        assert names, f"no metric found in {expression!r}"
        assert names <= exported, f"{expression!r} asks for {sorted(names - exported)}"
        asked |= names
    # Every metric the issue names is on the dashboard.
    for wanted in (
        "kairos_delivery_lateness_seconds_bucket",
        "kairos_delivery_attempts_total",
        "kairos_platform_call_duration_seconds_bucket",
        "kairos_targets",
        "kairos_outbox_lag_seconds",
        "kairos_dispatch_batch_size_sum",
        "kairos_dispatch_batch_duration_seconds_bucket",
        "kairos_jetstream_consumer_pending_messages",
        "kairos_credential_refreshes_total",
        "kairos_rate_limit_blocks_total",
    ):
        assert wanted in asked, wanted


def test_the_metric_name_reader_finds_names_and_skips_the_rest() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le, platform) (rate(a_seconds_bucket{le="1.0", '
        'x=~"b|c"}[$__rate_interval]))) / on (platform) group_left sum without (d) (e_total) '
        "and max(f) offset 5m > bool 1"
    )
    assert promql_metric_names(expression) == {"a_seconds_bucket", "e_total", "f"}
    # A misspelt name is caught.
    assert not promql_metric_names("rate(kairos_delivery_attempt_total[5m])") <= (
        exported_metric_names()
    )
